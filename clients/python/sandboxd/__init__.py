"""sandboxd: a Python client of sandboxd's REST API, shaped like Modal's
Sandbox API, so that moving off Modal is an import change::

    import sandboxd as modal

    app = modal.App.lookup("my-app", create_if_missing=True)
    sb = modal.Sandbox.create(app=app)
    p = sb.exec("python", "-c", "print('hello')", timeout=3)
    print(p.stdout.read())
    sb.terminate()

The daemon is found through ``SANDBOXD_HOST`` (a unix socket path,
``unix:PATH`` or ``tcp://HOST:PORT``; default
``/run/sandboxd/sandboxd.sock``) with ``SANDBOXD_TOKEN`` for TCP.  Every
blocking call has an asyncio twin: ``await modal.Sandbox.create.aio(...)``.
Where sandboxd's behaviour differs from Modal's, the docstring says so.
``docs/python.md`` maps each call to the REST API.
"""
from . import exception
from ._client import Client, default_client
from .app import App
from .container_process import ContainerProcess
from .exception import (
    AlreadyExistsError,
    Error,
    InvalidError,
    NotFoundError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    TimeoutError,
)
from .file_io import FileIO
from .image import Image, enable_output
from .io_streams import StreamReader, StreamType, StreamWriter
from .probe import Probe
from .sandbox import Sandbox, Tunnel
from .secret import Secret
from .volume import FileEntry, FileEntryType, Volume

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "App",
    "Client",
    "ContainerProcess",
    "Error",
    "FileEntry",
    "FileEntryType",
    "FileIO",
    "Image",
    "InvalidError",
    "NotFoundError",
    "Probe",
    "Sandbox",
    "SandboxTerminatedError",
    "SandboxTimeoutError",
    "Secret",
    "StreamReader",
    "StreamType",
    "StreamWriter",
    "TimeoutError",
    "Tunnel",
    "Volume",
    "default_client",
    "enable_output",
    "exception",
]
