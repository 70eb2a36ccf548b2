"""Image recipes built by the daemon when a sandbox is created with them."""
import time
import unittest

import support
import sandboxd as modal


def setUpModule():
    support.start_module_daemon(__name__)


def tearDownModule():
    support.stop_module_daemon(__name__)


class Recipes(support.DaemonTest):
    def test_steps(self):
        image = (modal.Image.debian_slim()
                 .run_commands("echo built > /built", "mkdir -p /work")
                 .env({"GREETING": "hi"})
                 .workdir("/work"))
        sb = modal.Sandbox.create(image=image)
        p = sb.exec("sh", "-c", "cat /built; echo $GREETING; pwd")
        self.assertEqual(p.stdout.read(), "built\nhi\n/work\n")
        # The same recipe is built once: its id again, at once.
        again = (modal.Image.debian_slim()
                 .run_commands("echo built > /built", "mkdir -p /work")
                 .env({"GREETING": "hi"})
                 .workdir("/work"))
        start = time.monotonic()
        self.assertEqual(again.build().object_id, image.object_id)
        self.assertLess(time.monotonic() - start, 2)

    def test_dockerfile_commands_keep_their_order(self):
        image = (modal.Image.busybox()
                 .run_commands("echo 1 > /order")
                 .dockerfile_commands(["RUN echo 2 >> /order", "ENV FROM_DOCKERFILE=yes"])
                 .run_commands("echo 3 >> /order"))
        sb = modal.Sandbox.create(image=image)
        self.assertEqual(sb.exec("cat", "/order").stdout.read(), "1\n2\n3\n")
        self.assertEqual(sb.exec("sh", "-c", "echo $FROM_DOCKERFILE").stdout.read(), "yes\n")

    def test_named_images(self):
        for image in (modal.Image.busybox(), modal.Image.from_name("busybox"), "busybox"):
            sb = modal.Sandbox.create(image=image)
            self.assertIn("BusyBox", sb.exec("sh", "-c", "busybox | head -1").stdout.read())

    def test_build_output(self):
        image = modal.Image.busybox().run_commands("echo visible-in-the-log-%d" % time.time_ns())
        with self.captured() as out:
            with modal.enable_output():
                image.build()
        self.assertIn("visible-in-the-log", out.getvalue())
        with self.captured() as out:
            modal.Image.busybox().run_commands("echo quiet-%d" % time.time_ns()).build()
        self.assertEqual(out.getvalue(), "")

    def test_failed_build(self):
        image = modal.Image.busybox().run_commands("echo boom-before-failing; exit 3")
        with self.assertRaises(modal.exception.ImageBuildError) as cm:
            modal.Sandbox.create(image=image)
        e = cm.exception
        self.assertTrue(e.image_id.startswith("im-"))
        self.assertIn("boom-before-failing", e.log_tail)
        self.assertIn("exited with 3", str(e))
        self.assertIn("boom-before-failing", str(e))

    def test_pip_install_index_url(self):
        # PyPI is out of reach here; an index that refuses connections shows
        # that index_url reaches pip, and how a failed pip_install reads.
        image = modal.Image.debian_slim().pip_install(
            "no-such-package-xyz", index_url="http://127.0.0.1:9/simple")
        with self.assertRaises(modal.exception.ImageBuildError) as cm:
            image.build()
        self.assertIn("127.0.0.1:9", cm.exception.log_tail)
        self.assertIn("no-such-package-xyz", str(cm.exception))

    def test_registry_base_unreachable(self):
        # No registry runs here: the pull fails, and says so.
        with self.assertRaises(modal.exception.ImageBuildError):
            modal.Image.from_registry("127.0.0.1:9/nothing:latest").build()


if __name__ == "__main__":
    unittest.main()
