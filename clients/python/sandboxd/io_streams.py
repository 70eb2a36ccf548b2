"""A process's output and input: :class:`StreamReader` and
:class:`StreamWriter`, as Modal's ``modal.io_streams`` has them.

Output is ``GET .../stdout?follow=1&offset=N`` (or ``stderr``), read as it
arrives.  When the connection breaks (the daemon restarting, a network
hiccup) the reader asks again from the offset it has reached, so nothing is
lost or repeated; when the daemon says ``X-Sandboxd-Dropped: N`` (it keeps a
bounded amount per stream, ``output_limit_bytes``, and the bytes asked for
are gone) the reader skips them, counts them in :attr:`StreamReader.dropped`
and logs a warning on the ``sandboxd`` logger.

Input is ``POST .../stdin`` (``?eof=1`` closes it), sent by
:meth:`StreamWriter.drain`.
"""
import codecs
import enum
import logging
import threading
import time

from . import exception as _exc
from ._aio import aiter_in_thread, with_aio
from ._client import BROKEN, RECONNECT_TIMEOUT_S, RETRY_DELAY_S, _error_from

__all__ = ["StreamReader", "StreamWriter", "StreamType"]

log = logging.getLogger("sandboxd")

READ_SIZE = 64 * 1024
# The daemon hands a stdin body to the monitor in 512 KiB messages, each
# taken or refused whole (a 429 when the process has not read enough):
# never more per POST.
STDIN_POST_MAX = 512 * 1024



class StreamType(enum.Enum):
    """Where an exec's output goes (``exec(..., stdout=, stderr=)``)."""

    #: Kept by the daemon, read through ``process.stdout`` / ``.stderr``.
    PIPE = "pipe"
    #: Discarded inside the sandbox.
    DEVNULL = "devnull"
    #: Printed to this program's own stdout as it arrives (Modal's meaning,
    #: not the daemon's merge of stderr into stdout).
    STDOUT = "stdout"


class StreamReader:
    """One output stream of a process (or of a sandbox's entrypoint).

    ``read()`` returns everything from where reading has got to until the
    process ends; iterating yields output as it arrives: with
    ``bufsize=1`` (text only) one line at a time, else each piece as the
    daemon sends it (``str`` in text mode, ``bytes`` with ``text=False``).
    ``async for`` works too, and ``await reader.read.aio()``.
    """

    def __init__(self, client, path, *, text=True, by_line=False, name="stdout"):
        self._client = client
        self._path = path
        self._text = text
        self._by_line = by_line and text
        self._name = name
        self._offset = 0
        self._items = None
        self._conn = None
        self._closed = False
        self._lock = threading.Lock()
        #: Bytes the daemon no longer had when they were asked for.
        self.dropped = 0
        self.reconnect_timeout = getattr(client, "reconnect_timeout", RECONNECT_TIMEOUT_S)

    @property
    def offset(self):
        """How many bytes of the stream have been read (or dropped)."""
        return self._offset

    def __repr__(self):
        return "<StreamReader %s at byte %d>" % (self._path, self._offset)

    # ---- the bytes, followed and resumed ----

    def _chunks(self):
        """The stream's bytes from the current offset until its end, as they
        arrive; a broken connection is resumed at the offset reached."""
        failing_since = None
        while not self._closed:
            try:
                conn, resp = self._client.open_stream(
                    self._path, query={"follow": 1, "offset": self._offset})
            except _exc.Error:
                raise
            except BROKEN as e:
                failing_since = self._may_retry(failing_since, e)
                continue
            self._conn = conn
            try:
                dropped = int(resp.headers.get("X-Sandboxd-Dropped") or 0)
                if dropped:
                    self.dropped += dropped
                    self._offset += dropped
                    log.warning("%s: %d bytes before byte %d are gone (the daemon keeps a "
                                "bounded amount of output)", self._path, dropped, self._offset)
                while True:
                    data = resp.read1(READ_SIZE)
                    if not data:
                        return  # the end: the process ended and all of it was sent
                    self._offset += len(data)
                    failing_since = None
                    yield data
            except BROKEN as e:
                if self._closed:
                    return
                failing_since = self._may_retry(failing_since, e)
            finally:
                self._conn = None
                conn.close()

    def _may_retry(self, failing_since, error):
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since > self.reconnect_timeout:
            raise _exc.ConnectionError(
                "%s: the stream broke at byte %d and could not be resumed: %s"
                % (self._path, self._offset, error or type(error).__name__)) from None
        log.info("%s: the stream broke at byte %d (%s): resuming", self._path, self._offset,
                 error or type(error).__name__)
        time.sleep(RETRY_DELAY_S)
        return failing_since

    def _generate(self):
        if not self._text:
            yield from self._chunks()
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        for data in self._chunks():
            text = decoder.decode(data)
            if not self._by_line:
                if text:
                    yield text
                continue
            pending += text
            start = 0
            while True:
                nl = pending.find("\n", start)
                if nl < 0:
                    break
                yield pending[start:nl + 1]
                start = nl + 1
            pending = pending[start:]
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending

    # ---- what users call ----

    def __iter__(self):
        with self._lock:
            if self._items is None:
                self._items = self._generate()
        return self._items

    def __aiter__(self):
        return aiter_in_thread(iter(self))

    @with_aio
    def read(self):
        """Everything not yet read, until the process's end (``str``, or
        ``bytes`` with ``text=False``)."""
        items = list(iter(self))
        return ("" if self._text else b"").join(items)

    def close(self):
        """Stops reading: an iteration in progress ends."""
        self._closed = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(2)
            except OSError:
                pass


class StreamWriter:
    """A process's stdin.  ``write()`` buffers, ``write_eof()`` asks for the
    end, ``drain()`` sends what is buffered (``POST .../stdin``, the end as
    ``?eof=1``), waiting while the process has not read enough.

    A broken connection is retried; across a daemon restart the bytes of
    the POST in flight may arrive twice (as with ``sbx``).  Writing to a
    process that has ended, or after the end, raises
    :class:`~sandboxd.exception.FailedPreconditionError` (from the daemon)
    or ``ValueError`` (here)."""

    def __init__(self, client, path):
        self._client = client
        self._path = path
        self._buf = bytearray()
        self._eof = False
        self._eof_sent = False
        self._lock = threading.Lock()

    def __repr__(self):
        return "<StreamWriter %s>" % self._path

    def write(self, data):
        """Buffers ``data`` (``str`` is sent as UTF-8)."""
        if self._eof:
            raise ValueError("stdin is closed (write_eof was called): cannot write to it")
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("stdin takes str or bytes, not %s" % type(data).__name__)
        with self._lock:
            self._buf += data

    def write_eof(self):
        """Closes stdin once what is buffered is sent (at the next drain)."""
        self._eof = True

    @with_aio
    def drain(self):
        """Sends what is buffered, and the end if asked for."""
        with self._lock:
            while self._buf or (self._eof and not self._eof_sent):
                n = min(len(self._buf), STDIN_POST_MAX)
                last = n == len(self._buf)
                eof = self._eof and last
                self._post(bytes(self._buf[:n]), eof)
                del self._buf[:n]
                if eof:
                    self._eof_sent = True

    def _post(self, data, eof):
        backoff = 0.0
        while True:
            status, _, body = self._client.request(
                "POST", self._path, query={"eof": 1} if eof else None, body=data,
                idempotent=True)
            if status < 300:
                return
            if status in (429, 503):
                # Its stdin queue is full (or its monitor is starting): the
                # same bytes again, a little later.
                backoff = min(backoff * 2 if backoff else 0.01, 0.25)
                time.sleep(backoff)
                continue
            raise _error_from(status, body)
