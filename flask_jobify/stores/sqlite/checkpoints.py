"""Checkpoints of an SQLite store's write-ahead log, off the writers' path.

SQLite's own automatic checkpoint runs in the connection whose commit
pushed the WAL past 1,000 pages: that request then copies about 4 MB into
the file and waits for two ``fsync`` (measured: a job's three writes took
0.3 ms at the median and 120 ms at the 99th percentile on a shared disk).
A store's connections turn it off (``PRAGMA wal_autocheckpoint = 0``) and
each process runs a :class:`Checkpointer` instead: a thread that, some
time after a commit, copies the WAL into the file with a ``PASSIVE``
checkpoint, which never holds the write lock nor waits for readers.

Thread-safe; a forked child starts its own (the parent's thread does not
exist there).
"""
from __future__ import annotations

import threading
import time
import typing as t
import weakref

#: Seconds between a commit and the checkpoint that follows it: the writes
#: of that time go into the file together.
CHECKPOINT_DELAY = 0.2
#: Seconds the thread waits for a commit before it ends (the next commit
#: starts it again).
CHECKPOINT_IDLE = 2.0


class Checkpointer:
    """One process's checkpointing thread for one store file.

    :meth:`committed` (after each commit) wakes the thread, starting it if
    needed; the thread then waits :data:`CHECKPOINT_DELAY` and runs
    ``checkpoint()`` of the store it was given. It holds the store weakly,
    and ends after :data:`CHECKPOINT_IDLE` seconds without commits, when
    the store is closed or collected, or when ``checkpoint`` raises.

    :param owner: the store; ``checkpoint(owner)`` is called from the thread.
    :param checkpoint: runs one passive checkpoint; returns nothing, may raise
        (the thread then ends; the next commit starts a new one).
    :param name: the thread's name.
    """

    def __init__(self, owner: object, checkpoint: t.Callable[[t.Any], None], name: str) -> None:
        self._owner = weakref.ref(owner)
        self._checkpoint = checkpoint
        self._name = name
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed = False

    def committed(self) -> None:
        """Tell of a commit: a checkpoint follows within :data:`CHECKPOINT_DELAY`."""
        if self._due.is_set() and self._thread is not None:
            return  # the fast path: a checkpoint is due already
        with self._lock:
            self._due.set()
            if self._thread is None and not self.closed:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def close(self) -> None:
        """End the thread (it may run the checkpoint it was in)."""
        with self._lock:
            self.closed = True
            self._due.set()

    def _run(self) -> None:
        try:
            while True:
                woken = self._due.wait(CHECKPOINT_IDLE)
                with self._lock:
                    if not woken or self.closed:
                        return
                    self._due.clear()
                time.sleep(CHECKPOINT_DELAY)
                owner = self._owner()
                if owner is None:
                    return
                self._checkpoint(owner)
                del owner
        finally:
            with self._lock:
                self._thread = None
                if self._due.is_set() and not self.closed:  # a commit came as it ended
                    self._thread = threading.Thread(target=self._run, name=self._name,
                                                    daemon=True)
                    self._thread.start()


__all__ = ["CHECKPOINT_DELAY", "CHECKPOINT_IDLE", "Checkpointer"]
