"""Execution queues: ``@jobify.job(queue="reports", concurrency=1)`` runs at
most that many jobs of the queue at once, across every process that shares
the store (Celery's and RQ's word for where jobs wait is "queue";
``concurrency`` is Celery's word for how many run at once).

The slots are in the store (:meth:`JobStore.acquire_slot
<flask_jobify.stores.base.JobStore.acquire_slot>`, with the rules of
:mod:`flask_jobify.stores.slots`): a run takes one before its job starts,
and gives it back when the job's end is stored; a slot whose process died
frees itself when that process's lease runs out. A run that finds no free
slot does not start, and its job stays ``pending``, in line by creation
time:

- on the thread executor, the run is *parked* here: it gives its thread
  back, this process keeps holding the job (its lease is renewed, so it is
  never taken for lost), and the run is queued on the pool again when a
  slot of its queue frees in this process, or at a poll of the store (from
  :data:`POLL_MIN` seconds, doubling up to :data:`POLL_MAX`) for slots freed
  elsewhere;
- on Celery, the worker sends the run again with a countdown of about
  :data:`CELERY_COUNTDOWN` seconds, and takes the next task.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
import time
import typing as t

from .errors import ExecutorError, StoreError
from .executor import Run
from .lifecycle import Lifecycle
from .models import JobError, JobStatus
from .perprocess import PerProcess
from .scheduler import Scheduler
from .stores.base import JobStore

__all__ = ["CELERY_COUNTDOWN", "POLL_MAX", "POLL_MIN", "Queues"]

logger = logging.getLogger("flask_jobify")

#: Seconds before the first look at the store for a free slot, once a run
#: is parked; doubled at each look that frees none, up to :data:`POLL_MAX`.
POLL_MIN = 0.05
#: Longest wait, in seconds, between two looks for a slot freed in another
#: process (a slot freed in this process wakes the next run at once).
POLL_MAX = 1.0
#: Seconds (with jitter: between half and all of it) before a Celery worker
#: tries again a run that found no free slot.
CELERY_COUNTDOWN = 1.0


@dataclasses.dataclass
class _Parked:
    run: Run
    created_at: float
    #: Queued on the pool again, not back yet.
    woken: bool = False


class _Table:
    """The runs parked in one process, by queue, under its lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parked: dict[str, dict[str, _Parked]] = {}
        #: Queue -> the jobs whose run took a slot here and has not given it back.
        self.holding: dict[str, set[str]] = {}
        #: Queue -> seconds until its next poll, while one is scheduled.
        self.polls: dict[str, float] = {}


class Queues:
    """The execution queues of one app, as this process sees them.

    Thread-safe: the runs parked here are in a per-process table under its
    lock (a forked child parks none of its parent's runs).

    :param lease_until: when a lease taken now ends (``None`` in a store
        one process uses): bounds a slot taken before the job has a lease.
    :param local: whether runs execute in this process (park them) or on
        Celery (send them again later).
    :param requeue: hands a run to the executor again, after a countdown,
        past a full queue; ``False`` if refused (this process is stopping).
    """

    def __init__(
        self,
        store: JobStore,
        scheduler: Scheduler,
        lifecycle: Lifecycle,
        *,
        lease_until: t.Callable[[], float | None],
        local: t.Callable[[], bool],
        requeue: t.Callable[[Run, float], bool],
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.lifecycle = lifecycle
        self._lease_until = lease_until
        self._local = local
        self._requeue = requeue
        self._table: PerProcess[_Table] = PerProcess(_Table)

    def admit(self, run: Run) -> bool:
        """Whether ``run`` may start now: its operation has no queue limit,
        or it took a slot of its queue (or its job is no longer waiting: it
        finds out as it starts). If not, the run waits (see the module)
        and this returns ``False``: the caller must not start it."""
        limit, queue = run.options.concurrency, run.options.queue
        if limit is None or queue is None:
            return True
        with self._lock:
            alive = tuple(self._table.get().holding.get(queue, ()))
        try:
            granted = self.store.acquire_slot(queue, run.job_id, run.attempt, limit,
                                              until=self._lease_until(), alive=alive)
        except StoreError as exc:
            logger.warning("Job %s could not ask for a slot of queue %r (%s); it waits",
                           run.job_id, queue, exc)
            granted = False
        if granted:
            with self._lock:
                self._table.get().parked.get(queue, {}).pop(run.job_id, None)
                self._table.get().holding.setdefault(queue, set()).add(run.job_id)
            return True
        if self._local():
            self._park(queue, run)
        else:
            self._send_later(run)
        return False

    def release(self, run: Run) -> None:
        """Give back the slot ``run`` took, if any, and wake the runs of its
        queue parked here (the job's end is stored: the slot frees itself
        then anyway, this only makes it quicker)."""
        queue = run.options.queue
        if run.options.concurrency is None or queue is None:
            return
        with self._lock:
            holding = self._table.get().holding.get(queue, set())
            holding.discard(run.job_id)
            if not holding:
                self._table.get().holding.pop(queue, None)
        try:
            self.store.release_slot(queue, run.job_id, run.attempt)
        except StoreError as exc:
            logger.warning("Job %s could not give its slot of queue %r back (%s); it frees"
                           " itself as the job ended", run.job_id, queue, exc)
        self._wake(queue)

    def forget(self, job_id: str) -> None:
        """Wake the run of ``job_id`` if it is parked here (its job was
        cancelled): it finds its job ended and lets it go."""
        with self._lock:
            for line in self._table.get().parked.values():
                parked = line.get(job_id)
                if parked is not None and not parked.woken:
                    parked.woken = True
                    break
            else:
                return
        self._requeue(parked.run, 0.0)

    def parked(self, queue: str) -> list[str]:
        """The ids of the jobs of ``queue`` whose run is parked here, oldest first."""
        with self._lock:
            line = list(self._table.get().parked.get(queue, {}).values())
        return [p.run.job_id for p in sorted(line, key=lambda p: (p.created_at, p.run.job_id))]

    @property
    def _lock(self) -> threading.Lock:
        return self._table.get().lock

    # -- waiting here (thread executor) ----------------------------------------
    def _park(self, queue: str, run: Run) -> None:
        table = self._table.get()
        with table.lock:
            parked = table.parked.get(queue, {}).get(run.job_id)
            if parked is not None:
                parked.run, parked.woken = run, False
        if parked is None:
            job = self._get(run.job_id)
            created_at = job.created_at if job is not None else time.time()
            with table.lock:
                table.parked.setdefault(queue, {}).setdefault(
                    run.job_id, _Parked(run, created_at))
        self._poll_later(queue, POLL_MIN)

    def _get(self, job_id: str) -> t.Any:
        try:
            return self.store.get(job_id)
        except StoreError:
            return None

    def _poll_later(self, queue: str, delay: float) -> None:
        """Have :meth:`_poll` look at ``queue`` after ``delay`` seconds,
        unless a poll is scheduled already."""
        table = self._table.get()
        with table.lock:
            if queue in table.polls:
                return
            table.polls[queue] = delay
        self.scheduler.call_at(("queue", queue), time.monotonic() + delay,
                               functools.partial(self._poll, queue))

    def _poll(self, queue: str) -> None:
        table = self._table.get()
        self._wake(queue)
        with table.lock:
            delay = min(table.polls.pop(queue, POLL_MIN) * 2, POLL_MAX)
            waiting = bool(table.parked.get(queue))
        if waiting:
            self._poll_later(queue, delay)

    def _wake(self, queue: str) -> None:
        """Queue again the oldest runs parked for ``queue``, as many as it
        has slots: of those, the ones whose turn it is take them."""
        table = self._table.get()
        with table.lock:
            line = sorted(table.parked.get(queue, {}).values(),
                          key=lambda p: (p.created_at, p.run.job_id))
            if not line:
                table.parked.pop(queue, None)
                return
            woken = []
            for parked in line[:line[0].run.options.concurrency or 1]:
                if not parked.woken:
                    parked.woken = True
                    woken.append(parked.run)
        for run in woken:
            self._requeue(run, 0.0)  # refused: stopping, and the shutdown lets the job go

    # -- waiting in the broker (Celery) --------------------------------------------
    def _send_later(self, run: Run) -> None:
        countdown = CELERY_COUNTDOWN * random.uniform(0.5, 1.0)
        try:
            self._requeue(run, countdown)
        except ExecutorError as exc:
            logger.exception("Job %s could not be queued again to wait for a slot", run.job_id)
            self.lifecycle.fail(
                run.job_id, JobError("executor_unavailable",
                                     f"Could not queue the job again for a slot: {exc}"),
                if_status=[JobStatus.PENDING], if_fields={"attempts": run.attempt - 1})
