"""Volumes: directories that outlive sandboxes (``/v1/volumes``)."""
import asyncio
import enum
import os
import posixpath
import urllib.parse
from dataclasses import dataclass

from . import exception as _exc
from ._aio import with_aio
from ._client import BROKEN, resolve
from .file_io import put_bytes

__all__ = ["Volume", "FileEntry", "FileEntryType"]

READ_SIZE = 64 * 1024


class FileEntryType(enum.IntEnum):
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3


_TYPES = {"file": FileEntryType.FILE, "directory": FileEntryType.DIRECTORY,
          "symlink": FileEntryType.SYMLINK}


@dataclass(frozen=True)
class FileEntry:
    """One entry of :meth:`Volume.listdir`: ``path`` relative to the
    volume's root, as Modal gives it."""

    path: str
    type: FileEntryType
    mtime: int
    size: int


def _in_volume(path):
    """A volume path as the daemon wants it: absolute from the volume's root."""
    return "/" + str(path).lstrip("/")


def _ephemeral(*, client=None):
    """A context manager (``with`` or ``async with``) giving a new volume
    (``POST /v1/volumes {"ephemeral": true}``), deleted at exit
    (``DELETE /v1/volumes/ID``).  One still mounted by a running sandbox
    then is deleted by the daemon when the last such sandbox finishes.

    Unlike Modal's, the daemon also deletes it as soon as the last sandbox
    that used it finishes, even inside the ``with``: to read what a
    finished sandbox wrote, keep another sandbox mounting it until then
    (or use a named volume, ``Volume.from_name(..., create_if_missing=True)``
    and ``Volume.delete``)."""
    return _Ephemeral(resolve(client))


# (``async with Volume.ephemeral.aio()`` as with Modal: the same object.)
_ephemeral.aio = _ephemeral


class Volume:
    """A named volume: mounted into sandboxes with
    ``Sandbox.create(volumes={"/data": vol})``, and read and written here
    without any sandbox running.

    Writes are visible to every sandbox mounting it at once: ``commit()``
    and ``reload()`` exist for Modal's sake and do nothing.
    """

    def __init__(self, name=None, *, create_if_missing=False, client=None):
        self._name = name
        self._create = create_if_missing
        self._client = client
        self._record = None

    def __repr__(self):
        return "Volume(%r)" % (self._name,)

    @staticmethod
    def from_name(name, *, create_if_missing=False, environment_name=None, client=None):
        """The volume called ``name``, looked up when first used
        (``GET /v1/volumes/NAME``; with ``create_if_missing=True``
        ``PUT /v1/volumes/NAME``): a missing one raises
        :class:`~sandboxd.exception.NotFoundError` then, as Modal's lazy
        objects do.  ``environment_name`` is ignored."""
        return Volume(name, create_if_missing=create_if_missing, client=client)

    ephemeral = staticmethod(_ephemeral)

    @with_aio
    def hydrate(self):
        """Looks the volume up (or makes it); returns it."""
        if self._record is None:
            client = resolve(self._client)
            method = "PUT" if self._create else "GET"
            self._record = client.call(method, self._path())
        return self

    def _path(self, rest=""):
        return "/v1/volumes/" + urllib.parse.quote(self._name, safe="") + rest

    def _call(self, method, rest, **kw):
        self.hydrate()
        return resolve(self._client).call(method, self._path(rest), **kw)

    @property
    def name(self):
        """The name sandboxes mount it by (its id for an ephemeral one)."""
        return self._name

    @property
    def object_id(self):
        """The volume's id (``vo-...``)."""
        return self.hydrate()._record["volume_id"]

    # ---- reading ----

    @with_aio
    def read_file(self, path):
        """The file's bytes, in pieces as they arrive (an iterator);
        ``GET /v1/volumes/NAME/files?path=``."""
        self.hydrate()
        try:
            conn, resp = resolve(self._client).open_stream(self._path("/files"),
                                                           query={"path": _in_volume(path)})
        except BROKEN as e:
            raise _exc.ConnectionError("reading %s: %s" % (path, e)) from None
        try:
            while True:
                try:
                    data = resp.read(READ_SIZE)
                except BROKEN as e:
                    raise _exc.ConnectionError("reading %s: %s" % (path, e)) from None
                if not data:
                    return
                yield data
        finally:
            conn.close()

    @with_aio
    def read_file_into_fileobj(self, path, fileobj):
        """Writes the file into ``fileobj``; returns the byte count."""
        n = 0
        for data in self.read_file(path):
            fileobj.write(data)
            n += len(data)
        return n

    @with_aio
    def listdir(self, path="/", *, recursive=False):
        """The entries of a directory (``GET /v1/volumes/NAME/ls?path=``),
        all below it with ``recursive=True``."""
        return list(self.iterdir(path, recursive=recursive))

    @with_aio
    def iterdir(self, path="/", *, recursive=True):
        """The entries below a directory, as an iterator."""
        top = _in_volume(path)
        dirs = [top]
        while dirs:
            d = dirs.pop(0)
            for e in self._call("GET", "/ls", query={"path": d}):
                full = posixpath.join(d, e["name"])
                etype = _TYPES.get(e.get("type"), FileEntryType.UNSPECIFIED)
                yield FileEntry(full.lstrip("/"), etype, e.get("mtime", 0), e.get("size", 0))
                if recursive and etype == FileEntryType.DIRECTORY:
                    dirs.append(full)

    # ---- writing ----

    @with_aio
    def remove_file(self, path, *, recursive=False):
        """Deletes a file, or a directory (with what is in it when
        ``recursive``); ``DELETE /v1/volumes/NAME/files?path=``."""
        self._call("DELETE", "/files",
                   query={"path": _in_volume(path), "recursive": 1 if recursive else None})

    def batch_upload(self, *, force=False):
        """A context manager collecting ``put_file(local, remote)`` and
        ``put_directory(local_dir, remote_dir)``, uploaded at its exit
        (``PUT /v1/volumes/NAME/files?path=``).  Without ``force``, a file
        already there raises ``FileExistsError``."""
        return _BatchUpload(self, force)

    @with_aio
    def commit(self):
        """Nothing to do: a sandboxd volume is one directory, shared live."""

    @with_aio
    def reload(self):
        """Nothing to do: a sandboxd volume is one directory, shared live."""

    @with_aio
    @staticmethod
    def delete(name, *, client=None):
        """Deletes a volume and its files (``DELETE /v1/volumes/NAME``);
        one mounted by a running sandbox is refused (409)."""
        resolve(client).call("DELETE", "/v1/volumes/" + urllib.parse.quote(name, safe=""))


class _Ephemeral:
    def __init__(self, client):
        self._client = client
        self._volume = None

    def __enter__(self):
        r = self._client.call("POST", "/v1/volumes", json={"ephemeral": True})
        v = Volume(r["name"], client=self._client)
        v._record = r
        self._volume = v
        return v

    def __exit__(self, *exc):
        try:
            self._client.call("DELETE", "/v1/volumes/" + self._volume.name)
        except (_exc.NotFoundError, _exc.FailedPreconditionError):
            pass  # gone already, or the daemon deletes it after its last sandbox

    async def __aenter__(self):
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc):
        return await asyncio.to_thread(self.__exit__, *exc)


class _BatchUpload:
    def __init__(self, volume, force):
        self._volume = volume
        self._force = force
        self._files = []  # (local path or file object, remote path, mode)

    def put_file(self, local_file, remote_path, mode=None):
        """Uploads a local file (a path, or a binary file object)."""
        self._files.append((local_file, _in_volume(remote_path), mode))

    def put_directory(self, local_path, remote_path, recursive=True):
        """Uploads a local directory's files under ``remote_path``."""
        local_path = os.fspath(local_path)
        for root, dirs, files in os.walk(local_path):
            rel = os.path.relpath(root, local_path)
            for f in sorted(files):
                dst = posixpath.join(_in_volume(remote_path), "" if rel == "." else rel, f)
                self.put_file(os.path.join(root, f), dst)
            if not recursive:
                dirs[:] = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            return
        vol = self._volume.hydrate()
        client = resolve(vol._client)
        for local, remote, mode in self._files:
            if not self._force and self._exists(remote):
                raise FileExistsError("%s: already in volume `%s` (force=True replaces it)"
                                      % (remote, vol.name))
            if hasattr(local, "read"):
                data = local.read()
            else:
                with open(local, "rb") as f:
                    data = f.read()
                if mode is None:
                    mode = os.stat(local).st_mode & 0o777
            put_bytes(client, vol._path("/files"), remote, data, mode=mode)

    def _exists(self, remote):
        parent, name = posixpath.split(remote)
        try:
            entries = self._volume._call("GET", "/ls", query={"path": parent or "/"})
        except _exc.NotFoundError:
            return False
        return any(e.get("name") == name for e in entries)
