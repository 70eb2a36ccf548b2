"""A process started by ``Sandbox.exec``: Modal's ``ContainerProcess``."""
import sys
import threading

from ._aio import with_aio
from ._client import LONG_POLL_S
from .io_streams import StreamReader, StreamType, StreamWriter

__all__ = ["ContainerProcess"]


class ContainerProcess:
    """A process in a sandbox (``POST /v1/sandboxes/ID/exec``).

    ``stdout`` and ``stderr`` are :class:`~sandboxd.io_streams.StreamReader`
    objects, ``stdin`` a :class:`~sandboxd.io_streams.StreamWriter`;
    ``wait()`` blocks until it ends and returns its returncode (137 when
    its ``timeout`` killed it, 128+N for signal N), ``poll()`` returns it
    or ``None`` while it runs.
    """

    def __init__(self, client, sandbox_id, process_id, *, text=True, bufsize=-1,
                 stdout=StreamType.PIPE, stderr=StreamType.PIPE):
        self._client = client
        self._sandbox_id = sandbox_id
        self._process_id = process_id
        self._base = "/v1/sandboxes/%s/processes/%s" % (sandbox_id, process_id)
        self._returncode = None
        by_line = bufsize == 1
        self._stdout = StreamReader(client, self._base + "/stdout", text=text, by_line=by_line,
                                    name="stdout")
        self._stderr = StreamReader(client, self._base + "/stderr", text=text, by_line=by_line,
                                    name="stderr")
        self._stdin = StreamWriter(client, self._base + "/stdin")
        self._forwarders = []
        for reader, kind, local in ((self._stdout, stdout, sys.stdout),
                                    (self._stderr, stderr, sys.stderr)):
            if kind == StreamType.STDOUT:
                t = threading.Thread(target=_forward, args=(reader, local), daemon=True,
                                     name="sandboxd-" + reader._name)
                t.start()
                self._forwarders.append(t)

    @property
    def object_id(self):
        """The process's id (``pr-...``)."""
        return self._process_id

    process_id = object_id

    def __repr__(self):
        return "ContainerProcess(%r)" % self._process_id

    @property
    def stdout(self):
        return self._stdout

    @property
    def stderr(self):
        return self._stderr

    @property
    def stdin(self):
        return self._stdin

    def _ask(self, timeout_s):
        r = self._client.call("GET", self._base + "/wait", query={"timeout_s": timeout_s},
                              timeout=timeout_s + 30)
        if r.get("returncode") is not None:
            self._returncode = r["returncode"]
        return self._returncode

    @with_aio
    def wait(self):
        """Blocks until the process ends (``GET .../wait``, asked again
        every 50 s); returns its returncode."""
        while self._returncode is None:
            self._ask(LONG_POLL_S)
        for t in self._forwarders:
            t.join()
        return self._returncode

    @with_aio
    def poll(self):
        """The returncode, or ``None`` while the process runs."""
        if self._returncode is None:
            self._ask(0)
        return self._returncode

    @property
    def returncode(self):
        """The returncode once the process has ended, else ``None``.

        Unlike Modal's, which raises until ``wait()`` was called, this asks
        the daemon when it does not know yet."""
        return self.poll()

    @with_aio
    def signal(self, signum):
        """Sends a signal to the process (``POST .../signal``); not in Modal."""
        self._client.call("POST", self._base + "/signal", json={"signal": int(signum)})

    @with_aio
    def resize(self, rows, cols):
        """Resizes its terminal (``pty=True`` only; ``POST .../resize``)."""
        self._client.call("POST", self._base + "/resize", json={"rows": rows, "cols": cols})


def _forward(reader, local):
    """Copies a stream to a local file as it arrives (StreamType.STDOUT)."""
    try:
        for item in reader:
            if isinstance(item, bytes):
                local.buffer.write(item)
            else:
                local.write(item)
            local.flush()
    except Exception as e:  # a forwarder must not die loudly in a thread
        print("sandboxd: %s: %s" % (reader._path, e), file=sys.stderr)
