"""Images: the daemon's (``busybox``, ``debian-slim``, ids) and recipes
built on them, as Modal's ``Image.debian_slim().apt_install(...)``.

A recipe is lazy: nothing is asked of the daemon until a sandbox is
created with it (or ``build()`` / ``object_id`` is used).  Then it is
``POST /v1/images {"base", "steps", "dockerfile"}``, answered at once with
an id (a hash of the recipe: the same recipe is built once, later requests
find it ready); while it builds, ``GET /v1/images/ID/logs?follow=1`` is
followed (and printed inside :func:`sandboxd.enable_output`), then
``GET /v1/images/ID`` says whether it is ready or failed; a failed build
raises :class:`~sandboxd.exception.ImageBuildError` with the daemon's error
and the end of the build log.

Steps that follow ``dockerfile_commands`` are built on the image those
commands made (one request carries steps first, then a Dockerfile).
"""
import contextlib
import contextvars
import sys
import time
import urllib.parse

from . import exception as _exc
from ._aio import with_aio
from ._client import BROKEN, resolve

__all__ = ["Image", "enable_output"]

_output = contextvars.ContextVar("sandboxd_output", default=False)


@contextlib.contextmanager
def enable_output(show_progress=True):
    """Inside it, image builds print their logs to stdout as they run (as
    Modal's ``modal.enable_output()`` does)."""
    token = _output.set(True)
    try:
        yield
    finally:
        _output.reset(token)


def _flatten(args):
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.extend(_flatten(a))
        elif a is not None:
            out.append(str(a))
    return out


def _unsupported(what, value):
    if value:
        raise _exc.InvalidError("%s is not supported by sandboxd's images" % what)


class Image:
    """An image: a daemon image's name or id, or a recipe on one.  Each
    method returns a new Image; the original is unchanged."""

    def __init__(self, base, ops=(), *, _image_id=None):
        self._base = base  # a name or id, {"registry": REF}, or None (the Dockerfile's FROM)
        self._ops = tuple(ops)  # ("step", {...}) and ("dockerfile", "...")
        self._image_id = _image_id
        self._client = None

    def __repr__(self):
        if self._image_id:
            return "Image(%r)" % self._image_id
        return "Image(%r + %d steps)" % (self._base, len(self._ops))

    # ---- bases ----

    @staticmethod
    def debian_slim(python_version=None, force_build=False):
        """The daemon's ``debian-slim`` (Debian 12 with python3 and pip).

        Its Python is Debian's (3.11); another ``python_version`` is
        refused, where Modal would install it."""
        if python_version and not str(python_version).startswith("3.11"):
            raise _exc.InvalidError(
                "debian_slim(python_version=%r): sandboxd's debian-slim has Debian 12's Python "
                "3.11" % (python_version,))
        return Image("debian-slim")

    @staticmethod
    def busybox():
        """The daemon's ``busybox`` image (not in Modal)."""
        return Image("busybox")

    @staticmethod
    def from_name(name, *, environment_name=None):
        """An image the daemon has by that name (``busybox``,
        ``debian-slim``) or id."""
        return Image(name, _image_id=name)

    @staticmethod
    def from_id(image_id):
        """An image the daemon has (``im-...``, e.g. from a snapshot)."""
        return Image(image_id, _image_id=image_id)

    @staticmethod
    def from_registry(tag, *, secret=None, setup_dockerfile_commands=(), add_python=None,
                      force_build=False, **kwargs):
        """An image pulled from a registry: ``tag`` must name the registry
        host (``HOST[:PORT]/NAME[:TAG]``), since a bare ``python:3.13-slim``
        means Docker Hub, which a sandboxd host need not reach.
        ``add_python`` and registry credentials are not supported."""
        _unsupported("from_registry(add_python=)", add_python)
        _unsupported("from_registry(secret=)", secret)
        img = Image({"registry": tag})
        if setup_dockerfile_commands:
            img = img.dockerfile_commands(*setup_dockerfile_commands)
        return img

    @staticmethod
    def from_dockerfile(path, **kwargs):
        """A Dockerfile's instructions (``FROM`` a daemon image or a
        registry reference; RUN, ENV, WORKDIR, USER, ENTRYPOINT, CMD).
        ``COPY``/``ADD`` need host paths the daemon's config allows."""
        with open(path) as f:
            return Image(None, [("dockerfile", f.read())])

    # ---- steps ----

    def _with(self, kind, value):
        return Image(self._base, self._ops + ((kind, value),))

    def apt_install(self, *packages, force_build=False, secrets=(), gpu=None):
        """``apt-get install`` of Debian packages (from Debian's mirror)."""
        _unsupported("apt_install(secrets=)", secrets)
        pkgs = _flatten(packages)
        return self._with("step", {"apt_install": pkgs}) if pkgs else self

    def pip_install(self, *packages, index_url=None, extra_index_url=None, find_links=None,
                    pre=False, extra_options="", force_build=False, secrets=(), gpu=None):
        """``pip install`` of packages, from ``index_url`` (PyPI unless
        given) and ``extra_index_url``.  ``find_links``, ``pre`` and
        ``extra_options`` are not supported."""
        _unsupported("pip_install(find_links=)", find_links)
        _unsupported("pip_install(pre=)", pre)
        _unsupported("pip_install(extra_options=)", extra_options)
        _unsupported("pip_install(secrets=)", secrets)
        pkgs = _flatten(packages)
        if not pkgs:
            return self
        step = {"pip_install": pkgs}
        if index_url:
            step["index_url"] = index_url
        if extra_index_url:
            step["extra_index_url"] = extra_index_url
        return self._with("step", step)

    def run_commands(self, *commands, secrets=(), gpu=None, force_build=False):
        """Shell commands, each a step (``sh -c``)."""
        _unsupported("run_commands(secrets=)", secrets)
        img = self
        for c in _flatten(commands):
            img = img._with("step", {"run": c})
        return img

    def env(self, vars):
        """Environment variables of the image."""
        if not vars:
            return self
        return self._with("step", {"env": {str(k): str(v) for k, v in vars.items()}})

    def workdir(self, path):
        """The working directory of the image (and of its sandboxes)."""
        return self._with("step", {"workdir": str(path)})

    def entrypoint(self, entrypoint_commands):
        """The image's entrypoint (an argv)."""
        return self._with("step", {"entrypoint": _flatten([entrypoint_commands])})

    def cmd(self, cmd):
        """The image's default command (an argv)."""
        return self._with("step", {"cmd": _flatten([cmd])})

    def dockerfile_commands(self, *dockerfile_commands, context_files=None, secrets=(),
                            gpu=None, force_build=False, **kwargs):
        """Dockerfile instructions (strings, or lists of them), parsed by
        the daemon.  ``context_files`` are not supported."""
        _unsupported("dockerfile_commands(context_files=)", context_files)
        _unsupported("dockerfile_commands(secrets=)", secrets)
        text = "\n".join(_flatten(dockerfile_commands))
        return self._with("dockerfile", text) if text.strip() else self

    # ---- building ----

    def _requests(self, base):
        """The POST /v1/images bodies, in order: a segment's steps come
        before its Dockerfile, so a step after a Dockerfile starts a new
        segment (on the image the one before made)."""
        segs = []
        for kind, value in self._ops:
            if not segs or (kind == "step" and segs[-1]["dockerfile"]):
                segs.append({"steps": [], "dockerfile": []})
            if kind == "step":
                segs[-1]["steps"].append(value)
            else:
                segs[-1]["dockerfile"].append(value)
        if not segs and isinstance(base, dict):
            segs.append({"steps": [], "dockerfile": []})
        return segs

    @with_aio
    def build(self, app=None, *, client=None):
        """Builds the recipe now (once: the daemon keeps built recipes);
        returns the image."""
        self._build(resolve(client))
        return self

    def _build(self, client):
        if self._image_id is not None:
            return self._image_id
        ref = self._base
        for seg in self._requests(ref):
            body = {"steps": seg["steps"]}
            if ref is not None:
                body["base"] = ref
            if seg["dockerfile"]:
                text = "\n".join(seg["dockerfile"])
                if ref is not None and not _has_from(text):
                    # The daemon's parser wants a FROM first even when the
                    # request has a base: name the same one.
                    text = "FROM %s\n%s" % (ref["registry"] if isinstance(ref, dict) else ref,
                                             text)
                body["dockerfile"] = text
            r = client.call("POST", "/v1/images", json=body)
            ref = r["image_id"]
            if r.get("state") != "ready":
                _wait_built(client, ref)
        self._image_id = ref
        self._client = client
        return ref

    @property
    def object_id(self):
        """The image's id on the daemon (a recipe is built first)."""
        return self._build(resolve(self._client))

    image_id = object_id


def _has_from(dockerfile):
    for line in dockerfile.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split(None, 1)[0].upper() == "FROM"
    return False


def _wait_built(client, image_id):
    """Follows the build's log (printed within enable_output) until it
    ends; raises ImageBuildError when the build failed."""
    path = "/v1/images/" + urllib.parse.quote(image_id, safe="")
    shown = 0
    printing = _output.get()
    while True:
        try:
            conn, resp = client.open_stream(path + "/logs", query={"follow": 1})
            try:
                seen = 0
                while True:
                    data = resp.read1(65536)
                    if not data:
                        break
                    # A log followed again starts from its beginning: print
                    # only what was not printed yet.
                    if printing and seen + len(data) > shown:
                        sys.stdout.write(data[max(0, shown - seen):].decode("utf-8", "replace"))
                        sys.stdout.flush()
                        shown = seen + len(data)
                    seen += len(data)
            finally:
                conn.close()
        except BROKEN:
            time.sleep(0.2)  # the connection broke: the state says what next
        view = client.call("GET", path)
        state = view.get("state")
        if state == "ready":
            return
        if state == "failed":
            tail = view.get("log_tail") or ""
            raise _exc.ImageBuildError(
                "image %s failed to build: %s%s" % (
                    image_id, view.get("error") or "no reason given",
                    ("\n--- the end of its build log ---\n" + tail.rstrip("\n")) if tail else ""),
                image_id=image_id, log_tail=tail)
        time.sleep(0.2)


def image_ref(image, client):
    """The create's ``image`` field for ``image``."""
    if image is None:
        return None
    if isinstance(image, Image):
        return image._build(client)
    return str(image)
