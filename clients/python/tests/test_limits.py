"""Against a daemon with small limits: output the daemon no longer has
(X-Sandboxd-Dropped), and uploads larger than one request body."""
import hashlib
import logging
import os
import unittest

import support
import sandboxd as modal

MIB = 1 << 20


def setUpModule():
    support.start_module_daemon(__name__, config={"output_limit_bytes": MIB,
                                                  "max_body_bytes": MIB})


def tearDownModule():
    support.stop_module_daemon(__name__)


class Limits(support.DaemonTest):
    def test_dropped_output_is_skipped_and_counted(self):
        sb = modal.Sandbox.create(image="busybox")
        n = 4 * MIB
        p = sb.exec("sh", "-c", "seq 1 1000000 | head -c %d" % n, text=False)
        self.assertEqual(p.wait(), 0)
        with self.assertLogs("sandboxd", logging.WARNING) as logs:
            data = p.stdout.read()
        self.assertGreater(p.stdout.dropped, 0)
        self.assertEqual(p.stdout.dropped + len(data), n)
        self.assertLessEqual(len(data), MIB + MIB // 4)
        want = b"".join(b"%d\n" % i for i in range(1, 1000001))[:n]
        self.assertEqual(data, want[-len(data):])
        self.assertIn("are gone", logs.output[0])

    def test_upload_in_pieces(self):
        sb = modal.Sandbox.create(image="busybox")
        self.assertEqual(modal.default_client().limits()["max_body"], MIB)
        data = os.urandom(3 * MIB + 12345)
        with sb.open("/tmp/big", "wb") as f:
            f.write(data)
        out = sb.exec("sha256sum", "/tmp/big").stdout.read()
        self.assertEqual(out.split()[0], hashlib.sha256(data).hexdigest())
        vol = modal.Volume.from_name("limits", create_if_missing=True)
        with vol.batch_upload() as b:
            b.put_file(__import__("io").BytesIO(data), "/big")
        self.assertEqual(b"".join(vol.read_file("big")), data)

    def test_a_body_over_the_limit(self):
        sb = modal.Sandbox.create(image="busybox")
        with self.assertRaises(modal.exception.RequestSizeError) as cm:
            modal.default_client().call("PUT", "/v1/sandboxes/%s/files" % sb.object_id,
                                        query={"path": "/tmp/x"}, body=b"x" * (2 * MIB))
        self.assertEqual(cm.exception.status, 413)


if __name__ == "__main__":
    unittest.main()
