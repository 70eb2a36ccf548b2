"""The daemon's error answers as exceptions: 404, 409 and 400 mapped to
Modal's names, and the sandbox ends that raise from wait()."""
import time
import unittest

import support
import sandboxd as modal
from sandboxd import exception as exc


def setUpModule():
    support.start_module_daemon(__name__)


def tearDownModule():
    support.stop_module_daemon(__name__)


class NotFound(support.DaemonTest):
    def check(self, fn, *args, **kwargs):
        with self.assertRaises(modal.NotFoundError) as cm:
            fn(*args, **kwargs)
        self.assertEqual(cm.exception.status, 404)
        self.assertEqual(cm.exception.code, "not_found")
        self.assertIsInstance(cm.exception, modal.Error)
        return cm.exception

    def test_objects(self):
        e = self.check(modal.Sandbox.from_id, "sb-0000000000000000000000")
        self.assertIn("sb-0000000000000000000000", str(e))
        self.check(modal.Sandbox.from_name, "no-such-app", "no-such-name")
        self.check(modal.App.lookup, "no-such-app")
        self.check(modal.Volume.from_name("no-such-volume").hydrate)
        self.check(modal.Volume.delete, "no-such-volume")
        self.check(modal.Secret.delete, "no-such-secret")

    def test_create_references(self):
        self.check(modal.Sandbox.create, image="no-such-image")
        self.check(modal.Sandbox.create, image=modal.Image.from_name("no-such-image"))
        self.check(modal.Sandbox.create, secrets=[modal.Secret.from_name("no-such-secret")])
        self.check(modal.Sandbox.create, volumes={"/d": modal.Volume.from_name("no-such")})
        self.check(modal.Sandbox.create, volumes={"/d": "no-such"})
        self.check(lambda: list(modal.Sandbox.list(app_id="ap-0000000000000000000000")))

    def test_inside_a_sandbox(self):
        sb = modal.Sandbox.create(image="busybox")
        self.check(sb.open, "/no/such/file")
        self.check(sb.ls, "/no/such/dir")
        self.check(sb.rm, "/no/such/file")
        self.check(sb.mkdir, "/no/such/dir")  # (parents=False)
        sb.mkdir("/yes/such/dir", parents=True)
        self.assertEqual(sb.ls("/yes/such"), ["dir"])
        self.check(modal.ContainerProcess(sb._client, sb.object_id,
                                          "pr-0000000000000000000000").wait)


class Conflict(support.DaemonTest):
    def test_name_taken(self):
        app = modal.App.lookup("errs", create_if_missing=True)
        modal.Sandbox.create(app=app, name="taken", image="busybox")
        with self.assertRaises(modal.exception.AlreadyExistsError) as cm:
            modal.Sandbox.create(app=app, name="taken", image="busybox")
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "already_exists"))
        # Another app may use it.
        modal.Sandbox.create(app="errs-2", name="taken", image="busybox")

    def test_finished_sandbox(self):
        sb = modal.Sandbox.create(image="busybox")
        sb.terminate(wait=True)
        with self.assertRaises(exc.FailedPreconditionError) as cm:
            sb.exec("true")
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "failed_precondition"))
        with self.assertRaises(exc.FailedPreconditionError):
            sb.open("/etc/passwd")
        with self.assertRaises(exc.FailedPreconditionError):
            sb.wait_until_ready()
        # Terminating again is fine.
        sb.terminate()

    def test_gpu_refused(self):
        with self.assertRaises(exc.FailedPreconditionError) as cm:
            modal.Sandbox.create(gpu="any", image="busybox")
        self.assertIn("GPU", str(cm.exception))

    def test_no_probe_no_entrypoint(self):
        sb = modal.Sandbox.create(image="busybox")
        with self.assertRaises(exc.FailedPreconditionError):
            sb.wait_until_ready()
        with self.assertRaises(exc.FailedPreconditionError):
            sb.stdout.read()

    def test_secret_exists(self):
        modal.Secret.create_deployed("errs-secret", {"A": "1"})
        with self.assertRaises(modal.exception.AlreadyExistsError):
            modal.Secret.create_deployed("errs-secret", {"A": "2"})
        modal.Secret.create_deployed("errs-secret", {"A": "3"}, overwrite=True)
        sb = modal.Sandbox.create(secrets=[modal.Secret.from_name("errs-secret")],
                                  image="busybox")
        self.assertEqual(sb.exec("sh", "-c", "echo $A").stdout.read(), "3\n")
        # Inline ones and the exec's own env come after, in order.
        p = sb.exec("sh", "-c", "echo $A $B", secrets=[modal.Secret.from_dict({"B": "x"})],
                    env={"A": "4"})
        self.assertEqual(p.stdout.read(), "4 x\n")
        modal.Secret.delete("errs-secret")


class Invalid(support.DaemonTest):
    def check(self, field, fn, *args, **kwargs):
        with self.assertRaises(modal.InvalidError) as cm:
            fn(*args, **kwargs)
        self.assertEqual(cm.exception.status, 400)
        self.assertEqual(cm.exception.code, "invalid_argument")
        self.assertIn(field, str(cm.exception))

    def test_create_fields(self):
        self.check("name", modal.Sandbox.create, name="no spaces please")
        self.check("timeout_s", modal.Sandbox.create, timeout=0)
        self.check("timeout_s", modal.Sandbox.create, timeout=100000)
        self.check("memory_mib", modal.Sandbox.create, memory=1)
        self.check("cidr_allowlist", modal.Sandbox.create, cidr_allowlist=["nowhere"])
        self.check("cidr_allowlist", modal.Sandbox.create, cidr_allowlist=["10.0.0.0/8"],
                   block_network=True)
        self.check("ports", modal.Sandbox.create, unencrypted_ports=[70000])
        self.check("workdir", modal.Sandbox.create, workdir="relative")
        self.check("app", modal.App.lookup, "bad app!", create_if_missing=True)

    def test_client_side(self):
        sb = modal.Sandbox.create(image="busybox")
        with self.assertRaises(modal.InvalidError):
            sb.exec()
        with self.assertRaises(modal.InvalidError):
            sb.exec("echo", 3)
        with self.assertRaises(modal.InvalidError):
            sb.exec("echo", bufsize=1, text=False)
        with self.assertRaises(modal.InvalidError):
            sb.open("/x", "rw")
        with self.assertRaises(modal.InvalidError):
            modal.Image.debian_slim(python_version="3.12")
        with self.assertRaises(modal.InvalidError):
            modal.Sandbox.create(readiness_probe="tcp:80")

    def test_exec_of_a_missing_program(self):
        sb = modal.Sandbox.create(image="busybox")
        self.check("no-such-program", sb.exec, "no-such-program")


class Ends(support.DaemonTest):
    def test_timeout(self):
        sb = modal.Sandbox.create(image="busybox", timeout=1)
        with self.assertRaises(modal.SandboxTimeoutError) as cm:
            sb.wait()
        self.assertIsInstance(cm.exception, TimeoutError)  # the built-in, too
        self.assertEqual(sb.returncode, 137)

    def test_idle_timeout(self):
        sb = modal.Sandbox.create(image="busybox", idle_timeout=1)
        start = time.monotonic()
        with self.assertRaises(modal.SandboxTimeoutError):
            sb.wait(raise_on_termination=False)
        self.assertLess(time.monotonic() - start, 30)

    def test_terminated(self):
        sb = modal.Sandbox.create(image="busybox")
        sb.terminate()
        with self.assertRaises(modal.SandboxTerminatedError):
            sb.wait()
        sb.wait(raise_on_termination=False)
        self.assertEqual(sb.returncode, 137)

    def test_exit(self):
        sb = modal.Sandbox.create("sh", "-c", "exit 5", image="busybox")
        sb.wait()
        self.assertEqual(sb.returncode, 5)
        self.assertEqual(sb.poll(), 5)

    def test_could_not_start(self):
        sb = modal.Sandbox.create("no-such-program", image="busybox")
        with self.assertRaises(exc.RemoteError) as cm:
            sb.wait()
        self.assertIn("no-such-program", str(cm.exception))
        self.assertEqual(sb.poll(), -1)

    def test_oom(self):
        sb = modal.Sandbox.create(
            "python3", "-c", "b = bytearray(200 << 20); print(len(b))", memory=64)
        sb.wait()
        self.assertEqual(sb.returncode, 137)


if __name__ == "__main__":
    unittest.main()
