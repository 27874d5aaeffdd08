"""A bounded pool of daemon threads per process, under the thread executor
(:class:`~flask_jobify.thread_executor.ThreadExecutor`).

Why not :class:`concurrent.futures.ThreadPoolExecutor`: at interpreter exit
it runs *every queued item* to completion before ``atexit`` handlers run, so
a gunicorn worker told to stop would hang until its whole backlog is done,
and nothing could mark the jobs it gives up on. This pool uses daemon
threads and an explicit :meth:`ThreadPool.shutdown` with a grace period
instead.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import typing as t
import weakref

from .perprocess import PerProcess

__all__ = ["Task", "ThreadPool"]

logger = logging.getLogger("flask_jobify")

Task = t.Callable[[], None]


class ThreadPool:
    """A fixed number of daemon threads pulling tasks from a bounded queue.

    Thread-safe: :meth:`submit` and :meth:`shutdown` may be called from any
    thread. Per process: threads are started lazily on the first
    :meth:`submit` and started again in a forked child (gunicorn
    ``--preload``), which inherits no threads. Its lock and queue are made
    in the process that uses them, after a fork or gevent's patching.

    The threads hold the pool weakly, and only while they run a task:
    a pool nobody holds any more (its app was dropped without a
    shutdown) is collected once its tasks are done, and its threads end.

    :param max_workers: threads that run tasks.
    :param max_queued: tasks that may wait for a free thread; :meth:`submit`
        refuses more.
    """

    def __init__(
        self, max_workers: int = 4, max_queued: int = 100, *, name: str = "jobify"
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.max_queued = max_queued
        self._name = name
        self._idle_of: PerProcess[threading.Condition] = PerProcess(lambda: threading.Condition())
        self._queue_of: PerProcess[queue.SimpleQueue[Task | None]] = PerProcess(
            lambda: queue.SimpleQueue())
        self._queued = 0
        self._running = 0
        self._closed = False
        self._pid: int | None = None
        self._threads: list[threading.Thread] = []
        # Ends the threads when the pool is collected.
        weakref.finalize(self, _stop_threads, self._queue_of, max_workers).atexit = False

    @property
    def _idle(self) -> threading.Condition:
        """Guards the counts; made in each process that uses it (see
        :mod:`flask_jobify.perprocess`), as is the queue."""
        return self._idle_of.get()

    @property
    def _lock(self) -> threading.Condition:
        return self._idle  # a condition is its own lock

    @property
    def _queue(self) -> queue.SimpleQueue[Task | None]:
        return self._queue_of.get()

    @property
    def queued(self) -> int:
        """Tasks waiting for a thread."""
        return self._queued

    @property
    def running(self) -> int:
        """Tasks being run."""
        return self._running

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, task: Task, *, force: bool = False) -> bool:
        """Queue ``task``; return ``False`` if the queue is full or closed.

        :param force: queue it even past ``max_queued`` (work accepted
            earlier: a retry, a job taken over from a dead process).
        """
        with self._lock:
            if self._closed or (self._queued >= self.max_queued and not force):
                return False
            self._start_threads()
            self._queued += 1
        self._queue.put(task)
        return True

    def close(self) -> None:
        """Refuse new tasks from now on; queued and running ones go on."""
        with self._lock:
            self._closed = True

    def shutdown(self, grace: float) -> bool:
        """Stop accepting tasks and wait up to ``grace`` seconds for queued
        and running ones. Return ``True`` if all of them finished."""
        deadline = time.monotonic() + grace
        with self._lock:
            self._closed = True
            while self._queued or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(remaining)
            done = not (self._queued or self._running)
        for _ in self._threads:
            self._queue.put(None)
        return done

    def _start_threads(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        self._pid = pid
        self._threads = [
            threading.Thread(target=_work, args=(weakref.ref(self), self._queue),
                             name=f"{self._name}-{n}", daemon=True)
            for n in range(self.max_workers)
        ]
        for thread in self._threads:
            thread.start()

    def _begin(self) -> None:
        with self._lock:
            self._queued -= 1
            self._running += 1

    def _done(self) -> None:
        with self._lock:
            self._running -= 1
            self._idle.notify_all()


def _work(ref: weakref.ref[ThreadPool], tasks: queue.SimpleQueue[Task | None]) -> None:
    """A thread of the pool: runs tasks until it gets ``None`` (a shutdown,
    or its pool was collected). Holds the pool and the task only
    while it runs one: a task may hold its app."""
    while True:
        task = tasks.get()
        pool = ref()
        if task is None or pool is None:
            return
        pool._begin()
        try:
            task()
        except BaseException:  # a task must never kill its thread
            logger.exception("A Flask-Jobify task raised")
        finally:
            pool._done()
            del task, pool


def _stop_threads(queue_of: PerProcess[queue.SimpleQueue[Task | None]], count: int) -> None:
    """Tell this process's threads of a collected pool to end."""
    tasks = queue_of.made()
    if tasks is not None:
        for _ in range(count):
            tasks.put(None)  # SimpleQueue.put is safe from a finalizer
