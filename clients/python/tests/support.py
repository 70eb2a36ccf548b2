"""A private sandboxd for the tests, started as tests/daemonlib.c starts
one: its own socket, state and run directories under /run/sbx-py.XXXXXX,
its own cgroup parent, bridge and subnet; every sandbox and volume deleted
and the daemon stopped (SIGTERM) at the end, the directory removed.

The binaries come from ``SBX_DAEMON`` and ``SBX_MONITOR`` (``make check``
sets them to the build's); the tests skip, saying why, when not root,
when the images are missing or when the binaries are not there.
"""
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the sandboxd package, without installing it

import sandboxd  # noqa: E402

IMAGE_STORE = os.environ.get("SBX_STATE_DIR") or "/var/lib/sandboxd"


def skip_reason():
    """Why the daemon tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the daemon makes namespaces and cgroups: run as root"
    for image in ("busybox", "debian-slim"):
        if not os.path.exists(os.path.join(IMAGE_STORE, "images", image, "config.json")):
            return "no %s image in %s (runtime/images/sbx-mkimage %s)" % (image, IMAGE_STORE,
                                                                         image)
    for var in ("SBX_DAEMON", "SBX_MONITOR"):
        path = os.environ.get(var)
        if not path:
            return "%s is not set (make check sets it to the build's binary)" % var
        if not os.access(path, os.X_OK):
            return "%s=%s is not an executable" % (var, path)
    return None


def net_names():
    """A bridge and subnet of this test process's own."""
    pid = os.getpid()
    return "sbxp%d" % (pid % 100000), "10.214.%d.0/24" % (pid % 250)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One sandboxd on a fresh directory."""

    def __init__(self, tag, config=None, tcp=False):
        self.tag = tag
        self.dir = tempfile.mkdtemp(prefix="sbx-py-%s." % tag, dir="/run")
        os.chmod(self.dir, 0o711)
        self.sock = os.path.join(self.dir, "sandboxd.sock")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.cgroup_parent = "sandboxd-py-%s-%d" % (tag, os.getpid())
        self.bridge, self.subnet = net_names()
        self.config = config
        self.token = None
        self.tcp_port = None
        if tcp:
            self.token = "t0ken-" + os.urandom(8).hex()
            self.tcp_port = free_port()
            with open(os.path.join(self.dir, "tokens"), "w") as f:
                f.write(self.token + "\n")
            os.chmod(os.path.join(self.dir, "tokens"), 0o600)
        self.proc = None
        self.client = sandboxd.Client(self.sock)

    def argv(self):
        argv = [os.environ["SBX_DAEMON"], "--socket", self.sock,
                "--state-dir", os.path.join(self.dir, "state"),
                "--run-dir", os.path.join(self.dir, "run"),
                "--image-store", IMAGE_STORE, "--monitor", os.environ["SBX_MONITOR"],
                "--cgroup-parent", self.cgroup_parent,
                "--bridge", self.bridge, "--subnet", self.subnet]
        if self.config is not None:
            path = os.path.join(self.dir, "sandboxd.json")
            with open(path, "w") as f:
                json.dump(self.config, f)
            argv += ["--config", path]
        if self.tcp_port:
            argv += ["--listen", "127.0.0.1:%d" % self.tcp_port,
                     "--tokens", os.path.join(self.dir, "tokens")]
        return argv

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(2)
                    s.connect(self.sock)
                    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("sandboxd did not come up; its log:\n" + self.log_tail())

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop_daemon(self, sig=signal.SIGTERM):
        """Stops the daemon process only (its sandboxes keep running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop_daemon()
        return self.start()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def delete_all(self):
        """Deletes every sandbox the daemon knows, and every volume.

        Running ones are terminated (and waited for) first: a DELETE of a
        running sandbox whose monitor goes away before it answers the
        shutdown makes this daemon read the sandbox after freeing it
        (monitor-client.c on_read: sbxd_sandbox_sync after disconnect's
        callbacks forgot it), which ASan builds abort on."""
        c = self.client
        for sb in c.call("GET", "/v1/sandboxes", query={"state": "running"})["sandboxes"]:
            with contextlib.suppress(sandboxd.Error):
                c.call("POST", "/v1/sandboxes/%s/terminate" % sb["sandbox_id"],
                       json={"wait": True}, timeout=90)
        for sb in c.call("GET", "/v1/sandboxes", query={"state": "all"})["sandboxes"]:
            with contextlib.suppress(sandboxd.Error):
                c.call("DELETE", "/v1/sandboxes/" + sb["sandbox_id"], timeout=60)
        for v in c.call("GET", "/v1/volumes")["volumes"]:
            with contextlib.suppress(sandboxd.Error):
                c.call("DELETE", "/v1/volumes/" + v["name"], timeout=60)

    def close(self):
        """Deletes everything, stops the daemon, removes its directory, and
        checks that its cgroup parent went with it."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                # It died: one on the same directory finds its sandboxes
                # again, so that they are deleted and its cgroup pruned.
                self.proc = None
                with contextlib.suppress(RuntimeError):
                    self.start()
            if self.proc is not None:
                self.delete_all()
                time.sleep(0.2)
        finally:
            self.client.close()
            self.stop_daemon()
            shutil.rmtree(self.dir, ignore_errors=True)
        left = subprocess.run(
            ["find", "/sys/fs/cgroup", "-maxdepth", "6", "-name", self.cgroup_parent + "*"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        if left:
            raise AssertionError("cgroup parent left behind: " + left)


_daemons = {}


def start_module_daemon(module_name, **kwargs):
    """setUpModule's half: skips the module (printing why) or starts its
    daemon and points SANDBOXD_HOST at it."""
    reason = skip_reason()
    if reason:
        print("SKIP: " + reason, file=sys.stderr)
        raise unittest.SkipTest(reason)
    d = Daemon(module_name.split(".")[-1].replace("test_", "")[:12], **kwargs).start()
    _daemons[module_name] = d
    os.environ["SANDBOXD_HOST"] = d.sock
    os.environ.pop("SANDBOXD_TOKEN", None)
    return d


def stop_module_daemon(module_name):
    d = _daemons.pop(module_name, None)
    if d is not None:
        os.environ.pop("SANDBOXD_HOST", None)
        d.close()


class DaemonTest(unittest.TestCase):
    """A test against its module's daemon; every sandbox is deleted after
    each test, so that tests do not see each other's."""

    daemon = None

    @classmethod
    def setUpClass(cls):
        cls.daemon = _daemons.get(cls.__module__)
        if cls.daemon is None:
            raise unittest.SkipTest(skip_reason() or "no daemon for this module")

    def tearDown(self):
        d = self.daemon
        if d is None or d.proc is None:
            return
        if d.proc.poll() is not None:
            # It died under the test: say how, with its log, and start it
            # again for the tests after this one.
            status, tail = d.proc.returncode, d.log_tail(80)
            d.proc = None
            d.start()
            self.fail("sandboxd exited (status %s) during the test; the end of its log:\n%s"
                      % (status, tail))
        d.delete_all()

    def captured(self):
        """A context manager capturing stdout: ``with self.captured() as out``."""
        return contextlib.redirect_stdout(io.StringIO())
