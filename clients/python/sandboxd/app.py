"""Apps: named groups of sandboxes (``/v1/apps``)."""
import urllib.parse

from ._aio import with_aio
from ._client import resolve

__all__ = ["App"]


def _q(s):
    return urllib.parse.quote(s, safe="")


class App:
    """An app: sandboxes belong to one (``"default"`` when none is given).

    ``App.lookup(name, create_if_missing=True)`` is how sandboxes get one,
    as with Modal.  ``App(name)`` names one without a call; the daemon makes
    it when a sandbox is first created in it (Modal would need it deployed
    or running).
    """

    def __init__(self, name=None, *, client=None):
        self.name = name or "default"
        self._client = client
        self._app_id = None

    def __repr__(self):
        return "App(%r)" % self.name

    @with_aio
    @staticmethod
    def lookup(name, *, create_if_missing=False, environment_name=None, client=None):
        """The app called ``name`` (``GET /v1/apps/NAME``), made when missing
        with ``create_if_missing=True`` (``PUT /v1/apps/NAME``); otherwise a
        missing one raises :class:`~sandboxd.exception.NotFoundError`.
        ``environment_name`` is accepted for Modal's sake and ignored."""
        client = resolve(client)
        method = "PUT" if create_if_missing else "GET"
        r = client.call(method, "/v1/apps/" + _q(name))
        app = App(r["name"], client=client)
        app._app_id = r["app_id"]
        return app

    @property
    def app_id(self):
        """The app's id (``ap-...``); made on the daemon if it is not there."""
        if self._app_id is None:
            r = resolve(self._client).call("PUT", "/v1/apps/" + _q(self.name))
            self._app_id = r["app_id"]
        return self._app_id

    object_id = app_id


def app_name(app, client):
    """The daemon's app name for ``app``: an App, a name, an app id, or None."""
    if app is None:
        return None
    if isinstance(app, App):
        return app.name
    if isinstance(app, str) and app.startswith("ap-"):
        for a in client.call("GET", "/v1/apps").get("apps", []):
            if a.get("app_id") == app:
                return a["name"]
        from .exception import NotFoundError

        raise NotFoundError("no app with id `%s`" % app, status=404, code="not_found")
    return str(app)
