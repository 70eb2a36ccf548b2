"""Readiness probes (``Sandbox.create(readiness_probe=...)``)."""

__all__ = ["Probe"]


class Probe:
    """A check the daemon runs in a sandbox until it passes, every
    ``interval_ms`` (default 100, 10..60000); ``Sandbox.wait_until_ready()``
    waits for it.  Sent as the create's ``readiness_probe``."""

    def __init__(self, spec):
        self._spec = spec

    def __repr__(self):
        return "Probe(%r)" % (self._spec,)

    @staticmethod
    def with_tcp(port, *, interval_ms=100):
        """Passes once the sandbox's ``port`` accepts a TCP connection."""
        return Probe({"tcp": int(port), "interval_ms": int(interval_ms)})

    @staticmethod
    def with_exec(*argv, interval_ms=100):
        """Passes once ``argv`` run in the sandbox exits with 0."""
        if len(argv) == 1 and isinstance(argv[0], (list, tuple)):
            argv = tuple(argv[0])
        if not argv:
            raise TypeError("Probe.with_exec needs a command")
        return Probe({"exec": [str(a) for a in argv], "interval_ms": int(interval_ms)})

    def to_json(self):
        """The ``readiness_probe`` field."""
        return dict(self._spec)
