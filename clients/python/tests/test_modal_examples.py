"""The Python examples of Modal's own Sandbox documentation
(/work/shared/reference/modal-sandboxes/*.txt), run against sandboxd with
only ``import modal`` replaced by ``import sandboxd as modal``.

Each test is one example as the docs print it (the sync one, and where the
docs give it the ``.aio`` one), with what it prints captured and checked.
Where an example cannot run here as written, the test says why and runs
the nearest thing that can:
- this host reaches only Debian's mirror, so ``pip_install`` from PyPI
  becomes ``apt_install`` of a Debian package;
- the 2023-24 guides' snippets are cut short in the reference text (their
  closing lines are missing), and two pass a whole shell line as one
  argument (``"echo foo > /cache/a.txt"``), which no exec runs: they are
  completed with ``"bash", "-c", ...`` as Modal's current docs do;
- ``Mount.from_local_dir`` (uploading local files) has no sandboxd
  counterpart (its mounts are host paths an admin allows).
"""
import asyncio
import os
import re
import time
import unittest
import urllib.error
import urllib.request

import support
import sandboxd as modal


def setUpModule():
    support.start_module_daemon(__name__)


def tearDownModule():
    support.stop_module_daemon(__name__)


class GuideCurrent(support.DaemonTest):
    """guide-current.txt: Modal's Sandboxes guide as it is today."""

    def test_intro(self):
        with self.captured() as out:
            sb_app = modal.App.lookup("my-app", create_if_missing=True)
            sb = modal.Sandbox.create(app=sb_app)
            p = sb.exec("python", "-c", "print('hello')", timeout=3)
            print(p.stdout.read())
            p = sb.exec("bash", "-c", "for i in {1..10}; do date +%T; sleep 0.5; done", timeout=5)
            for line in p.stdout:
                # Avoid double newlines by using end="".
                print(line, end="")
            sb.terminate()
            sb.detach()
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], "hello")
        # The loop runs for 5 s and is killed by its timeout at about the
        # 10th line: 9 or 10 times, each printed as it came.
        times = lines[2:]
        self.assertTrue(9 <= len(times) <= 10, times)
        for t in times:
            self.assertRegex(t, r"^\d\d:\d\d:\d\d$")

    def test_intro_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb = await modal.Sandbox.create.aio(app=sb_app)
            p = await sb.exec.aio("python", "-c", "print('hello')", timeout=3)
            print(await p.stdout.read.aio())
            p = await sb.exec.aio("bash", "-c", "for i in {1..10}; do date +%T; sleep 0.5; done",
                                  timeout=5)
            async for line in p.stdout:
                # Avoid double newlines by using end="".
                print(line, end="")
            await sb.terminate.aio()
            await sb.detach.aio()

        with self.captured() as out:
            asyncio.run(main())
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], "hello")
        self.assertTrue(9 <= len(lines[2:]) <= 10, lines)

    def test_timeouts(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb = modal.Sandbox.create(app=sb_app, timeout=10*60)  # 10 minutes
        sb.detach()
        sb2 = modal.Sandbox.from_id(sb.object_id)
        self.assertIsNone(sb2.poll())
        sb2.terminate()

    def test_readiness_tcp(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb = modal.Sandbox.create(
            "python3", "-m", "http.server", "8080",
            readiness_probe=modal.Probe.with_tcp(8080),
            app=sb_app,
        )
        # Blocks until port 8080 is accepting connections
        sb.wait_until_ready()
        # The server is now ready — interact with it via tunnels, exec, etc.
        p = sb.exec("python3", "-c", "import urllib.request as u; "
                    "print(u.urlopen('http://127.0.0.1:8080/').status)")
        self.assertEqual(p.stdout.read(), "200\n")
        sb.terminate()
        sb.detach()

    def test_readiness_tcp_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb = await modal.Sandbox.create.aio(
                "python3", "-m", "http.server", "8080",
                readiness_probe=modal.Probe.with_tcp(8080),
                app=sb_app,
            )
            # Blocks until port 8080 is accepting connections
            await sb.wait_until_ready.aio()
            ready_at = (await asyncio.to_thread(modal.Sandbox.from_id, sb.object_id))._record
            await sb.terminate.aio()
            await sb.detach.aio()
            return ready_at

        record = asyncio.run(main())
        self.assertIsNotNone(record["ready_at"])

    def test_readiness_exec(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        start = time.monotonic()
        sb = modal.Sandbox.create(
            "bash", "-c", "sleep 5 && touch /tmp/ready && sleep 3600",
            readiness_probe=modal.Probe.with_exec(
                "sh", "-c", "test -f /tmp/ready",
                interval_ms=250,
            ),
            app=sb_app,
        )
        # Blocks until "test -f /tmp/ready" exits with code 0
        sb.wait_until_ready()
        self.assertGreaterEqual(time.monotonic() - start, 4.5)
        # The sandbox is now ready
        p = sb.exec("cat", "/tmp/ready")
        self.assertEqual(p.wait(), 0)
        sb.terminate()
        sb.detach()

    def test_readiness_exec_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb = await modal.Sandbox.create.aio(
                "bash", "-c", "sleep 5 && touch /tmp/ready && sleep 3600",
                readiness_probe=modal.Probe.with_exec(
                    "sh", "-c", "test -f /tmp/ready",
                    interval_ms=250,
                ),
                app=sb_app,
            )
            # Blocks until "test -f /tmp/ready" exits with code 0
            await sb.wait_until_ready.aio()
            # The sandbox is now ready
            p = await sb.exec.aio("cat", "/tmp/ready")
            rc = await p.wait.aio()
            await sb.terminate.aio()
            await sb.detach.aio()
            return rc

        self.assertEqual(asyncio.run(main()), 0)

    def test_readiness_timeout(self):
        # The docs' snippet catches TimeoutError around wait_until_ready; a
        # probe that never passes and a short timeout make it happen
        # without the 5 minutes the docs mention.
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb = modal.Sandbox.create(
            readiness_probe=modal.Probe.with_exec("false"), app=sb_app)
        with self.captured() as out:
            try:
                sb.wait_until_ready(timeout=1)
            except TimeoutError:
                print("Sandbox failed to become ready")
                sb.terminate()
            sb.detach()
        self.assertEqual(out.getvalue(), "Sandbox failed to become ready\n")

    def test_return_codes(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        with self.captured() as out:
            sb = modal.Sandbox.create(app=sb_app)
            # Read returncode of individual process
            p = sb.exec("sh", "-c", "exit 42")
            p.wait()
            print(p.returncode)  # 42
            # Read returncode of finished sandbox
            # Terminate sends a SIGKILL, code 137
            sb.terminate(wait=True)
            print(sb.returncode)  # 137
        self.assertEqual(out.getvalue(), "42\n137\n")

    def test_return_codes_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb = await modal.Sandbox.create.aio(app=sb_app)
            # Read returncode of individual process
            p = await sb.exec.aio("sh", "-c", "exit 42")
            await p.wait.aio()
            print(p.returncode)  # 42
            # Read returncode of finished sandbox
            # Terminate sends a SIGKILL, code 137
            await sb.terminate.aio(wait=True)
            print(sb.returncode)  # 137

        with self.captured() as out:
            asyncio.run(main())
        self.assertEqual(out.getvalue(), "42\n137\n")

    def test_configuration(self):
        # pip_install("pandas") needs PyPI, which this host cannot reach:
        # the same shape with a Debian package from Debian's mirror.
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb = modal.Sandbox.create(
            image=modal.Image.debian_slim().apt_install("jq"),
            volumes={"/data": modal.Volume.from_name("data-volume", create_if_missing=True)},
            app=sb_app,
        )
        p = sb.exec("sh", "-c", "echo '{\"a\": 7}' | jq .a > /data/out; cat /data/out")
        self.assertEqual(p.stdout.read(), "7\n")
        sb.detach()
        self.assertEqual(b"".join(modal.Volume.from_name("data-volume").read_file("out")),
                         b"7\n")

    def test_environment_variables(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        with self.captured() as out:
            secret = modal.Secret.from_dict({"MY_SECRET": "hello"})
            sb = modal.Sandbox.create(
                secrets=[secret],
                app=sb_app,
            )
            p = sb.exec("bash", "-c", "echo $MY_SECRET")
            print(p.stdout.read())
            sb.detach()
        self.assertEqual(out.getvalue(), "hello\n\n")

    def test_environment_variables_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            secret = modal.Secret.from_dict({"MY_SECRET": "hello"})
            sb = await modal.Sandbox.create.aio(
                secrets=[secret],
                app=sb_app,
            )
            p = await sb.exec.aio("bash", "-c", "echo $MY_SECRET")
            print(await p.stdout.read.aio())
            await sb.detach.aio()

        with self.captured() as out:
            asyncio.run(main())
        self.assertEqual(out.getvalue(), "hello\n\n")

    def test_custom_images(self):
        # pip_install("pandas", "numpy") needs PyPI: Debian's python3-six
        # instead, a Python package from Debian's mirror.
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        image = modal.Image.debian_slim().apt_install("python3-six")
        with self.captured() as out:
            with modal.enable_output():
                sb = modal.Sandbox.create(image=image, app=sb_app)
            sb.detach()
        sb = modal.Sandbox.from_id(sb.object_id)
        p = sb.exec("python3", "-c", "import six; print(six.__name__)")
        self.assertEqual(p.stdout.read(), "six\n")
        # The build's log was printed (unless the daemon had it built already).
        if out.getvalue():
            self.assertIn("python3-six", out.getvalue())

    def test_entrypoint(self):
        # http.server prints its banner through a buffered stdout, which the
        # timeout's SIGKILL never flushes: the loop ends, at the timeout,
        # whether or not it printed a line.
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        start = time.monotonic()
        with self.captured() as out:
            sb = modal.Sandbox.create("python", "-m", "http.server", "8080", app=sb_app,
                                      timeout=10)
            for line in sb.stdout:
                print(line, end="")
            sb.detach()
        self.assertGreaterEqual(time.monotonic() - start, 9)
        self.assertIn(out.getvalue(), ("", "Serving HTTP on 0.0.0.0 port 8080 "
                                           "(http://0.0.0.0:8080/) ...\n"))
        sb = modal.Sandbox.from_id(sb.object_id)
        with self.assertRaises(modal.exception.SandboxTimeoutError):
            sb.wait()
        self.assertEqual(sb.returncode, 137)

    def test_entrypoint_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb = await modal.Sandbox.create.aio(
                "python", "-u", "-m", "http.server", "8080", app=sb_app, timeout=3)
            async for line in sb.stdout:
                print(line, end="")
            await sb.detach.aio()

        # (-u: unbuffered, so that the banner comes; a 3 s timeout.)
        with self.captured() as out:
            asyncio.run(main())
        self.assertIn("Serving HTTP on 0.0.0.0 port 8080", out.getvalue())

    def test_from_id(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        with self.captured() as out:
            sb = modal.Sandbox.create(app=sb_app)
            sb_id = sb.object_id
            sb.detach()
            # ... later in the program ...
            sb2 = modal.Sandbox.from_id(sb_id)
            p = sb2.exec("echo", "hello")
            print(p.stdout.read())
            sb2.terminate()
            sb2.detach()
        self.assertEqual(out.getvalue(), "hello\n\n")

    def test_from_id_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb = await modal.Sandbox.create.aio(app=sb_app)
            sb_id = sb.object_id
            await sb.detach.aio()
            # ... later in the program ...
            sb2 = await modal.Sandbox.from_id.aio(sb_id)
            p = await sb2.exec.aio("echo", "hello")
            print(await p.stdout.read.aio())
            await sb2.terminate.aio()
            await sb2.detach.aio()

        with self.captured() as out:
            asyncio.run(main())
        self.assertEqual(out.getvalue(), "hello\n\n")

    def test_named_sandboxes(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb1 = modal.Sandbox.create(app=sb_app, name="my-name")
        # This will raise a modal.exception.AlreadyExistsError.
        with self.assertRaises(modal.exception.AlreadyExistsError):
            sb2 = modal.Sandbox.create(app=sb_app, name="my-name")
        # Once it stops running, its name can be used again.
        sb1.terminate(wait=True)
        sb2 = modal.Sandbox.create(app=sb_app, name="my-name")
        self.assertNotEqual(sb1.object_id, sb2.object_id)

    def test_named_sandboxes_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb1 = await modal.Sandbox.create.aio(app=sb_app, name="my-name")
            # This will raise a modal.exception.AlreadyExistsError.
            sb2 = await modal.Sandbox.create.aio(app=sb_app, name="my-name")

        with self.assertRaises(modal.exception.AlreadyExistsError):
            asyncio.run(main())

    def test_from_name(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb1 = modal.Sandbox.create(app=sb_app, name="my-name")
        # Returns the currently running Sandbox with the name "my-name" from the
        # deployed app named "my-app".
        sb2 = modal.Sandbox.from_name("my-app", "my-name")
        assert sb1.object_id == sb2.object_id  # sb1 and sb2 refer to the same Sandbox
        sb1.detach()
        sb2.detach()
        # Not running: not found.
        modal.Sandbox.from_id(sb1.object_id).terminate(wait=True)
        with self.assertRaises(modal.exception.NotFoundError):
            modal.Sandbox.from_name("my-app", "my-name")

    def test_from_name_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sb1 = await modal.Sandbox.create.aio(app=sb_app, name="my-name")
            # Returns the currently running Sandbox with the name "my-name" from the
            # deployed app named "my-app".
            sb2 = await modal.Sandbox.from_name.aio("my-app", "my-name")
            assert sb1.object_id == sb2.object_id  # sb1 and sb2 refer to the same Sandbox
            await sb1.detach.aio()
            await sb2.detach.aio()

        asyncio.run(main())

    def test_tagging(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        with self.captured() as out:
            sandbox_v1_1 = modal.Sandbox.create("sleep", "10", app=sb_app)
            sandbox_v1_2 = modal.Sandbox.create("sleep", "20", app=sb_app)
            sandbox_v1_1.set_tags({"major_version": "1", "minor_version": "1"})
            sandbox_v1_2.set_tags({"major_version": "1", "minor_version": "2"})
            for sandbox in modal.Sandbox.list(app_id=sb_app.app_id):  # All sandboxes.
                print(sandbox.object_id)
            for sandbox in modal.Sandbox.list(
                app_id=sb_app.app_id,
                tags={"major_version": "1"},
            ):  # Also all sandboxes.
                print(sandbox.object_id)
            for sandbox in modal.Sandbox.list(
                app_id=sb_app.app_id,
                tags={"major_version": "1", "minor_version": "2"},
            ):  # Just the latest sandbox.
                print(sandbox.object_id)
            sandbox_v1_1.detach()
            sandbox_v1_2.detach()
        both = sorted([sandbox_v1_1.object_id, sandbox_v1_2.object_id])
        lines = out.getvalue().split()
        self.assertEqual(sorted(lines[0:2]), both)
        self.assertEqual(sorted(lines[2:4]), both)
        self.assertEqual(lines[4:], [sandbox_v1_2.object_id])

    def test_tagging_aio(self):
        async def main():
            sb_app = await modal.App.lookup.aio("my-app", create_if_missing=True)
            sandbox_v1_1 = await modal.Sandbox.create.aio("sleep", "10", app=sb_app)
            sandbox_v1_2 = await modal.Sandbox.create.aio("sleep", "20", app=sb_app)
            await sandbox_v1_1.set_tags.aio({"major_version": "1", "minor_version": "1"})
            await sandbox_v1_2.set_tags.aio({"major_version": "1", "minor_version": "2"})
            async for sandbox in modal.Sandbox.list.aio(app_id=sb_app.app_id):  # All sandboxes.
                print(sandbox.object_id)
            async for sandbox in modal.Sandbox.list.aio(
                app_id=sb_app.app_id,
                tags={"major_version": "1"},
            ):  # Also all sandboxes.
                print(sandbox.object_id)
            async for sandbox in modal.Sandbox.list.aio(
                app_id=sb_app.app_id,
                tags={"major_version": "1", "minor_version": "2"},
            ):  # Just the latest sandbox.
                print(sandbox.object_id)
            await sandbox_v1_1.detach.aio()
            await sandbox_v1_2.detach.aio()
            return sandbox_v1_2.object_id

        with self.captured() as out:
            latest = asyncio.run(main())
        lines = out.getvalue().split()
        self.assertEqual(len(lines), 5)
        self.assertEqual(lines[4], latest)

    def test_detach(self):
        sb_app = modal.App.lookup("my-app", create_if_missing=True)
        sb = modal.Sandbox.create(app=sb_app)
        sb.detach()
        with self.assertRaises(modal.exception.ClientClosed):
            sb.exec("true")
        self.assertIsNone(modal.Sandbox.from_id(sb.object_id).poll())


class Guide2024(support.DaemonTest):
    """guide-2024.txt: the guide as it was in 2024."""

    def test_intro(self):
        with self.captured() as out:
            app = modal.App.lookup("my-app", create_if_missing=True)
            sb = modal.Sandbox.create(app=app)
            p = sb.exec("python", "-c", "print('hello')", timeout=3)
            print(p.stdout.read())
            p = sb.exec("bash", "-c", "for i in {1..10}; do date +%T; sleep 0.5; done", timeout=5)
            for line in p.stdout:
                # Avoid double newlines by using end="".
                print(line, end="")
            sb.terminate()
        self.assertTrue(out.getvalue().startswith("hello\n\n"))

    def test_parameters(self):
        # The volume exists here first (from_name without create_if_missing
        # needs one), Debian's jq stands for PyPI's pandas, and the image
        # has /repo: sandboxd does not make a missing workdir (Docker and
        # Modal do; see the daemon notes in docs/python.md).
        my_app = modal.App.lookup("my-app", create_if_missing=True)
        modal.Volume.from_name("my-volume", create_if_missing=True).hydrate()
        sb = modal.Sandbox.create(
            image=modal.Image.debian_slim().apt_install("jq").run_commands("mkdir -p /repo"),
            volumes={"/data": modal.Volume.from_name("my-volume")},
            workdir="/repo",
            app=my_app,
        )
        self.assertEqual(sb.exec("pwd").stdout.read(), "/repo\n")
        self.assertEqual(sb.exec("sh", "-c", "command -v jq").stdout.read(), "/usr/bin/jq\n")
        with self.assertRaises(modal.exception.NotFoundError):
            modal.Sandbox.create(volumes={"/data": modal.Volume.from_name("no-such-volume")},
                                 app=my_app)

    def test_verbose_logging(self):
        my_app = modal.App.lookup("my-app", create_if_missing=True)
        with self.captured() as out:
            sb = modal.Sandbox.create(app=my_app, verbose=True)

            p = sb.exec("python", "-c", "print('hello')")
            print(p.stdout.read())

            with sb.open("test.txt", "w") as f:
                f.write("Hello World\n")
        self.assertEqual(out.getvalue(), "hello\n\n")
        self.assertEqual(sb.exec("cat", "/test.txt").stdout.read(), "Hello World\n")

    def test_named_sandboxes(self):
        my_app = modal.App.lookup("my-app", create_if_missing=True)
        sb1 = modal.Sandbox.create(app=my_app, name="my-name")
        # this will raise a modal.exception.AlreadyExistsError
        with self.assertRaises(modal.exception.AlreadyExistsError):
            modal.Sandbox.create(app=my_app, name="my-name")
        # returns the currently running Sandbox with the name "my-name"
        sb2 = modal.Sandbox.from_name("my-app", "my-name")
        assert sb1.object_id == sb2.object_id  # sb1 and sb2 refer to the same Sandbox

    def test_tagging(self):
        my_app = app = modal.App.lookup("my-app", create_if_missing=True)
        sandbox_v1_1 = modal.Sandbox.create("sleep", "10", app=my_app)
        sandbox_v1_2 = modal.Sandbox.create("sleep", "20", app=my_app)
        sandbox_v1_1.set_tags({"major_version": "1", "minor_version": "1"})
        sandbox_v1_2.set_tags({"major_version": "1", "minor_version": "2"})
        self.assertEqual(len(list(modal.Sandbox.list(app_id=my_app.app_id))), 2)
        self.assertEqual(len(list(modal.Sandbox.list(app_id=my_app.app_id,
                                                     tags={"major_version": "1"}))), 2)
        latest = list(modal.Sandbox.list(app_id=app.app_id,
                                         tags={"major_version": "1", "minor_version": "2"}))
        self.assertEqual([s.object_id for s in latest], [sandbox_v1_2.object_id])
        self.assertEqual(sandbox_v1_2.get_tags(), {"major_version": "1", "minor_version": "2"})


class GuideEarly(support.DaemonTest):
    """guide-early.txt: the first "Dynamic sandboxes" guide (its snippets
    are cut short in the reference text: completed as the current guide
    writes them)."""

    @unittest.skip("Mount.from_local_dir uploads local files: sandboxd mounts only host paths "
                   "its admin allows (Sandbox.create(mounts=[...])), and the image has no "
                   "pytest")
    def test_mounts(self):
        pass

    def test_ephemeral_volume(self):
        # sandboxd deletes an ephemeral volume when the last sandbox using
        # it finishes (API.md), where Modal keeps it until the context
        # exits: reading it after sb.wait() needs a sandbox still using it
        # (the one added line, "keeper").
        with self.captured() as out:
            with modal.Volume.ephemeral() as vol:
                keeper = modal.Sandbox.create(volumes={"/cache": vol})
                sb = modal.Sandbox.create(
                    "bash", "-c", "echo foo > /cache/a.txt",
                    volumes={"/cache": vol},
                )
                sb.wait()
                for data in vol.read_file("a.txt"):
                    print(data)
        self.assertEqual(out.getvalue(), "b'foo\\n'\n")
        # Gone at the context's exit, or with the keeper.
        keeper.terminate(wait=True)
        with self.assertRaises(modal.exception.NotFoundError):
            modal.Volume.from_name(vol.name).hydrate()

    def test_ephemeral_volume_as_written(self):
        # The example as Modal writes it: here the volume is gone with its
        # only sandbox, so read_file finds nothing.
        with modal.Volume.ephemeral() as vol:
            sb = modal.Sandbox.create(
                "bash", "-c", "echo foo > /cache/a.txt",
                volumes={"/cache": vol},
            )
            sb.wait()
            with self.assertRaises(modal.exception.NotFoundError):
                for data in vol.read_file("a.txt"):
                    print(data)

    def test_persisted_volume(self):
        session_id = "example-session-id-123abc"
        vol = modal.Volume.from_name(f"vol-{session_id}", create_if_missing=True)
        sb = modal.Sandbox.create(
            "bash", "-c", "echo foo > /cache/a.txt",
            volumes={"/cache": vol},
        )
        sb.wait()
        sb = modal.Sandbox.create("cat", "/cache/a.txt", volumes={"/cache": vol})
        sb.wait()
        self.assertEqual(sb.stdout.read(), "foo\n")

    def test_block_network(self):
        sb = modal.Sandbox.create(block_network=True)
        p = sb.exec("python3", "-c", "import socket; print(socket.if_nameindex())")
        self.assertEqual(p.stdout.read(), "[(1, 'lo')]\n")

    def test_stdin(self):
        with self.captured() as out:
            sandbox = modal.Sandbox.create(
                "bash", "-c", "while read line; do echo $line; done",
            )
            sandbox.stdin.write(b"foo\n")
            sandbox.stdin.drain()  # flush line
            sandbox.stdin.write(b"bar\n")
            sandbox.stdin.drain()  # flush line
            sandbox.stdin.write_eof()
            sandbox.stdin.drain()  # flush EOF
            for line in sandbox.stdout:
                print(line, end="")
        self.assertEqual(out.getvalue(), "foo\nbar\n")

    def test_stdout_read(self):
        with self.captured() as out:
            sandbox = modal.Sandbox.create("echo", "hello")
            sandbox.wait()
            print(sandbox.stdout.read())
        self.assertEqual(out.getvalue(), "hello\n\n")

    def test_stdout_async_iteration(self):
        from sandboxd import Sandbox

        async def run():
            sandbox = await Sandbox.create.aio(
                "bash", "-c", "for i in $(seq 1 10); do echo foo $i; sleep 0.1; done")
            async for line in sandbox.stdout:
                print(line, end="")

        with self.captured() as out:
            asyncio.run(run())
        self.assertEqual(out.getvalue(), "".join("foo %d\n" % i for i in range(1, 11)))


class Reference(support.DaemonTest):
    """python-reference-modal.Sandbox.txt: the exec example."""

    def test_exec(self):
        with self.captured() as out:
            app = modal.App.lookup("my-app", create_if_missing=True)
            sandbox = modal.Sandbox.create("sleep", "infinity", app=app)
            process = sandbox.exec("bash", "-c",
                                   "for i in $(seq 1 10); do echo foo $i; sleep 0.5; done")
            for line in process.stdout:
                print(line)
        # print(line) adds a newline to each line's own.
        self.assertEqual(out.getvalue(), "".join("foo %d\n\n" % i for i in range(1, 11)))

    def test_tunnels(self):
        # Sandbox.tunnels(): Modal's reference, with servers to reach: 8000
        # over TLS (the daemon's certificate), 8001 plain.
        sb = modal.Sandbox.create(
            "sh", "-c", "python3 -m http.server 8000 & exec python3 -m http.server 8001",
            encrypted_ports=[8000], unencrypted_ports=[8001],
            readiness_probe=modal.Probe.with_exec(
                "sh", "-c", "python3 -c 'import socket as s; s.create_connection((\"127.0.0.1\", "
                "8000)); s.create_connection((\"127.0.0.1\", 8001))'"))
        sb.wait_until_ready()
        tunnels = sb.tunnels()
        self.assertEqual(sorted(tunnels), [8000, 8001])
        plain = tunnels[8001]
        self.assertFalse(plain.tls)
        self.assertEqual(plain.url, "http://%s:%d" % (plain.host, plain.port))
        self.assertEqual(plain.tcp_socket, (plain.unencrypted_host, plain.unencrypted_port))
        with urllib.request.urlopen(plain.url, timeout=10) as r:
            self.assertEqual(r.status, 200)
        tls = tunnels[8000]
        self.assertTrue(tls.tls)
        self.assertEqual(tls.url, "https://%s:%d" % tls.tls_socket)
        self.assertIn("BEGIN CERTIFICATE", modal.default_client().tls_certificate())
        with urllib.request.urlopen(tls.url, timeout=10, context=tls.ssl_context()) as r:
            self.assertEqual(r.status, 200)
        # Without the daemon's certificate, verification fails.
        with self.assertRaises(urllib.error.URLError):
            urllib.request.urlopen(tls.url, timeout=10)


class OwnDocs(support.DaemonTest):
    """The Python examples of this client's own docs run as written."""

    def run_blocks(self, path):
        if not os.path.exists(path):
            self.skipTest("%s is not here" % path)
        with open(path) as f:
            blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
        self.assertTrue(blocks)
        for code in blocks:
            with self.captured() as out:
                exec(compile(code, path, "exec"), {})
            self.assertIn("hello", out.getvalue())

    def test_docs_python_md(self):
        self.run_blocks(os.path.join(support.HERE, "..", "..", "..", "docs", "python.md"))

    def test_client_readme(self):
        self.run_blocks(os.path.join(support.HERE, "..", "README.md"))


if __name__ == "__main__":
    unittest.main()
