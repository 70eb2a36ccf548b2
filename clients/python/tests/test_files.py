"""Files: Sandbox.open in every mode, ls/mkdir/rm, volumes' files, and
snapshots (snapshot_filesystem, snapshot_directory, mount_image)."""
import hashlib
import io
import os
import tempfile
import unittest

import support
import sandboxd as modal


def setUpModule():
    support.start_module_daemon(__name__)


def tearDownModule():
    support.stop_module_daemon(__name__)


class Open(support.DaemonTest):
    def setUp(self):
        self.sb = modal.Sandbox.create(image="busybox")

    def cat(self, path):
        return self.sb.exec("cat", path, text=False).stdout.read()

    def test_write_then_read_text(self):
        with self.sb.open("/tmp/t.txt", "w") as f:
            self.assertEqual(f.write("héllo\n"), 6)
            f.write("second line\nthird")
        self.assertTrue(f.closed)
        self.assertEqual(self.cat("/tmp/t.txt"), "héllo\nsecond line\nthird".encode())
        with self.sb.open("/tmp/t.txt") as f:
            self.assertEqual(f.readline(), "héllo\n")
            self.assertEqual(f.read(3), "sec")
            self.assertEqual(f.readlines(), ["ond line\n", "third"])
            self.assertEqual(f.read(), "")
        with self.sb.open("/tmp/t.txt", "r") as f:
            self.assertEqual(list(f), ["héllo\n", "second line\n", "third"])

    def test_binary(self):
        data = bytes(range(256)) * 10
        with self.sb.open("/tmp/b", "wb") as f:
            f.write(data)
        self.assertEqual(self.cat("/tmp/b"), data)
        with self.sb.open("/tmp/b", "rb") as f:
            self.assertEqual(f.read(10), data[:10])
            self.assertEqual(f.seek(-6, 2), len(data) - 6)
            self.assertEqual(f.read(), data[-6:])
            self.assertEqual(f.tell(), len(data))
        with self.sb.open("/tmp/b", "wb") as f:
            with self.assertRaises(TypeError):
                f.write("text")

    def test_w_truncates_and_creates_at_open(self):
        self.sb.exec("sh", "-c", "echo old > /tmp/w").wait()
        f = self.sb.open("/tmp/w", "w")
        self.assertEqual(self.cat("/tmp/w"), b"")  # truncated at once
        f.write("new")
        f.flush()
        self.assertEqual(self.cat("/tmp/w"), b"new")
        f.close()
        with self.assertRaises(ValueError):
            f.write("closed")

    def test_append(self):
        self.sb.exec("sh", "-c", "printf 'one\\n' > /tmp/a").wait()
        with self.sb.open("/tmp/a", "a") as f:
            f.write("two\n")
            f.flush()
            self.sb.exec("sh", "-c", "printf 'side\\n' >> /tmp/a").wait()
            f.write("three\n")
        # Appends go after whatever is there, like O_APPEND.
        self.assertEqual(self.cat("/tmp/a"), b"one\ntwo\nside\nthree\n")
        with self.sb.open("/tmp/new-by-a", "a") as f:
            pass
        self.assertEqual(self.cat("/tmp/new-by-a"), b"")

    def test_read_plus(self):
        self.sb.exec("sh", "-c", "printf 'abcdef' > /tmp/rp").wait()
        with self.sb.open("/tmp/rp", "r+") as f:
            self.assertEqual(f.read(2), "ab")
            f.write("XY")
            f.seek(0)
            self.assertEqual(f.read(), "abXYef")
        self.assertEqual(self.cat("/tmp/rp"), b"abXYef")
        with self.assertRaises(modal.NotFoundError):
            self.sb.open("/tmp/missing", "r+")

    def test_write_plus(self):
        with self.sb.open("/tmp/wp", "w+") as f:
            f.write("fresh")
            f.seek(0)
            self.assertEqual(f.read(), "fresh")
        self.assertEqual(self.cat("/tmp/wp"), b"fresh")

    def test_append_plus(self):
        self.sb.exec("sh", "-c", "printf 'start' > /tmp/ap").wait()
        with self.sb.open("/tmp/ap", "a+") as f:
            self.assertEqual(f.tell(), 5)  # at the end, as Python's a+
            f.write("-more")
            f.seek(0)
            self.assertEqual(f.read(), "start-more")
        self.assertEqual(self.cat("/tmp/ap"), b"start-more")
        with self.sb.open("/tmp/ap-new", "a+") as f:
            self.assertEqual(f.read(), "")
            f.write("x")
        self.assertEqual(self.cat("/tmp/ap-new"), b"x")

    def test_mode_checks(self):
        with self.sb.open("/tmp/m", "w") as f:
            with self.assertRaises(io.UnsupportedOperation):
                f.read()
        with self.sb.open("/tmp/m", "r") as f:
            with self.assertRaises(io.UnsupportedOperation):
                f.write("x")
        with self.assertRaises(modal.NotFoundError):
            self.sb.open("/tmp/nope")
        with self.assertRaises(modal.InvalidError):
            self.sb.open("/tmp", "r")  # a directory

    def test_relative_paths_are_from_the_workdir(self):
        sb = modal.Sandbox.create(image="busybox", workdir="/tmp")
        with sb.open("rel.txt", "w") as f:
            f.write("here")
        self.assertEqual(sb.exec("cat", "/tmp/rel.txt").stdout.read(), "here")
        self.assertIn("rel.txt", sb.ls("."))

    def test_big_file(self):
        # 20 MiB: more than the daemon takes in one body (16 MiB), so sent
        # as a PUT and appends.
        data = os.urandom(1 << 20) * 20
        with self.sb.open("/tmp/big", "wb") as f:
            f.write(data)
        out = self.sb.exec("sha256sum", "/tmp/big").stdout.read()
        self.assertEqual(out.split()[0], hashlib.sha256(data).hexdigest())
        with self.sb.open("/tmp/big", "rb") as f:
            self.assertEqual(f.read(), data)


class Dirs(support.DaemonTest):
    def test_ls_mkdir_rm(self):
        sb = modal.Sandbox.create(image="busybox")
        sb.mkdir("/work/a/b", parents=True)
        sb.mkdir("/work/c")
        with sb.open("/work/a/b/f", "w") as f:
            f.write("x")
        self.assertEqual(sorted(sb.ls("/work")), ["a", "c"])
        self.assertEqual(sb.ls("/work/a/b"), ["f"])
        with self.assertRaises(modal.Error):
            sb.rm("/work/a")  # not empty
        sb.rm("/work/a/b/f")
        self.assertEqual(sb.ls("/work/a/b"), [])
        sb.rm("/work/c")
        sb.rm("/work", recursive=True)
        self.assertNotIn("work", sb.ls("/"))


class Volumes(support.DaemonTest):
    def test_files_without_a_sandbox(self):
        vol = modal.Volume.from_name("files-vol", create_if_missing=True)
        self.assertTrue(vol.object_id.startswith("vo-"))
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "one.txt"), "w") as f:
                f.write("one")
            os.makedirs(os.path.join(d, "tree", "sub"))
            with open(os.path.join(d, "tree", "sub", "deep.txt"), "w") as f:
                f.write("deep")
            with vol.batch_upload() as batch:
                batch.put_file(os.path.join(d, "one.txt"), "/one.txt")
                batch.put_file(io.BytesIO(b"from memory"), "mem.bin")
                batch.put_directory(os.path.join(d, "tree"), "/tree")
            with self.assertRaises(FileExistsError):
                with vol.batch_upload() as batch:
                    batch.put_file(io.BytesIO(b"again"), "/one.txt")
            with vol.batch_upload(force=True) as batch:
                batch.put_file(io.BytesIO(b"replaced"), "/one.txt")
        self.assertEqual(b"".join(vol.read_file("one.txt")), b"replaced")
        buf = io.BytesIO()
        self.assertEqual(vol.read_file_into_fileobj("/mem.bin", buf), 11)
        self.assertEqual(buf.getvalue(), b"from memory")
        top = {e.path: e for e in vol.listdir("/")}
        self.assertEqual(sorted(top), ["mem.bin", "one.txt", "tree"])
        self.assertEqual(top["tree"].type, modal.FileEntryType.DIRECTORY)
        self.assertEqual(top["one.txt"].type, modal.FileEntryType.FILE)
        self.assertEqual(top["one.txt"].size, 8)
        deep = sorted(e.path for e in vol.listdir("/", recursive=True))
        self.assertEqual(deep, ["mem.bin", "one.txt", "tree", "tree/sub", "tree/sub/deep.txt"])
        # Mounted in a sandbox, the same files; its writes are seen here.
        sb = modal.Sandbox.create(image="busybox", volumes={"/data": vol})
        self.assertEqual(sb.exec("cat", "/data/tree/sub/deep.txt").stdout.read(), "deep")
        sb.exec("sh", "-c", "echo written > /data/by-sandbox").wait()
        self.assertEqual(b"".join(vol.read_file("by-sandbox")), b"written\n")
        vol.commit()
        vol.reload()
        vol.remove_file("tree", recursive=True)
        vol.remove_file("mem.bin")
        self.assertEqual(sorted(e.path for e in vol.listdir("/")), ["by-sandbox", "one.txt"])
        with self.assertRaises(modal.NotFoundError):
            list(vol.read_file("mem.bin"))
        # In use: not deleted; then deleted.
        with self.assertRaises(modal.exception.FailedPreconditionError):
            modal.Volume.delete("files-vol")
        sb.terminate(wait=True)
        modal.Volume.delete("files-vol")
        with self.assertRaises(modal.NotFoundError):
            modal.Volume.from_name("files-vol").hydrate()

    def test_ephemeral_without_sandbox(self):
        with modal.Volume.ephemeral() as vol:
            with vol.batch_upload() as b:
                b.put_file(io.BytesIO(b"e"), "/e")
            self.assertEqual(b"".join(vol.read_file("e")), b"e")
            name = vol.name
        with self.assertRaises(modal.NotFoundError):
            modal.Volume.from_name(name).hydrate()


class Snapshots(support.DaemonTest):
    def test_snapshot_filesystem(self):
        sb = modal.Sandbox.create(image="busybox")
        sb.exec("sh", "-c", "mkdir -p /app && echo state > /app/state").wait()
        image = sb.snapshot_filesystem()
        self.assertTrue(image.object_id.startswith("im-"))
        sb2 = modal.Sandbox.create(image=image)
        self.assertEqual(sb2.exec("cat", "/app/state").stdout.read(), "state\n")
        sb3 = modal.Sandbox.create(image=modal.Image.from_id(image.object_id))
        self.assertEqual(sb3.open("/app/state").read(), "state\n")

    def test_snapshot_directory_and_mount_image(self):
        sb = modal.Sandbox.create(image="busybox")
        sb.exec("sh", "-c", "mkdir -p /data/sub && echo a > /data/sub/a").wait()
        image = sb.snapshot_directory("/data")
        other = modal.Sandbox.create(image="busybox")
        other.mount_image("/mnt/data", image)
        self.assertEqual(other.exec("cat", "/mnt/data/sub/a").stdout.read(), "a\n")
        other.mount_image("/mnt/empty")
        self.assertEqual(other.ls("/mnt/empty"), [])


if __name__ == "__main__":
    unittest.main()
