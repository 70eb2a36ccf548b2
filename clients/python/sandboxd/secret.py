"""Secrets: environment variables for sandboxes and execs."""
import urllib.parse

from ._aio import with_aio
from ._client import resolve
from .exception import AlreadyExistsError, NotFoundError

__all__ = ["Secret"]


class Secret:
    """Environment variables to give a sandbox or an exec.

    ``Secret.from_dict({...})`` is sent inline, as the request's ``env``:
    the values travel with each create or exec and are stored with the
    sandbox's spec, but no sandboxd call returns them (Modal instead makes
    an ephemeral secret object on its servers).  ``Secret.from_name(name)``
    names a secret stored on the daemon (``PUT /v1/secrets/NAME``, e.g.
    ``sbx secret set`` or :meth:`create_deployed`), sent as the request's
    ``secrets`` list; a missing one fails the create or exec with
    :class:`~sandboxd.exception.NotFoundError`.  Later secrets override
    earlier ones; the request's own ``env`` overrides them all.
    """

    def __init__(self, *, name=None, env=None):
        self.name = name
        self.env = dict(env) if env else {}

    def __repr__(self):
        if self.name:
            return "Secret.from_name(%r)" % self.name
        return "Secret.from_dict(<%d variables>)" % len(self.env)

    @staticmethod
    def from_dict(env_dict=None):
        """Variables given here, sent inline (``None`` values are left out,
        as Modal does)."""
        env = {}
        for k, v in (env_dict or {}).items():
            if v is None:
                continue
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("Secret.from_dict takes a dict of str to str")
            env[k] = v
        return Secret(env=env)

    @staticmethod
    def from_name(name, *, environment_name=None, required_keys=()):
        """The daemon's secret called ``name``.  ``required_keys`` cannot be
        checked here (the daemon never returns a secret's variables) and is
        ignored, as is ``environment_name``."""
        return Secret(name=name)

    @with_aio
    @staticmethod
    def create_deployed(deployment_name, env_dict, *, overwrite=False, client=None):
        """Stores a named secret on the daemon (``PUT /v1/secrets/NAME``);
        an existing one is replaced only with ``overwrite=True``, else
        :class:`~sandboxd.exception.AlreadyExistsError`."""
        client = resolve(client)
        path = "/v1/secrets/" + urllib.parse.quote(deployment_name, safe="")
        if not overwrite:
            try:
                client.call("GET", path)
            except NotFoundError:
                pass
            else:
                raise AlreadyExistsError("secret `%s` exists" % deployment_name, status=409,
                                         code="already_exists")
        client.call("PUT", path, json={"env": dict(env_dict)})
        return Secret(name=deployment_name)

    @with_aio
    @staticmethod
    def delete(name, *, client=None):
        """Deletes a named secret (``DELETE /v1/secrets/NAME``)."""
        resolve(client).call("DELETE", "/v1/secrets/" + urllib.parse.quote(name, safe=""))


def split_secrets(secrets):
    """``(env, names)`` for a request: inline variables merged in order,
    and the names of stored secrets."""
    env, names = {}, []
    for s in secrets or ():
        if isinstance(s, dict):
            s = Secret.from_dict(s)
        if not isinstance(s, Secret):
            raise TypeError("secrets must be Secret objects, not %s" % type(s).__name__)
        if s.name:
            names.append(s.name)
        env.update(s.env)
    return env, names


def env_fields(secrets, env=None):
    """A create's or exec's ``env`` and ``secrets`` fields: the inline
    secrets' variables, then ``env``'s, and the stored secrets' names."""
    inline, names = split_secrets(secrets)
    inline.update({k: v for k, v in (env or {}).items() if v is not None})
    fields = {}
    if inline:
        fields["env"] = inline
    if names:
        fields["secrets"] = names
    return fields
