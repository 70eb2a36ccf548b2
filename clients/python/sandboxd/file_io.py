"""Files inside a sandbox: ``Sandbox.open()`` returns a :class:`FileIO`,
Modal's ``modal.file_io.FileIO``, on the daemon's files API.

The daemon's files API moves whole files (``GET .../files?path=``) and
writes whole files or appends (``PUT``, ``POST ...&append=1``), so a
``FileIO`` holds the file's bytes here: opening for reading fetches the
file (at most 64 MiB, the daemon's limit), writes go to that copy, and
``flush()`` / ``close()`` send it back: the whole file for ``w``, ``r+``
and ``w+``, only what was added for ``a`` and ``a+``.  Another writer's
changes in between are overwritten (Modal's handles write through).
"""
import io
import posixpath

from . import exception as _exc
from ._aio import with_aio

__all__ = ["FileIO", "put_bytes"]

# Pieces of a big upload: the first replaces the file, the rest append; each
# well under the daemon's max_body_bytes (16 MiB by default).
WRITE_CHUNK = 8 << 20


def put_bytes(client, files_path, path, data, *, append=False, mode=None):
    """Writes ``data`` to ``path`` through ``files_path``
    (``/v1/sandboxes/ID/files`` or ``/v1/volumes/NAME/files``): replacing
    the file (``PUT``, created with its parents) or appending to it
    (``POST ...&append=1``), in pieces the daemon accepts."""
    view = memoryview(data).cast("B")
    chunk = WRITE_CHUNK
    if len(view) > (1 << 20):
        max_body = int(client.limits().get("max_body") or 0)
        if max_body:
            chunk = max(64 << 10, min(chunk, max_body // 2))
    off = 0
    while True:
        piece = bytes(view[off:off + chunk])
        if off == 0 and not append:
            query = {"path": path}
            if mode is not None:
                query["mode"] = "%04o" % mode
            client.call("PUT", files_path, query=query, body=piece)
        else:
            client.call("POST", files_path, query={"path": path, "append": 1}, body=piece,
                        idempotent=False)
        off += len(piece)
        if off >= len(view):
            return


def absolute(path, workdir):
    """``path`` made absolute against ``workdir`` (the daemon wants one)."""
    path = str(path)
    if not path.startswith("/"):
        path = posixpath.join(workdir or "/", path)
    return path


class FileIO:
    """An open file in a sandbox.  Modes ``r``, ``w``, ``a``, ``r+``,
    ``w+``, ``a+``, each with ``b`` for bytes (else text, UTF-8); a context
    manager; ``read``, ``readline``, ``readlines``, iteration, ``write``,
    ``seek``, ``tell``, ``flush``, ``close``, each with ``.aio``."""

    def __init__(self, client, files_path, path, mode="r"):
        kind = mode.replace("b", "").replace("t", "")
        if kind not in ("r", "w", "a", "r+", "w+", "a+") or ("b" in mode and "t" in mode):
            raise _exc.InvalidError("mode `%s`: one of r w a r+ w+ a+, with b for bytes" % mode)
        self._client = client
        self._files = files_path
        self.path = path
        self.mode = mode
        self._binary = "b" in mode
        self._readable = kind[0] == "r" or "+" in kind
        self._writable = kind[0] in "wa" or "+" in kind
        self._append = kind[0] == "a"
        self._buf = bytearray()
        self._pos = 0
        self._dirty = False
        self._added = bytearray()
        self._closed = False
        if kind[0] == "w":
            put_bytes(client, files_path, path, b"")
        elif kind[0] == "r":
            self._buf += self._fetch()
        elif kind == "a+":
            try:
                self._buf += self._fetch()
            except _exc.NotFoundError:
                put_bytes(client, files_path, path, b"", append=True)
        else:
            put_bytes(client, files_path, path, b"", append=True)  # made if missing
        if self._append:
            self._pos = len(self._buf)

    def __repr__(self):
        return "<FileIO %s mode=%r>" % (self.path, self.mode)

    def _fetch(self):
        return self._client.call("GET", self._files, query={"path": self.path}, raw=True)

    def _check(self, reading):
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if reading and not self._readable:
            raise io.UnsupportedOperation("not readable")
        if not reading and not self._writable:
            raise io.UnsupportedOperation("not writable")

    # ---- reading ----

    def _take(self, end):
        data = bytes(self._buf[self._pos:end])
        self._pos = max(self._pos, min(end, len(self._buf)))
        return data if self._binary else data.decode("utf-8", "replace")

    @with_aio
    def read(self, n=None):
        """Up to ``n`` bytes (characters in text mode), or the rest."""
        self._check(True)
        if n is None or n < 0:
            return self._take(len(self._buf))
        if self._binary:
            return self._take(self._pos + n)
        # n characters: decode the rest, keep n, advance by their bytes.
        text = bytes(self._buf[self._pos:]).decode("utf-8", "replace")[:n]
        self._pos += len(text.encode("utf-8"))
        return text

    @with_aio
    def readline(self):
        """One line, with its ``\\n`` (empty at the end)."""
        self._check(True)
        nl = self._buf.find(b"\n", self._pos)
        return self._take(len(self._buf) if nl < 0 else nl + 1)

    @with_aio
    def readlines(self):
        """The remaining lines."""
        return list(iter(self.readline, b"" if self._binary else ""))

    def __iter__(self):
        return iter(self.readline, b"" if self._binary else "")

    # ---- writing ----

    @with_aio
    def write(self, data):
        """Writes ``data`` (``str`` in text mode, bytes with ``b``) at the
        position (at the end for ``a`` modes); sent at ``flush``/``close``."""
        self._check(False)
        if self._binary:
            if isinstance(data, str):
                raise TypeError("a file opened with b takes bytes, not str")
            raw = bytes(data)
        else:
            if not isinstance(data, str):
                raise TypeError("a file opened in text mode takes str, not %s"
                                % type(data).__name__)
            raw = data.encode("utf-8")
        if self._append:
            self._buf += raw
            self._added += raw
            self._pos = len(self._buf)
        else:
            if self._pos > len(self._buf):
                self._buf += b"\0" * (self._pos - len(self._buf))
            self._buf[self._pos:self._pos + len(raw)] = raw
            self._pos += len(raw)
            self._dirty = True
        return len(data)

    @with_aio
    def flush(self):
        """Sends what was written: the whole file (``PUT``), or for ``a``
        modes what was added (``POST ...&append=1``)."""
        if self._closed:
            return
        if self._dirty:
            put_bytes(self._client, self._files, self.path, bytes(self._buf))
            self._dirty = False
        if self._added:
            put_bytes(self._client, self._files, self.path, bytes(self._added), append=True)
            del self._added[:]

    # ---- position ----

    @with_aio
    def seek(self, offset, whence=0):
        """Moves to a byte offset (from the start, 1: the position, 2: the
        end); returns the new position."""
        if self._closed:
            raise ValueError("I/O operation on closed file")
        base = {0: 0, 1: self._pos, 2: len(self._buf)}.get(whence)
        if base is None:
            raise ValueError("whence must be 0, 1 or 2")
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self):
        """The position, in bytes."""
        return self._pos

    # ---- the end ----

    @with_aio
    def close(self):
        """Flushes and closes."""
        if not self._closed:
            self.flush()
            self._closed = True

    @property
    def closed(self):
        return self._closed

    def readable(self):
        return self._readable

    def writable(self):
        return self._writable

    def seekable(self):
        return True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()  # (as Python's files: what was written is kept)
