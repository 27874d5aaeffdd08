"""Values made afresh in each process, at their first use there.

Locks, conditions, events and queues made before a fork, or before gevent
or eventlet patched :mod:`threading`, block the process that uses them:
gunicorn ``--preload`` builds the app in the master, unpatched, and its
``gevent`` workers patch after the fork, so a lock made at ``init_app``
would hold a greenlet's whole worker (the first request never answered).
Each synchronisation primitive of the extension is therefore a
:class:`PerProcess` value, made in the process that uses it, after the
fork and after the patching.
"""
from __future__ import annotations

import os
import typing as t

T = t.TypeVar("T")


class PerProcess(t.Generic[T]):
    """``factory()``, called once per process at the first :meth:`get`
    there. Thread-safe: threads racing at the first use get one value (a
    ``dict.setdefault``, atomic). A child's value never replaces its
    parent's: the parent's stays referenced, unused, in the child.

    :param factory: makes the value; called without arguments. Look the
        class up when it is called (``lambda: threading.Lock()``), not
        when the :class:`PerProcess` is made: ``threading.Lock`` taken
        before gevent patched it stays the unpatched lock.
    """

    __slots__ = ("_factory", "_made")

    def __init__(self, factory: t.Callable[[], T]) -> None:
        self._factory = factory
        self._made: dict[int, T] = {}

    def get(self) -> T:
        """The value of the calling process, made now if it has none."""
        pid = os.getpid()
        made = self._made.get(pid)
        if made is None:
            made = self._made.setdefault(pid, self._factory())
        return made

    def made(self) -> T | None:
        """The value of the calling process, or ``None`` if it made none."""
        return self._made.get(os.getpid())


__all__ = [
    "PerProcess",
]
