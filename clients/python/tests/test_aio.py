"""The ``.aio`` twins beyond the docs' examples: concurrency, stdin,
files, volumes, images; and the descriptor itself."""
import asyncio
import time
import unittest

import support
import sandboxd as modal


def setUpModule():
    support.start_module_daemon(__name__)


def tearDownModule():
    support.stop_module_daemon(__name__)


class Aio(support.DaemonTest):
    def test_concurrent_execs(self):
        async def main():
            sb = await modal.Sandbox.create.aio(image="busybox")
            procs = await asyncio.gather(*[
                sb.exec.aio("sh", "-c", "sleep 1; echo %d" % i) for i in range(6)])
            start = time.monotonic()
            outs = await asyncio.gather(*[p.stdout.read.aio() for p in procs])
            codes = await asyncio.gather(*[p.wait.aio() for p in procs])
            return outs, codes, time.monotonic() - start

        outs, codes, took = asyncio.run(main())
        self.assertEqual(outs, ["%d\n" % i for i in range(6)])
        self.assertEqual(codes, [0] * 6)
        self.assertLess(took, 4)  # together, not one after the other

    def test_stdin_files_tags(self):
        async def main():
            sb = await modal.Sandbox.create.aio(image="busybox")
            p = await sb.exec.aio("cat")
            p.stdin.write("async\n")
            p.stdin.write_eof()
            await p.stdin.drain.aio()
            lines = [line async for line in p.stdout]
            f = await sb.open.aio("/tmp/x", "w")
            await f.write.aio("written")
            await f.close.aio()
            f = await sb.open.aio("/tmp/x")
            content = await f.read.aio()
            await sb.set_tags.aio({"k": "v"})
            tags = await sb.get_tags.aio()
            names = await sb.ls.aio("/tmp")
            rc = await sb.terminate.aio(wait=True)
            return lines, content, tags, names, rc

        lines, content, tags, names, rc = asyncio.run(main())
        self.assertEqual(lines, ["async\n"])
        self.assertEqual(content, "written")
        self.assertEqual(tags, {"k": "v"})
        self.assertIn("x", names)
        self.assertEqual(rc, 137)

    def test_volumes_and_images(self):
        async def main():
            async with modal.Volume.ephemeral.aio() as vol:
                image = await modal.Image.busybox().run_commands("echo img > /img").build.aio()
                sb = await modal.Sandbox.create.aio("sh", "-c", "cp /img /v/copied",
                                                   image=image, volumes={"/v": vol})
                keeper = await modal.Sandbox.create.aio(image="busybox", volumes={"/v": vol})
                await sb.wait.aio()
                entries = await vol.listdir.aio("/")
                chunks = [c async for c in vol.read_file.aio("copied")]
                await keeper.terminate.aio()
            return entries, chunks

        entries, chunks = asyncio.run(main())
        self.assertEqual([e.path for e in entries], ["copied"])
        self.assertEqual(b"".join(chunks), b"img\n")

    def test_wait_until_ready_timeout(self):
        async def main():
            sb = await modal.Sandbox.create.aio(
                image="busybox", readiness_probe=modal.Probe.with_tcp(1234))
            try:
                await sb.wait_until_ready.aio(timeout=1)
            except TimeoutError:
                return "timed out"

        self.assertEqual(asyncio.run(main()), "timed out")


if __name__ == "__main__":
    unittest.main()
