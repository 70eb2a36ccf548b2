"""``.aio``: the asyncio twin of every blocking call, written once.

Modal's objects expose each call twice: ``Sandbox.create(...)`` blocks,
``await Sandbox.create.aio(...)`` does not.  Here every such call is a
plain blocking method wrapped in :func:`with_aio`, a descriptor whose bound
form is callable as before and has an ``aio`` attribute that runs the same
call in a worker thread (``asyncio.to_thread``).  A call that returns an
iterator (``Sandbox.list``) gets an ``aio`` that is an async iterator,
each item fetched in a worker thread.
"""
import asyncio
import functools
import inspect

__all__ = ["with_aio", "aiter_in_thread"]

_DONE = object()


async def aiter_in_thread(iterator):
    """Iterates a blocking iterator from asyncio, one ``next`` per thread hop."""
    it = iter(iterator)
    try:
        while True:
            item = await asyncio.to_thread(next, it, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class _BoundCall:
    """A method (or class/static method) bound for a call, plus ``.aio``."""

    def __init__(self, fn, iterates):
        self._fn = fn
        self._iterates = iterates
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def aio(self, *args, **kwargs):
        """The same call without blocking the event loop: a coroutine, or an
        async iterator for calls that return an iterator."""
        if self._iterates:
            return _aiter_call(self._fn, args, kwargs)
        return asyncio.to_thread(self._fn, *args, **kwargs)

    def __repr__(self):
        return "<%s with .aio>" % (getattr(self._fn, "__qualname__", None) or repr(self._fn))


async def _aiter_call(fn, args, kwargs):
    it = await asyncio.to_thread(fn, *args, **kwargs)
    async for item in aiter_in_thread(it):
        yield item


class with_aio:
    """Decorates a method, classmethod or staticmethod so that it also has
    ``.aio``.  Put it outermost: ``@with_aio`` above ``@classmethod``."""

    def __init__(self, fn):
        self._fn = fn
        inner = getattr(fn, "__func__", fn)
        self._iterates = inspect.isgeneratorfunction(inner)
        functools.update_wrapper(self, inner)

    def __get__(self, obj, objtype=None):
        return _BoundCall(self._fn.__get__(obj, objtype), self._iterates)
