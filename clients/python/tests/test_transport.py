"""The transport: SANDBOXD_HOST forms, TCP with a bearer token."""
import os
import unittest

import support
import sandboxd as modal


def setUpModule():
    support.start_module_daemon(__name__, tcp=True)


def tearDownModule():
    support.stop_module_daemon(__name__)


class Tcp(support.DaemonTest):
    def url(self):
        return "tcp://127.0.0.1:%d" % self.daemon.tcp_port

    def test_with_token(self):
        c = modal.Client(self.url(), self.daemon.token)
        self.assertEqual(c.health(), {"status": "ok"})
        sb = modal.Sandbox.create(image="busybox", client=c)
        self.assertEqual(sb.exec("echo", "over tcp").stdout.read(), "over tcp\n")
        with sb.open("/tmp/t", "w") as f:
            f.write("tcp file")
        self.assertEqual(modal.Sandbox.from_id(sb.object_id, client=c).open("/tmp/t").read(),
                         "tcp file")
        sb.terminate(wait=True)

    def test_from_the_environment(self):
        saved = os.environ.get("SANDBOXD_HOST")
        try:
            os.environ["SANDBOXD_HOST"] = self.url()
            os.environ["SANDBOXD_TOKEN"] = self.daemon.token
            app = modal.App.lookup("over-tcp", create_if_missing=True)
            sb = modal.Sandbox.create(app=app, image="busybox")
            self.assertEqual([s.object_id for s in modal.Sandbox.list(app_id=app.app_id)],
                             [sb.object_id])
        finally:
            os.environ["SANDBOXD_HOST"] = saved
            os.environ.pop("SANDBOXD_TOKEN", None)

    def test_without_or_with_a_wrong_token(self):
        for token in (None, "wrong"):
            c = modal.Client(self.url(), token)
            with self.assertRaises(modal.exception.AuthError) as cm:
                c.health()
            self.assertEqual(cm.exception.status, 401)


if __name__ == "__main__":
    unittest.main()
