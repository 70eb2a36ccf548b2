"""What needs no daemon: host parsing, the .aio descriptor, the error
mapping, recipes cut into requests, objects made without a call."""
import asyncio
import os
import time
import unittest

import support  # noqa: F401 (puts the package on sys.path)
import sandboxd as modal
from sandboxd import _client
from sandboxd import exception as exc
from sandboxd._aio import with_aio


class Hosts(unittest.TestCase):
    """How SANDBOXD_HOST is read (no daemon needed)."""

    def test_forms(self):
        self.assertEqual(_client._parse_host("/run/x.sock"), ("/run/x.sock", None, None))
        self.assertEqual(_client._parse_host("unix:/run/x.sock"), ("/run/x.sock", None, None))
        self.assertEqual(_client._parse_host("unix:///run/x.sock"), ("/run/x.sock", None, None))
        self.assertEqual(_client._parse_host("tcp://127.0.0.1:8080"), (None, "127.0.0.1", 8080))
        self.assertEqual(_client._parse_host("tcp://[::1]:8080"), (None, "::1", 8080))
        self.assertEqual(modal.Client().host, "/run/sandboxd/sandboxd.sock")
        for bad in ("tcp://nohost", "tcp://h:port", "tcp://h:1/path", "unix:", "ftp://x"):
            with self.assertRaises(modal.InvalidError, msg=bad):
                _client._parse_host(bad)

    def test_default_client_follows_the_environment(self):
        saved = {k: os.environ.get(k) for k in ("SANDBOXD_HOST", "SANDBOXD_TOKEN")}
        try:
            os.environ["SANDBOXD_HOST"] = "tcp://127.0.0.1:1"
            os.environ["SANDBOXD_TOKEN"] = "tok"
            c = modal.default_client()
            self.assertEqual((c.host, c.token), ("tcp://127.0.0.1:1", "tok"))
            self.assertIs(modal.default_client(), c)
            os.environ["SANDBOXD_HOST"] = "unix:/run/other.sock"
            self.assertEqual(modal.default_client().host, "unix:/run/other.sock")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class Descriptor(unittest.TestCase):
    """with_aio on its own (no daemon)."""

    class Thing:
        def __init__(self, n):
            self.n = n

        @with_aio
        def add(self, k):
            """Adds."""
            return self.n + k

        @with_aio
        @classmethod
        def make(cls, n):
            return cls(n)

        @with_aio
        @staticmethod
        def double(x):
            return 2 * x

        @with_aio
        def count(self, upto):
            for i in range(upto):
                yield self.n + i

    def test_sync_and_async(self):
        T = self.Thing
        t = T.make(10)
        self.assertEqual(t.add(1), 11)
        self.assertEqual(T.double(4), 8)
        self.assertEqual(list(t.count(3)), [10, 11, 12])
        self.assertEqual(t.add.__doc__, "Adds.")

        async def main():
            t2 = await T.make.aio(20)
            return (await t2.add.aio(2), await T.double.aio(5),
                    [i async for i in t2.count.aio(2)], await T.add.aio(t2, 3))

        self.assertEqual(asyncio.run(main()), (22, 10, [20, 21], 23))


class Unreachable(unittest.TestCase):
    """No daemon needed."""

    def test_no_daemon(self):
        c = modal.Client("/run/no-such-sandboxd.sock")
        start = time.monotonic()
        with self.assertRaises(modal.exception.ConnectionError) as cm:
            modal.Sandbox.create(client=c)
        self.assertIn("/run/no-such-sandboxd.sock", str(cm.exception))
        self.assertLess(time.monotonic() - start, 2)  # never reached: no waiting

    def test_error_for(self):
        from sandboxd.exception import error_for

        cases = [
            (400, "invalid_argument", exc.InvalidError),
            (401, "unauthenticated", exc.AuthError),
            (404, "not_found", exc.NotFoundError),
            (409, "already_exists", exc.AlreadyExistsError),
            (409, "failed_precondition", exc.FailedPreconditionError),
            (413, "too_large", exc.RequestSizeError),
            (429, "resource_exhausted", exc.ResourceExhaustedError),
            (500, "internal", exc.InternalError),
            (503, "unavailable", exc.ServiceUnavailableError),
            (504, "deadline_exceeded", exc.TimeoutError),
            (418, "teapot", exc.Error),
        ]
        for status, code, cls in cases:
            e = error_for(status, code, "m")
            self.assertIs(type(e), cls)
            self.assertEqual((e.status, e.code, str(e)), (status, code, "m"))
            self.assertIsInstance(e, exc.Error)
        self.assertTrue(issubclass(exc.SandboxTimeoutError, TimeoutError))


class Recipes(unittest.TestCase):
    def test_recipe_segments(self):
        # (No daemon needed: how a recipe is cut into POST /v1/images bodies.)
        img = (modal.Image.debian_slim().apt_install("a", ["b"]).dockerfile_commands("RUN x")
               .dockerfile_commands("RUN y").pip_install("p", extra_index_url="http://i/")
               .entrypoint(["e"]))
        self.assertEqual(img._requests(img._base), [
            {"steps": [{"apt_install": ["a", "b"]}], "dockerfile": ["RUN x", "RUN y"]},
            {"steps": [{"pip_install": ["p"], "extra_index_url": "http://i/"},
                       {"entrypoint": ["e"]}], "dockerfile": []},
        ])
        self.assertEqual(modal.Image.from_registry("h:5000/n:t")._requests({"registry": "x"}),
                         [{"steps": [], "dockerfile": []}])


    def test_probes_and_secrets(self):
        self.assertEqual(modal.Probe.with_tcp(8080).to_json(), {"tcp": 8080, "interval_ms": 100})
        self.assertEqual(modal.Probe.with_exec("sh", "-c", "x", interval_ms=250).to_json(),
                         {"exec": ["sh", "-c", "x"], "interval_ms": 250})
        from sandboxd.secret import split_secrets
        env, names = split_secrets([modal.Secret.from_dict({"A": "1", "B": None}),
                                    modal.Secret.from_name("s"),
                                    modal.Secret.from_dict({"A": "2"})])
        self.assertEqual((env, names), ({"A": "2"}, ["s"]))
        with self.assertRaises(TypeError):
            modal.Secret.from_dict({"A": 1})


if __name__ == "__main__":
    unittest.main()
