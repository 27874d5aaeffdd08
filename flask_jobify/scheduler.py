"""One background thread per app and process for everything that happens
at a time rather than on a request: job deadlines, delayed retries, lease
heartbeats, and sweeps of expired jobs and lost leases."""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import typing as t
import weakref

from .perprocess import PerProcess

logger = logging.getLogger("flask_jobify")

Key = t.Hashable


class Scheduler:
    """Runs functions at a time: :meth:`call_at` runs a function once at a given
    time, :meth:`every` runs one periodically. Each scheduled call has a
    key; scheduling a key again replaces its call, :meth:`discard` drops it.

    Thread-safe: any thread may schedule or discard. Calls run one after
    the other on the scheduler's daemon thread, which starts on first use and
    again in a forked child (gunicorn ``--preload``, a Celery prefork
    pool), which inherits no threads. Its lock is made in the process
    that uses it, after a fork or gevent's patching. A call that raises is logged and the
    scheduler goes on.

    The thread holds the scheduler weakly, and nothing else between two
    calls: a scheduler nobody holds any more (its app was dropped without a
    shutdown) is collected with the calls it holds, and its thread ends.
    """

    def __init__(self) -> None:
        self._wake_of: PerProcess[threading.Condition] = PerProcess(lambda: threading.Condition())
        self._heap: list[tuple[float, int, Key]] = []
        self._order = itertools.count()
        # key -> (when, seq, func, interval); heap entries with another seq are stale.
        self._calls: dict[Key, tuple[float, int, t.Callable[[], object], float | None]] = {}
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stopped = False
        # Wakes the thread when the scheduler is collected, so that it ends.
        weakref.finalize(self, _wake_up, self._wake_of).atexit = False

    @property
    def _wake(self) -> threading.Condition:
        """Wakes the thread; made in each process that uses it (see
        :mod:`flask_jobify.perprocess`)."""
        return self._wake_of.get()

    @property
    def _lock(self) -> threading.Condition:
        return self._wake  # a condition is its own lock

    def call_at(self, key: Key, when: float, func: t.Callable[[], object]) -> None:
        """Call ``func()`` once at ``when`` (``time.monotonic()``)."""
        self._schedule(key, when, func, None)

    def every(self, key: Key, interval: float, func: t.Callable[[], object]) -> None:
        """Call ``func()`` every ``interval`` seconds, the first time one
        interval from now."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self._schedule(key, time.monotonic() + interval, func, interval)

    def discard(self, key: Key) -> None:
        """Forget the call scheduled under ``key``, if any."""
        with self._lock:
            self._calls.pop(key, None)
            if len(self._heap) > 64 and len(self._heap) > 2 * len(self._calls):
                self._heap = [(w, seq, k) for k, (w, seq, _, _) in self._calls.items()]
                heapq.heapify(self._heap)

    def start(self) -> None:
        """Make sure the thread runs (cheap when it does)."""
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            self._ensure_thread()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify()

    def _schedule(
        self, key: Key, when: float, func: t.Callable[[], object], interval: float | None
    ) -> None:
        with self._lock:
            seq = next(self._order)
            self._calls[key] = (when, seq, func, interval)
            heapq.heappush(self._heap, (when, seq, key))
            self._ensure_thread()
            self._wake.notify()

    def _ensure_thread(self) -> None:
        if self._stopped:
            return
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=_run, args=(weakref.ref(self), self._wake),
                                        name="jobify-scheduler", daemon=True)
        self._thread.start()

    def _next(self) -> tuple[t.Callable[[], object] | None, float | None]:
        """The call that is due, or none and how long to sleep (``None``:
        until woken). ``(None, -1.0)`` once stopped. Called with the lock held."""
        if self._stopped:
            return None, -1.0
        due = self._pop_due(time.monotonic())
        if due is not None:
            return due, 0.0
        wake_at = self._heap[0][0] if self._heap else None
        return None, None if wake_at is None else max(0.0, wake_at - time.monotonic())

    def _pop_due(self, now: float) -> t.Callable[[], object] | None:
        """Take the next call that is due off the heap (re-arming periodic
        ones), or return ``None`` if none is. Called with the lock held."""
        while self._heap and self._heap[0][0] <= now:
            _, seq, key = heapq.heappop(self._heap)
            call = self._calls.get(key)
            if call is None or call[1] != seq:
                continue  # replaced or discarded
            _, _, func, interval = call
            if interval is None:
                del self._calls[key]
            else:
                again = (now + interval, next(self._order))
                self._calls[key] = (*again, func, interval)
                heapq.heappush(self._heap, (*again, key))
            return func
        return None


def _run(ref: weakref.ref[Scheduler], wake: threading.Condition) -> None:
    """The scheduler's thread: runs its calls as they fall due, until it is
    stopped or collected. Holds it only while it looks at it or runs a call."""
    while True:
        with wake:
            scheduler = ref()
            if scheduler is None:
                return
            due, sleep = scheduler._next()
            del scheduler  # never held while sleeping
            if due is None:
                if sleep is not None and sleep < 0:
                    return  # stopped
                wake.wait(sleep)
                continue
        try:
            due()
        except Exception:  # the scheduler must outlive any one failure
            logger.exception("A Flask-Jobify scheduled call failed")
        finally:
            del due  # a call may hold its app


def _wake_up(wake_of: PerProcess[threading.Condition]) -> None:
    """Wake this process's scheduler thread (its scheduler was collected)."""
    wake = wake_of.made()
    if wake is not None:
        with wake:
            wake.notify_all()


__all__ = [
    "Key", "Scheduler",
]
