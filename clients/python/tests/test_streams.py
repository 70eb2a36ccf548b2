"""Output as it arrives, large output, stdin, and the streams surviving a
broken connection and a daemon restart."""
import hashlib
import socket
import threading
import time
import unittest

import support
import sandboxd as modal


def setUpModule():
    support.start_module_daemon(__name__)


def tearDownModule():
    support.stop_module_daemon(__name__)


def ticker(n, delay):
    """A command printing 1..n, one line every delay seconds."""
    return ["sh", "-c", "for i in $(seq 1 %d); do echo $i; sleep %s; done" % (n, delay)]


class Output(support.DaemonTest):
    def setUp(self):
        self.sb = modal.Sandbox.create(image="busybox")

    def test_lines_arrive_as_printed(self):
        p = self.sb.exec(*ticker(5, 0.4), bufsize=1)
        start = time.monotonic()
        seen = []
        for line in p.stdout:
            seen.append((line, time.monotonic() - start))
        self.assertEqual([l for l, _ in seen], ["%d\n" % i for i in range(1, 6)])
        # The first came long before the process ended, each about 0.4 s
        # after the one before: none were held back until the end.
        self.assertLess(seen[0][1], 0.3)
        self.assertGreater(seen[-1][1], 1.4)
        for (_, a), (_, b) in zip(seen, seen[1:]):
            self.assertGreater(b - a, 0.2)
        self.assertEqual(p.wait(), 0)

    def test_unbuffered_pieces_and_partial_lines(self):
        # bufsize=-1 (the default): each piece as it comes, a prompt
        # without its newline too.
        p = self.sb.exec("sh", "-c", "printf 'name? '; read x; echo hi $x")
        it = iter(p.stdout)
        self.assertEqual(next(it), "name? ")
        p.stdin.write("bob\n")
        p.stdin.drain()
        self.assertEqual("".join(it), "hi bob\n")

    def test_stdout_and_stderr(self):
        p = self.sb.exec("sh", "-c", "echo out; echo err >&2; exit 3")
        self.assertEqual(p.stdout.read(), "out\n")
        self.assertEqual(p.stderr.read(), "err\n")
        self.assertEqual(p.wait(), 3)
        self.assertEqual(p.poll(), 3)
        self.assertEqual(p.returncode, 3)

    def test_read_after_partial_iteration(self):
        p = self.sb.exec("seq", "1", "5", bufsize=1)
        it = iter(p.stdout)
        self.assertEqual(next(it), "1\n")
        self.assertEqual(p.stdout.read(), "2\n3\n4\n5\n")
        self.assertEqual(p.stdout.read(), "")

    def test_large_output(self):
        # 48 MiB through the follow stream, read as bytes as it comes.
        n = 48 << 20
        line = b"x" * 255 + b"\n"
        p = self.sb.exec("sh", "-c", "yes %s | head -c %d" % ("x" * 255, n), text=False)
        h, total = hashlib.sha256(), 0
        for chunk in p.stdout:
            self.assertIsInstance(chunk, bytes)
            h.update(chunk)
            total += len(chunk)
        self.assertEqual(total, n)
        want = line * (n // len(line)) + line[:n % len(line)]
        self.assertEqual(h.hexdigest(), hashlib.sha256(want).hexdigest())
        self.assertEqual(p.stdout.offset, n)
        self.assertEqual(p.stdout.dropped, 0)

    def test_large_text_output_by_lines(self):
        p = self.sb.exec("seq", "1", "300000", bufsize=1)
        count, total = 0, 0
        for line in p.stdout:
            count += 1
            total += int(line)
        self.assertEqual(count, 300000)
        self.assertEqual(total, 300000 * 300001 // 2)

    def test_binary_is_binary_and_utf8_is_not_split(self):
        sb = modal.Sandbox.create()
        p = sb.exec("python3", "-c",
                    "import sys; sys.stdout.buffer.write(bytes(range(256)))", text=False)
        self.assertEqual(p.stdout.read(), bytes(range(256)))
        # 2-byte characters in pieces that split them anywhere.
        p = sb.exec("python3", "-c",
                    "import sys,time\nb='é'.encode()*5000\n"
                    "for i in range(0,len(b),777):\n"
                    " sys.stdout.buffer.write(b[i:i+777]); sys.stdout.flush(); time.sleep(0.001)")
        self.assertEqual(p.stdout.read(), "é" * 5000)

    def test_devnull_and_local_stdout(self):
        p = self.sb.exec("sh", "-c", "echo gone; echo kept >&2", stdout=modal.StreamType.DEVNULL)
        self.assertEqual(p.stdout.read(), "")
        self.assertEqual(p.stderr.read(), "kept\n")
        with self.captured() as out:
            p = self.sb.exec("sh", "-c", "echo here", stdout=modal.StreamType.STDOUT)
            p.wait()
        self.assertEqual(out.getvalue(), "here\n")

    def test_pty(self):
        p = self.sb.exec("sh", "-c", "tty; echo err >&2", pty=True)
        out = p.stdout.read()
        self.assertIn("/dev/pts/", out)
        self.assertIn("err", out)  # a terminal has one output
        self.assertEqual(p.wait(), 0)

    def test_exec_timeout(self):
        start = time.monotonic()
        p = self.sb.exec("sleep", "30", timeout=1)
        self.assertEqual(p.wait(), 137)
        self.assertLess(time.monotonic() - start, 10)
        self.assertIsNone(self.sb.poll())  # the sandbox runs on

    def test_signal(self):
        p = self.sb.exec("sleep", "30")
        p.signal(15)
        self.assertEqual(p.wait(), 128 + 15)

    def test_sandbox_entrypoint_streams(self):
        sb = modal.Sandbox.create("sh", "-c", "echo one; echo two >&2; exit 7", image="busybox")
        self.assertEqual(sb.stdout.read(), "one\n")
        self.assertEqual(sb.stderr.read(), "two\n")
        sb.wait()
        self.assertEqual(sb.returncode, 7)


class Stdin(support.DaemonTest):
    def setUp(self):
        self.sb = modal.Sandbox.create(image="busybox")

    def test_lines_and_eof(self):
        p = self.sb.exec("cat")
        p.stdin.write("hello\n")
        p.stdin.write(b"bytes\n")
        p.stdin.drain()
        p.stdin.write_eof()
        p.stdin.drain()
        self.assertEqual(p.stdout.read(), "hello\nbytes\n")
        self.assertEqual(p.wait(), 0)
        with self.assertRaises(ValueError):
            p.stdin.write("more")

    def test_interactive(self):
        p = self.sb.exec("sh", "-c", "while read x; do echo got $x; done", bufsize=1)
        it = iter(p.stdout)
        for word in ("a", "b", "c"):
            p.stdin.write(word + "\n")
            p.stdin.drain()
            self.assertEqual(next(it), "got %s\n" % word)
        p.stdin.write_eof()
        p.stdin.drain()
        self.assertEqual(list(it), [])
        self.assertEqual(p.wait(), 0)

    def test_large_stdin(self):
        # 5 MiB: sent in 512 KiB POSTs, each waiting (429) while the
        # process has not read the ones before.
        data = bytes(range(256)) * (5 * 4096)
        p = self.sb.exec("sh", "-c", "sleep 1; sha256sum")
        p.stdin.write(data)
        p.stdin.write_eof()
        p.stdin.drain()
        self.assertEqual(p.stdout.read().split()[0], hashlib.sha256(data).hexdigest())

    def test_writing_to_an_ended_process(self):
        p = self.sb.exec("true")
        p.wait()
        p.stdin.write("late\n")
        with self.assertRaises(modal.exception.FailedPreconditionError):
            p.stdin.drain()


class Reconnection(support.DaemonTest):
    def test_stream_resumes_after_the_connection_drops(self):
        sb = modal.Sandbox.create(image="busybox")
        p = sb.exec(*ticker(30, 0.05), bufsize=1)
        lines = []
        dropped = 0
        for line in p.stdout:
            lines.append(line)
            if len(lines) in (3, 10, 20):
                # Break the connection under the reader, as a network
                # would: it must ask again from the offset it reached.
                conn = p.stdout._conn
                self.assertIsNotNone(conn)
                conn.sock.shutdown(socket.SHUT_RDWR)
                dropped += 1
        self.assertEqual(dropped, 3)
        self.assertEqual(lines, ["%d\n" % i for i in range(1, 31)])

    def test_stream_survives_a_daemon_restart(self):
        sb = modal.Sandbox.create(image="busybox")
        p = sb.exec(*ticker(40, 0.05), bufsize=1)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if len(lines) == 5:
                self.daemon.restart()
        self.assertEqual(lines, ["%d\n" % i for i in range(1, 41)])
        self.assertEqual(p.wait(), 0)

    def test_calls_after_a_daemon_restart(self):
        sb = modal.Sandbox.create(image="busybox")
        self.assertEqual(sb.exec("echo", "before").stdout.read(), "before\n")
        with sb.open("/tmp/f", "w") as f:
            f.write("kept")
        # The client's pooled connections are now to a daemon that is gone.
        self.daemon.restart()
        self.assertEqual(sb.exec("echo", "after").stdout.read(), "after\n")
        self.assertEqual(sb.open("/tmp/f").read(), "kept")
        self.assertEqual(modal.Sandbox.from_id(sb.object_id).poll(), None)
        sb.terminate(wait=True)
        self.assertEqual(sb.returncode, 137)

    def test_wait_rides_out_a_restart(self):
        sb = modal.Sandbox.create(image="busybox")
        p = sb.exec("sleep", "2")
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("rc", p.wait()))
        t.start()
        time.sleep(0.5)
        self.daemon.restart()
        t.join(30)
        self.assertEqual(result.get("rc"), 0)

    def test_daemon_gone_for_good(self):
        # A daemon that does not come back: the client gives up after its
        # reconnect timeout with ConnectionError.
        sb = modal.Sandbox.create(image="busybox")
        client = modal.Client(self.daemon.sock, reconnect_timeout=1.0)
        sb2 = modal.Sandbox.from_id(sb.object_id, client=client)
        self.daemon.stop_daemon()
        try:
            start = time.monotonic()
            with self.assertRaises(modal.exception.ConnectionError):
                sb2.exec("true")
            self.assertLess(time.monotonic() - start, 5)
        finally:
            self.daemon.start()


if __name__ == "__main__":
    unittest.main()
