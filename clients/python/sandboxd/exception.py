"""The errors sandboxd's client raises, named as Modal names them.

Every error of the daemon's REST API (``{"error": {"code", "message"}}``)
becomes one of these, chosen by its HTTP status and code:

=====  ========================  ==========================================
 400   ``invalid_argument``      :class:`InvalidError`
 401   ``unauthenticated``       :class:`AuthError`
 404   ``not_found``             :class:`NotFoundError`
 409   ``already_exists``        :class:`AlreadyExistsError`
 409   ``failed_precondition``   :class:`FailedPreconditionError`
 413   ``too_large``             :class:`RequestSizeError`
 429   ``resource_exhausted``    :class:`ResourceExhaustedError`
 500   ``internal``              :class:`InternalError`
 503   ``unavailable``           :class:`ServiceUnavailableError`
 504   ``deadline_exceeded``     :class:`TimeoutError`
=====  ========================  ==========================================

A daemon that cannot be reached (or that went away for longer than the
client waits for it to come back) raises :class:`ConnectionError`.

Unlike Modal's, :class:`TimeoutError` is also Python's built-in
``TimeoutError``, so ``except TimeoutError:`` catches it whether or not the
name was imported from here.
"""
import builtins

__all__ = [
    "Error",
    "InvalidError",
    "AuthError",
    "NotFoundError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "RequestSizeError",
    "ResourceExhaustedError",
    "InternalError",
    "ServiceUnavailableError",
    "ConnectionError",
    "TimeoutError",
    "SandboxTimeoutError",
    "SandboxTerminatedError",
    "RemoteError",
    "ImageBuildError",
    "ClientClosed",
]


class Error(Exception):
    """Base of every error this package raises.

    ``status`` is the HTTP status (0 when none came), ``code`` the daemon's
    error code (``"not_found"``, ...; empty when none came).
    """

    def __init__(self, message="", status=0, code=""):
        super().__init__(message)
        self.status = status
        self.code = code


class InvalidError(Error):
    """The request was refused as invalid (400); the message names the field."""


class AuthError(Error):
    """TCP without a valid bearer token (401): set ``SANDBOXD_TOKEN``."""


class NotFoundError(Error):
    """No such sandbox, process, app, image, volume, secret or file (404)."""


class AlreadyExistsError(Error):
    """A name already taken, e.g. by a running sandbox of the same app (409)."""


class FailedPreconditionError(Error):
    """The object is not in a state that allows the call (409): e.g. an exec
    into a finished sandbox, a GPU on a host without one, ``stdin`` of a
    process whose stdin is closed, an image still building."""


class RequestSizeError(Error):
    """A body or a file over the daemon's limit, or a full disk (413)."""


class ResourceExhaustedError(Error):
    """Too many sandboxes, processes or queued stdin bytes (429)."""


class InternalError(Error):
    """The daemon failed (500)."""


class ServiceUnavailableError(Error):
    """A sandbox's monitor could not be reached (503)."""


class ConnectionError(Error):
    """The daemon could not be reached, or the connection broke and did not
    come back in time."""


class TimeoutError(Error, builtins.TimeoutError):
    """A deadline passed (504, or a client-side wait): e.g.
    :meth:`Sandbox.wait_until_ready`."""


class SandboxTimeoutError(TimeoutError):
    """The sandbox ran past its ``timeout`` or ``idle_timeout``, or its
    tunnels did not open in time."""


class SandboxTerminatedError(Error):
    """The sandbox was terminated (:meth:`Sandbox.wait` with
    ``raise_on_termination=True``)."""


class RemoteError(Error):
    """Something failed on the daemon's side that is not a refused request."""


class ImageBuildError(RemoteError):
    """An image recipe failed to build.  ``image_id`` is the failed image,
    ``log_tail`` the end of its build log; both are in the message too."""

    def __init__(self, message, image_id="", log_tail=""):
        super().__init__(message)
        self.image_id = image_id
        self.log_tail = log_tail


class ClientClosed(Error):
    """The object was detached (:meth:`Sandbox.detach`) and cannot be used."""


_BY_CODE = {
    "invalid_argument": InvalidError,
    "unauthenticated": AuthError,
    "not_found": NotFoundError,
    "already_exists": AlreadyExistsError,
    "failed_precondition": FailedPreconditionError,
    "too_large": RequestSizeError,
    "resource_exhausted": ResourceExhaustedError,
    "internal": InternalError,
    "unavailable": ServiceUnavailableError,
    "deadline_exceeded": TimeoutError,
}

_BY_STATUS = {
    400: InvalidError,
    401: AuthError,
    404: NotFoundError,
    405: InvalidError,
    409: FailedPreconditionError,
    413: RequestSizeError,
    429: ResourceExhaustedError,
    500: InternalError,
    503: ServiceUnavailableError,
    504: TimeoutError,
}


def error_for(status, code, message):
    """The exception for an error answer of the daemon."""
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or Error
    return cls(message or code or "HTTP %d" % status, status=status, code=code)
