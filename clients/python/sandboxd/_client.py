"""The transport: HTTP/1.1 to sandboxd over its unix socket, or over TCP
with a bearer token, with the standard library only.

Configured like the ``sbx`` CLI: ``SANDBOXD_HOST`` is a unix socket path,
``unix:PATH``, ``unix://PATH`` or ``tcp://HOST:PORT`` (default
``/run/sandboxd/sandboxd.sock``), ``SANDBOXD_TOKEN`` the bearer token TCP
requires.

Calls reuse kept-alive connections from a small pool (any thread may call).
A connection the daemon closed while it sat in the pool (its idle timeout,
or a restart between calls) is noticed and replaced; a daemon that goes
away in the middle of a call is waited for, for ``reconnect_timeout``
seconds, when the call is safe to repeat.  Output streams hold a
connection of their own (``open_stream``) and resume by offset themselves
(``io_streams.py``).
"""
import atexit
import http.client
import json as _json
import os
import select
import socket
import threading
import time
import urllib.parse

from . import exception as _exc

__all__ = ["Client", "default_client", "DEFAULT_HOST"]

DEFAULT_HOST = "/run/sandboxd/sandboxd.sock"
USER_AGENT = "sandboxd-python/0.1"

# A call gets its answer within this: the daemon's longest is a terminate
# with wait (60 s), a long poll (asked for at most LONG_POLL_S) or a 64 MiB
# file.
CALL_TIMEOUT_S = 150.0
# Long polls (wait, ready, tunnels) ask the daemon for at most this and
# ask again: an idle connection is never held for minutes.
LONG_POLL_S = 50
# How long a client that has reached its daemon once waits for it to come
# back (a restart) before a call fails.
RECONNECT_TIMEOUT_S = 15.0
RETRY_DELAY_S = 0.1
CONNECT_TIMEOUT_S = 10.0
POOL_SIZE = 8

# What a broken connection raises (as opposed to an answer).
BROKEN = (http.client.HTTPException, OSError)
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE"}


class _Broken(Exception):
    """A connection broke before an answer came; ``sent``: whether the
    request had gone whole."""

    def __init__(self, error, sent):
        super().__init__(error)
        self.error = error
        self.sent = sent


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is a unix stream socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _parse_host(host):
    """``(unix_path, None, None)`` or ``(None, host, port)``."""
    if host.startswith(("tcp://", "http://")):
        hp = host.split("://", 1)[1]
        name, sep, port = hp.rpartition(":")
        if not sep or not name or not port.isdigit() or "/" in hp:
            raise _exc.InvalidError("host `%s`: expected tcp://HOST:PORT" % host)
        return None, name.strip("[]"), int(port)
    if host.startswith("unix://"):
        path = host[len("unix://"):]
    elif host.startswith("unix:"):
        path = host[len("unix:"):]
    else:
        path = host
    if not path or "://" in path:
        raise _exc.InvalidError(
            "host `%s`: not a unix socket path, unix:PATH or tcp://HOST:PORT" % host
        )
    return path, None, None


def _dropped(conn):
    """Whether an idle kept-alive connection was closed by the daemon: it
    would be readable (EOF) while no request is outstanding."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Client:
    """A connection to one sandboxd.

    Most code never makes one: every call uses :func:`default_client`, made
    from ``SANDBOXD_HOST`` and ``SANDBOXD_TOKEN``.  Pass ``client=`` to the
    constructors (``Sandbox.create(..., client=c)``) to talk to another
    daemon.
    """

    def __init__(self, host=None, token=None, *, reconnect_timeout=RECONNECT_TIMEOUT_S,
                 timeout=CALL_TIMEOUT_S):
        self.host = host or DEFAULT_HOST
        self.token = token or None
        self.reconnect_timeout = reconnect_timeout
        self.timeout = timeout
        self._unix_path, self._tcp_host, self._tcp_port = _parse_host(self.host)
        self._pool = []
        self._lock = threading.Lock()
        self._reached = False  # answered once: a later refusal is a restart
        self._info = None

    @classmethod
    def from_env(cls):
        """A client for ``SANDBOXD_HOST`` with ``SANDBOXD_TOKEN``."""
        return cls(os.environ.get("SANDBOXD_HOST") or None,
                   os.environ.get("SANDBOXD_TOKEN") or None)

    def __repr__(self):
        return "Client(%r)" % self.host

    # ---- connections ----

    def _new_connection(self):
        if self._unix_path is not None:
            return _UnixHTTPConnection(self._unix_path, CONNECT_TIMEOUT_S)
        return http.client.HTTPConnection(self._tcp_host, self._tcp_port,
                                          timeout=CONNECT_TIMEOUT_S)

    def _connect(self, timeout):
        """A connected connection (``timeout``: its sockets' timeout, None
        for none), waiting for a restarting daemon."""
        failing_since = None
        while True:
            conn = self._new_connection()
            try:
                conn.connect()
                if self._unix_path is None:
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                conn.sock.settimeout(timeout)
                return conn
            except OSError as e:
                conn.close()
                now = time.monotonic()
                failing_since = failing_since or now
                if not self._reached or now - failing_since > self.reconnect_timeout:
                    raise _exc.ConnectionError(
                        "cannot connect to sandboxd at %s: %s (is it running? SANDBOXD_HOST "
                        "names another)" % (self.host, e.strerror or e)
                    ) from None
                time.sleep(RETRY_DELAY_S)

    def _checkout(self, timeout):
        with self._lock:
            while self._pool:
                conn = self._pool.pop()
                if _dropped(conn):
                    conn.close()
                    continue
                conn.sock.settimeout(timeout)
                return conn, True
        return self._connect(timeout), False

    def _checkin(self, conn):
        with self._lock:
            if len(self._pool) < POOL_SIZE:
                self._pool.append(conn)
                return
        conn.close()

    def close(self):
        """Closes the pooled connections (streams close themselves)."""
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- requests ----

    def _url(self, path, query):
        if query:
            items = [(k, v) for k, v in query.items() if v is not None]
            if items:
                return path + "?" + urllib.parse.urlencode(items)
        return path

    def _headers(self, extra=None):
        h = {"User-Agent": USER_AGENT}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if extra:
            h.update(extra)
        return h

    def request(self, method, path, *, query=None, body=None, json=None, timeout=None,
                idempotent=None):
        """One call; returns ``(status, headers, body bytes)`` for any
        status, raising only when no answer came (:class:`ConnectionError`,
        :class:`TimeoutError`).

        A call broken off before its answer is made again on a fresh
        connection when it is safe to: always when the request could not
        be sent whole (the daemon acts only on whole requests), and when it
        was sent only for idempotent ones (``GET``, ``PUT``, ``DELETE``, or
        ``idempotent=True``).
        """
        timeout = self.timeout if timeout is None else timeout
        headers = {}
        if json is not None:
            body = _json.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        url = self._url(path, query)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        failing_since = None
        while True:
            conn, reused = self._checkout(timeout)
            try:
                resp, data = self._exchange(conn, method, url, body, headers)
            except socket.timeout:
                conn.close()
                raise _exc.TimeoutError(
                    "sandboxd at %s did not answer %s %s within %g s"
                    % (self.host, method, path, timeout)
                ) from None
            except _Broken as b:
                conn.close()
                # A pooled connection the daemon had just closed, or a
                # daemon restarting: again, when that cannot do anything
                # twice.
                if not b.sent or idempotent:
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if reused or now - failing_since <= self.reconnect_timeout:
                        if not reused:
                            time.sleep(RETRY_DELAY_S)
                        continue
                raise _exc.ConnectionError(
                    "lost the connection to sandboxd at %s during %s %s: %s"
                    % (self.host, method, path, b.error or type(b.error).__name__)
                ) from None
            self._reached = True
            if resp.will_close:
                conn.close()
            else:
                self._checkin(conn)
            return resp.status, resp.headers, data

    def _exchange(self, conn, method, url, body, headers):
        """Sends a request and reads its answer: ``(response, body)``, or
        raises _Broken (or socket.timeout)."""
        try:
            conn.request(method, url, body=body, headers=self._headers(headers))
        except socket.timeout:
            raise
        except BROKEN as e:
            # The daemon may have answered before it stopped reading (a
            # 413 for a body over its limit): that answer, if it is there.
            try:
                resp = conn.getresponse()
                return resp, resp.read()
            except Exception:
                raise _Broken(e, sent=False) from None
        try:
            resp = conn.getresponse()
            return resp, resp.read()
        except socket.timeout:
            raise
        except BROKEN as e:
            raise _Broken(e, sent=True) from None

    def call(self, method, path, *, query=None, body=None, json=None, timeout=None,
             idempotent=None, raw=False):
        """A call whose error answers raise (:mod:`sandboxd.exception`);
        returns the parsed JSON answer (``None`` for an empty one), or the
        bytes with ``raw=True``."""
        failing_since = None
        while True:
            status, headers, data = self.request(method, path, query=query, body=body,
                                                 json=json, timeout=timeout,
                                                 idempotent=idempotent)
            if status != 503:
                break
            # "unavailable": a sandbox's monitor not reachable yet (it is
            # starting, or the daemon has just restarted); nothing was done.
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > self.reconnect_timeout:
                break
            time.sleep(RETRY_DELAY_S)
        if status >= 400:
            raise _error_from(status, data)
        if raw:
            return data
        if not data:
            return None
        return _json.loads(data)

    def open_stream(self, path, *, query=None):
        """A streamed GET on a connection of its own: returns
        ``(connection, response)`` once the status is 200 (the caller reads
        and closes both); error answers raise."""
        conn = self._connect(None)
        try:
            conn.request("GET", self._url(path, query), headers=self._headers())
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        self._reached = True
        if resp.status != 200:
            try:
                data = resp.read()
            except BROKEN:
                data = b""
            conn.close()
            raise _error_from(resp.status, data)
        return conn, resp

    # ---- the daemon ----

    def health(self):
        """``GET /v1/health``: ``{"status": "ok"}``."""
        return self.call("GET", "/v1/health")

    def info(self):
        """``GET /v1/info``: version, cgroup mode, limits, counts, pool, tls."""
        self._info = self.call("GET", "/v1/info")
        return self._info

    def tls_certificate(self):
        """The PEM certificate ``tls`` tunnels (``encrypted_ports``) are
        served with, from ``GET /v1/info``: self-signed unless the daemon's
        config names one.  Trust it to verify them, e.g.
        ``ssl.create_default_context(cadata=client.tls_certificate())``
        (or ``Tunnel.ssl_context()``)."""
        info = self._info or self.info()
        return info.get("tls", {}).get("certificate") or ""

    def limits(self):
        """The daemon's limits (``max_body`` ...), fetched once."""
        info = self._info or self.info()
        return info.get("limits", {})


def _error_from(status, data):
    code, message = "", ""
    try:
        err = _json.loads(data).get("error", {})
        code, message = err.get("code", ""), err.get("message", "")
    except (ValueError, AttributeError):
        message = data.decode("utf-8", "replace").strip()
    return _exc.error_for(status, code, message)


_default_lock = threading.Lock()
_default = {}


def default_client():
    """The client every call uses unless given ``client=``: one per
    (``SANDBOXD_HOST``, ``SANDBOXD_TOKEN``) as they are when it is called."""
    key = (os.environ.get("SANDBOXD_HOST") or None, os.environ.get("SANDBOXD_TOKEN") or None)
    with _default_lock:
        c = _default.get(key)
        if c is None:
            c = _default[key] = Client(*key)
        return c


@atexit.register
def _close_default_clients():
    with _default_lock:
        clients = list(_default.values())
    for c in clients:
        c.close()


def resolve(client):
    """``client``, or the default one."""
    return client if client is not None else default_client()
