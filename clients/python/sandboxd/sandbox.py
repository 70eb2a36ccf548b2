"""Sandboxes: Modal's ``modal.Sandbox`` on sandboxd's REST API."""
import json
import posixpath
import ssl
import time
import urllib.parse

from . import exception as _exc
from ._aio import with_aio
from ._client import LONG_POLL_S, resolve
from .app import App, app_name
from .container_process import ContainerProcess
from .file_io import FileIO, absolute
from .image import Image, image_ref
from .io_streams import StreamReader, StreamType, StreamWriter
from .probe import Probe
from .secret import env_fields
from .volume import Volume

__all__ = ["Sandbox", "Tunnel"]


class Tunnel:
    """A port of a sandbox served on the daemon's host
    (``GET /v1/sandboxes/ID/tunnels``).

    ``tls`` ones (``encrypted_ports``) are served with the daemon's
    certificate, self-signed unless its config names one: verify them with
    :meth:`ssl_context` (or the PEM from ``Client.tls_certificate()``),
    where Modal's are served with a public certificate.  Modal's
    ``unencrypted_host``/``unencrypted_port`` are the host and port of a
    plain one.
    """

    def __init__(self, container_port, host, port, url, tls, client=None):
        self.container_port = container_port
        self.host = host
        self.port = port
        self.url = url
        self.tls = tls
        self._client = client

    def __repr__(self):
        return "Tunnel(%r)" % self.url

    def __eq__(self, other):
        return isinstance(other, Tunnel) and (self.host, self.port, self.url, self.tls) == (
            other.host, other.port, other.url, other.tls)

    @property
    def unencrypted_host(self):
        return None if self.tls else self.host

    @property
    def unencrypted_port(self):
        return None if self.tls else self.port

    @property
    def tls_socket(self):
        """``(host, port)`` of a tls tunnel."""
        if not self.tls:
            raise _exc.InvalidError("port %d is not served with TLS" % self.container_port)
        return self.host, self.port

    @property
    def tcp_socket(self):
        """``(host, port)`` of a plain tunnel."""
        if self.tls:
            raise _exc.InvalidError("port %d is served with TLS: use tls_socket"
                                    % self.container_port)
        return self.host, self.port

    def ssl_context(self):
        """An ``ssl.SSLContext`` that trusts the daemon's tunnel certificate
        (``GET /v1/info``: ``tls.certificate``)."""
        return ssl.create_default_context(cadata=resolve(self._client).tls_certificate())


def _pair(value, what):
    """A number, or Modal's (request, limit) pair: (request, limit)."""
    if value is None:
        return None, None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise _exc.InvalidError("%s must be a number or a (request, limit) pair" % what)
        return value[0], value[1]
    return value, None


def _q(s):
    return urllib.parse.quote(str(s), safe="")


class Sandbox:
    """A sandbox: an isolated container on the daemon's host.

    Made by :meth:`create` (or found by :meth:`from_id`, :meth:`from_name`,
    :meth:`list`); every call has an ``.aio`` twin
    (``await Sandbox.create.aio(...)``).
    """

    def __init__(self, client, record, *, workdir=None):
        self._client = client
        self._record = record
        self._id = record["sandbox_id"]
        self._workdir = workdir
        self._detached = False
        self._streams = {}

    def __repr__(self):
        return "Sandbox(%r)" % self._id

    @property
    def object_id(self):
        """The sandbox's id (``sb-...``)."""
        return self._id

    def _path(self, rest=""):
        return "/v1/sandboxes/" + self._id + rest

    def _call(self, method, rest, **kw):
        if self._detached:
            raise _exc.ClientClosed("sandbox %s was detached: Sandbox.from_id(%r) gives a "
                                    "new handle" % (self._id, self._id))
        return self._client.call(method, self._path(rest), **kw)

    # ---- making and finding ----

    @with_aio
    @staticmethod
    def create(*entrypoint_args, app=None, image=None, name=None, timeout=None,
               idle_timeout=None, workdir=None, cpu=None, memory=None, secrets=(), env=None,
               volumes=None, block_network=False, cidr_allowlist=None, encrypted_ports=(),
               unencrypted_ports=(), readiness_probe=None, gpu=None, tags=None, disk_mib=None,
               pids_max=None, hostname=None, mounts=None, environment_name=None, region=None,
               cloud=None, verbose=False, client=None):
        """Creates a sandbox (``POST /v1/sandboxes``) and returns it at once.

        ``entrypoint_args`` is its main process's argv; without one it
        idles until terminated or timed out.  ``app`` is an :class:`App`,
        an app's name or id (``"default"`` when none: Modal requires one
        outside its containers).  ``image`` is an :class:`Image` (a recipe
        is built first) or a daemon image's name or id (default
        ``debian-slim``).  ``timeout`` (default 300 s, at most 24 h) and
        ``idle_timeout`` are seconds.

        Where it differs from Modal:

        - ``cpu`` is a weight plus, as a (request, limit) pair, a hard cap
          in cores; ``memory`` (MiB) is a hard limit (going over it kills
          the sandbox, returncode 137), and of a (request, limit) pair only
          the limit counts: Modal's single number is a reservation.
        - ``gpu`` is refused with
          :class:`~sandboxd.exception.FailedPreconditionError` on a host
          without a GPU (sandboxd has none to give yet).
        - ``secrets`` made by ``Secret.from_dict`` are sent inline as the
          request's ``env``; ``Secret.from_name`` ones by name.
        - ``encrypted_ports`` are served over TLS with the daemon's
          certificate (self-signed unless configured: see
          :meth:`Tunnel.ssl_context`); ``unencrypted_ports`` as plain TCP;
          both on the daemon's host (127.0.0.1 unless configured).
        - ``cidr_allowlist`` takes IPv4 CIDRs only.
        - ``region``, ``cloud``, ``environment_name`` and ``verbose`` are
          accepted and ignored (one host, no environments).

        sandboxd's own: ``tags`` (set at creation), ``env``, ``disk_mib``
        (a cap on the writable layer), ``pids_max``, ``hostname``, and
        ``mounts`` (``[{"src", "dst", "readonly"}]``, host paths the
        daemon's config allows).
        """
        client = resolve(client)
        for a in entrypoint_args:
            if not isinstance(a, str):
                raise _exc.InvalidError("the entrypoint's arguments must be strings, not %s"
                                        % type(a).__name__)
        body = {}
        aname = app_name(app, client)
        if aname is not None:
            body["app"] = aname
        if name is not None:
            body["name"] = name
        ref = image_ref(image, client)
        if ref is not None:
            body["image"] = ref
        if entrypoint_args:
            body["entrypoint"] = list(entrypoint_args)
        if workdir is not None:
            body["workdir"] = str(workdir)
        body.update(env_fields(secrets, env))
        if timeout is not None:
            body["timeout_s"] = int(timeout)
        if idle_timeout is not None:
            body["idle_timeout_s"] = int(idle_timeout)
        cpu_request, cpu_limit = _pair(cpu, "cpu")
        if cpu_request is not None:
            body["cpu"] = float(cpu_request)
        if cpu_limit is not None:
            body["cpu_limit"] = float(cpu_limit)
        mem_request, mem_limit = _pair(memory, "memory")
        mem = mem_limit if mem_limit is not None else mem_request
        if mem is not None:
            body["memory_mib"] = int(mem)
        if disk_mib is not None:
            body["disk_mib"] = int(disk_mib)
        if pids_max is not None:
            body["pids_max"] = int(pids_max)
        if hostname is not None:
            body["hostname"] = hostname
        if block_network:
            body["block_network"] = True
        if cidr_allowlist is not None:
            body["cidr_allowlist"] = list(cidr_allowlist)
        ports = [{"port": int(p), "tls": True} for p in encrypted_ports or ()]
        ports += [{"port": int(p), "tls": False} for p in unencrypted_ports or ()]
        if ports:
            body["ports"] = ports
        if readiness_probe is not None:
            if not isinstance(readiness_probe, Probe):
                raise _exc.InvalidError("readiness_probe must be a Probe")
            body["readiness_probe"] = readiness_probe.to_json()
        if volumes:
            body["volumes"] = {str(mount): _volume_name(v, client)
                               for mount, v in volumes.items()}
        if mounts:
            body["mounts"] = list(mounts)
        if tags:
            body["tags"] = dict(tags)
        if gpu is not None:
            body["gpu"] = gpu
        record = client.call("POST", "/v1/sandboxes", json=body)
        if workdir is None and isinstance(image, Image) and image._ops:
            workdir = _image_workdir(client, ref)
        return Sandbox(client, record, workdir=workdir)

    @with_aio
    @staticmethod
    def from_id(sandbox_id, *, client=None):
        """The sandbox with this id (``GET /v1/sandboxes/ID``), running or
        finished; :class:`~sandboxd.exception.NotFoundError` when the daemon
        does not know it."""
        client = resolve(client)
        return Sandbox(client, client.call("GET", "/v1/sandboxes/" + _q(sandbox_id)))

    @with_aio
    @staticmethod
    def from_name(app_name, name, *, environment_name=None, client=None):
        """The *running* sandbox called ``name`` in app ``app_name``
        (``GET /v1/apps/APP/sandboxes/NAME``), else
        :class:`~sandboxd.exception.NotFoundError`."""
        client = resolve(client)
        if isinstance(app_name, App):
            app_name = app_name.name
        return Sandbox(client, client.call(
            "GET", "/v1/apps/%s/sandboxes/%s" % (_q(app_name), _q(name))))

    @with_aio
    @staticmethod
    def list(*, app_id=None, tags=None, client=None):
        """The running sandboxes (``GET /v1/sandboxes?app=&tag.K=V``), of
        one app when ``app_id`` is given (an app's id, name or
        :class:`App`), having at least ``tags`` when given; an iterator,
        ``async for`` with ``.aio``."""
        client = resolve(client)
        query = {}
        aname = app_name(app_id, client)
        if aname is not None:
            query["app"] = aname
        for k, v in (tags or {}).items():
            query["tag." + k] = v
        for record in client.call("GET", "/v1/sandboxes", query=query)["sandboxes"]:
            yield Sandbox(client, record)

    # ---- running things ----

    @with_aio
    def exec(self, *cmds, pty=False, pty_info=None, stdout=StreamType.PIPE,
             stderr=StreamType.PIPE, timeout=None, workdir=None, secrets=(), env=None,
             text=True, bufsize=-1):
        """Starts a process in the sandbox (``POST .../exec``) and returns
        its :class:`~sandboxd.container_process.ContainerProcess` at once.

        ``timeout`` (seconds) kills it (returncode 137) without ending the
        sandbox.  ``workdir`` defaults to the sandbox's (when this handle
        made it).  ``text=False`` gives bytes; ``bufsize=1`` makes iteration
        yield whole lines (text only), else each piece as it arrives.
        ``pty=True`` gives it a terminal (24x80; stderr then comes on
        stdout).  ``StreamType.DEVNULL`` discards a stream inside the
        sandbox, ``StreamType.STDOUT`` prints it here as it comes.
        """
        if not cmds:
            raise _exc.InvalidError("exec needs a command")
        if len(cmds) == 1 and isinstance(cmds[0], (list, tuple)):
            cmds = tuple(cmds[0])
        for a in cmds:
            if not isinstance(a, str):
                raise _exc.InvalidError("exec's arguments must be strings, not %s"
                                        % type(a).__name__)
        if bufsize not in (-1, 1):
            raise _exc.InvalidError("bufsize must be -1 (unbuffered) or 1 (lines)")
        if bufsize == 1 and not text:
            raise _exc.InvalidError("bufsize=1 (lines) needs text=True")
        body = {"argv": list(cmds)}
        wd = workdir if workdir is not None else self._workdir
        if wd is not None:
            body["workdir"] = str(wd)
        if timeout is not None:
            body["timeout_s"] = max(1, int(timeout))
        body.update(env_fields(secrets, env))
        stdout, stderr = StreamType(stdout), StreamType(stderr)
        for field, kind in (("stdout", stdout), ("stderr", stderr)):
            if kind == StreamType.DEVNULL:
                body[field] = "devnull"
        if pty or pty_info:
            body["pty"] = {"rows": 24, "cols": 80}
        r = self._call("POST", "/exec", json=body)
        return ContainerProcess(self._client, self._id, r["process_id"], text=text,
                                bufsize=bufsize, stdout=stdout, stderr=stderr)

    def _stream(self, name):
        if self._detached:
            raise _exc.ClientClosed("sandbox %s was detached" % self._id)
        if name not in self._streams:
            if name == "stdin":
                self._streams[name] = StreamWriter(self._client, self._path("/stdin"))
            else:
                self._streams[name] = StreamReader(self._client, self._path("/" + name),
                                                   text=True, by_line=True, name=name)
        return self._streams[name]

    @property
    def stdout(self):
        """The entrypoint's stdout, line by line
        (``GET /v1/sandboxes/ID/stdout?follow=1``)."""
        return self._stream("stdout")

    @property
    def stderr(self):
        """The entrypoint's stderr."""
        return self._stream("stderr")

    @property
    def stdin(self):
        """The entrypoint's stdin (``POST /v1/sandboxes/ID/stdin``)."""
        return self._stream("stdin")

    # ---- its end ----

    def _finished(self, record):
        self._record = record
        return record.get("state") == "finished"

    @with_aio
    def wait(self, raise_on_termination=True):
        """Blocks until the sandbox finishes (``GET .../wait``, asked again
        every 50 s).  As Modal's: raises
        :class:`~sandboxd.exception.SandboxTimeoutError` when it ran out of
        time (``timeout`` or ``idle_timeout``), and
        :class:`~sandboxd.exception.SandboxTerminatedError` when it was
        terminated, unless ``raise_on_termination=False``.  A sandbox that
        could not start (its entrypoint or workdir missing: the daemon's
        ``finish_reason`` ``error``) raises
        :class:`~sandboxd.exception.RemoteError` with the daemon's reason,
        from its ``error`` event."""
        while not self._finished(self._call("GET", "/wait", query={"timeout_s": LONG_POLL_S},
                                            timeout=LONG_POLL_S + 30)):
            pass
        reason = self._record.get("finish_reason")
        if reason == "error":
            raise _exc.RemoteError("sandbox %s could not start: %s"
                                   % (self._id, self._error_message()))
        if reason in ("timeout", "idle_timeout"):
            raise _exc.SandboxTimeoutError("sandbox %s ran out of time (%s)" % (self._id, reason))
        if reason == "terminated" and raise_on_termination:
            raise _exc.SandboxTerminatedError("sandbox %s was terminated" % self._id)

    def _error_message(self):
        """The message of the sandbox's ``error`` event (why it could not
        start)."""
        try:
            events = self._call("GET", "/events", raw=True).decode("utf-8", "replace")
        except _exc.Error:
            events = ""
        message = "no reason recorded"
        for line in events.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "error" and e.get("message"):
                message = e["message"]
        return message

    @with_aio
    def poll(self):
        """The returncode once finished, else ``None``; -1 for a sandbox
        that finished without running (it could not start: the daemon gives
        no returncode then)."""
        if self._record.get("state") != "finished":
            self._finished(self._call("GET", "/wait", query={"timeout_s": 0}))
        if self._record.get("state") != "finished":
            return None
        rc = self._record.get("returncode")
        return -1 if rc is None else rc

    @property
    def returncode(self):
        """The entrypoint's exit status once finished (128+N for signal N;
        137 after terminate, timeout or OOM), else ``None``."""
        return self.poll()

    @with_aio
    def terminate(self, *, wait=False):
        """Kills everything in the sandbox (``POST .../terminate``); a no-op
        once finished.  With ``wait=True`` waits for the end and returns
        the returncode (137)."""
        r = self._call("POST", "/terminate", json={"wait": bool(wait)}, idempotent=True,
                       timeout=90)
        self._finished(r)
        return r.get("returncode") if wait else None

    @with_aio
    def detach(self):
        """Closes this handle's streams; the sandbox runs on.  The handle
        cannot be used afterwards (:class:`~sandboxd.exception.ClientClosed`);
        ``Sandbox.from_id`` gives a new one."""
        for s in self._streams.values():
            if isinstance(s, StreamReader):
                s.close()
        self._detached = True

    # ---- tags, readiness, tunnels ----

    @with_aio
    def set_tags(self, tags):
        """Replaces its tags (``PUT .../tags``)."""
        self._call("PUT", "/tags", json={"tags": {str(k): str(v) for k, v in tags.items()}})

    @with_aio
    def get_tags(self):
        """Its tags (``GET .../tags``)."""
        return self._call("GET", "/tags")["tags"]

    @with_aio
    def wait_until_ready(self, *, timeout=300):
        """Blocks until its readiness probe passes (``GET .../ready``);
        returns at once if it already did.  Raises
        :class:`~sandboxd.exception.TimeoutError` (a built-in
        ``TimeoutError`` too) after ``timeout`` seconds, and
        :class:`~sandboxd.exception.FailedPreconditionError` for a sandbox
        without a probe or one that finished first."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            ask = min(left, LONG_POLL_S)
            try:
                self._finished(self._call("GET", "/ready", query={"timeout_s": "%.3f" % ask},
                                          timeout=ask + 30))
                return
            except _exc.TimeoutError:
                if left <= LONG_POLL_S:
                    raise

    @with_aio
    def tunnels(self, timeout=50):
        """Its tunnels by container port (``GET .../tunnels``), once open;
        :class:`~sandboxd.exception.SandboxTimeoutError` when they are not
        open after ``timeout`` seconds."""
        try:
            r = self._call("GET", "/tunnels", query={"timeout_s": timeout}, timeout=timeout + 30)
        except _exc.TimeoutError as e:
            raise _exc.SandboxTimeoutError(str(e), status=e.status, code=e.code) from None
        return {int(port): Tunnel(int(port), t["host"], t["port"], t["url"], bool(t.get("tls")),
                                  self._client)
                for port, t in r.items()}

    # ---- files ----

    def _abs(self, path):
        return absolute(path, self._workdir)

    @with_aio
    def open(self, path, mode="r"):
        """Opens a file in the sandbox (a :class:`~sandboxd.file_io.FileIO`,
        a context manager): modes r w a r+ w+ a+, text or with ``b`` bytes.
        A relative path is from the sandbox's workdir."""
        if self._detached:
            raise _exc.ClientClosed("sandbox %s was detached" % self._id)
        return FileIO(self._client, self._path("/files"), self._abs(path), mode)

    @with_aio
    def ls(self, path="/"):
        """The names in a directory (``GET .../ls?path=``)."""
        return [e["name"] for e in self._call("GET", "/ls", query={"path": self._abs(path)})]

    @with_aio
    def mkdir(self, path, *, parents=False):
        """Makes a directory (``POST .../mkdir?path=``); without
        ``parents`` its parent must exist
        (:class:`~sandboxd.exception.NotFoundError`)."""
        path = self._abs(path)
        if not parents:
            self._call("GET", "/ls", query={"path": posixpath.dirname(path.rstrip("/")) or "/"})
        self._call("POST", "/mkdir", query={"path": path}, idempotent=True)

    @with_aio
    def rm(self, path, *, recursive=False):
        """Removes a file or an empty directory, or a directory and all in
        it with ``recursive`` (``DELETE .../files?path=``)."""
        self._call("DELETE", "/files",
                   query={"path": self._abs(path), "recursive": 1 if recursive else None})

    # ---- images ----

    @with_aio
    def snapshot_filesystem(self, timeout=55):
        """An image of the sandbox's whole filesystem as it is now
        (``POST .../snapshot``); create sandboxes from it with
        ``image=``."""
        r = self._call("POST", "/snapshot", timeout=max(timeout, 0) + 120)
        return Image.from_id(r["image_id"])

    @with_aio
    def snapshot_directory(self, path):
        """An image of one directory of the sandbox
        (``POST .../snapshot-directory``), for :meth:`mount_image`."""
        r = self._call("POST", "/snapshot-directory", json={"path": self._abs(path)})
        return Image.from_id(r["image_id"])

    @with_aio
    def mount_image(self, path, image=None):
        """Makes ``image``'s files appear at ``path`` in the running sandbox
        (an empty directory when ``image`` is None);
        ``POST .../mount-image``."""
        body = {"path": self._abs(path), "image": image_ref(image, self._client)}
        self._call("POST", "/mount-image", json=body)


def _volume_name(v, client):
    if isinstance(v, Volume):
        if v._client is None:
            v._client = client  # (looked up on the daemon the sandbox is made on)
        return v.hydrate().name
    if isinstance(v, str):
        return v
    raise _exc.InvalidError("volumes must map paths to Volume objects, not %s"
                            % type(v).__name__)


def _image_workdir(client, image_id):
    """The working directory a recipe's image sets, for the sandbox's execs
    (the daemon runs them in / unless told)."""
    try:
        wd = client.call("GET", "/v1/images/" + _q(image_id)).get("workdir")
    except _exc.Error:
        return None
    return wd if wd and wd != "/" else None
