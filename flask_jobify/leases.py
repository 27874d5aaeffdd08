"""The jobs a process holds, their leases, and the recovery of jobs whose
process died.

Every job that a process holds (queued on its threads, waiting for a
retry, or running) carries a lease in the store, renewed every quarter of
``JOBIFY_LEASE_SECONDS`` to half of it ahead. Every process also looks for
expired leases as often: a job whose process died is noticed within
``JOBIFY_LEASE_SECONDS`` and either queued again (when it may be retried
and its request was saved) or failed with error type ``lost``. Each run
has a number (``attempts``) and the store refuses writes from any run but
the latest, so a run given up as lost can no longer change its job, and
notices that it should stop.

At shutdown, what this process holds is released to another process
when it may run again there, or failed (error type ``shutdown``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
import typing as t

from flask import Flask

from .capture import CapturedRequest
from .context import JobHandle
from .errors import StoreError
from .executor import Run
from .lifecycle import Lifecycle, released_error, shutdown_error
from .models import ACTIVE_STATUSES, Job, JobError, JobStatus
from .options import JobOptions
from .perprocess import PerProcess
from .scheduler import Scheduler
from .signals import job_lost
from .signals import send as send_signal
from .stores.base import JobStore

__all__ = [
    "STORE_BACK_INTERVAL",
    "Held",
    "Leases",
    "Unwritten",
]

logger = logging.getLogger("flask_jobify")

#: Seconds between two tries of a write the store refused (see
#: :meth:`Leases.fail_when_store_is_back`).
STORE_BACK_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class Unwritten:
    """A ``failed`` the store refused: written as soon as it takes it."""

    error: JobError
    if_status: tuple[JobStatus, ...]
    if_fields: t.Mapping[str, t.Any]


@dataclasses.dataclass
class Held:
    """A job this process holds: queued or running here. Its lease is
    renewed while the store's ``attempts`` is still ``attempts``."""

    attempts: int
    handle: JobHandle | None = None
    #: Its request is saved in the store: another process can take it over.
    saved: bool = False
    #: Runs the job may have in all (known once it runs here).
    max_attempts: int = 1
    #: The failure to write once the store takes a write again (a start or
    #: an end the store refused for longer than JOBIFY_STORE_RETRY_SECONDS).
    unwritten: Unwritten | None = None


class _Table:
    """What one process holds of an app, under its lock. Made in each
    process at its first use there (see :mod:`flask_jobify.perprocess`): a
    forked child holds none of its parent's jobs, and never renews a lease
    it does not hold."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, Held] = {}


class Leases:
    """The jobs this process holds of one app, and their leases.

    Thread-safe: the table of held jobs is guarded by a per-process lock.

    :param app: the app, sender of :data:`~flask_jobify.signals.job_lost`.
    :param redispatch: hands a run of a job taken over from a dead process
        to the executor (past a full queue); ``False`` if refused.
    :param closed: whether this process stopped accepting jobs.
    :param local: whether the executor runs jobs in this process, which
        then holds (and leases) the jobs it queues.
    """

    def __init__(
        self,
        store: JobStore,
        lifecycle: Lifecycle,
        scheduler: Scheduler,
        *,
        app: Flask,
        lease_seconds: float,
        redispatch: t.Callable[[Run, bool], bool],
        closed: t.Callable[[], bool],
        local: t.Callable[[], bool],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.scheduler = scheduler
        self.app = app
        self.app_name = app.name
        self.lease_seconds = lease_seconds
        self._redispatch = redispatch
        self._closed = closed
        self._local = local
        self._table: PerProcess[_Table] = PerProcess(_Table)

    @property
    def lock(self) -> threading.Lock:
        return self._table.get().lock

    @property
    def held(self) -> dict[str, Held]:
        """Job id -> what this process holds of it; read under :attr:`lock`."""
        return self._table.get().held

    # -- the table -----------------------------------------------------------
    def hold(self, job_id: str, entry: Held) -> None:
        with self.lock:
            self.held[job_id] = entry

    def hold_run(self, run: Run) -> Held:
        """The entry of ``run``'s job, made if it is not held yet (a Celery
        worker's run)."""
        with self.lock:
            return self.held.setdefault(run.job_id, Held(attempts=run.attempt - 1))

    def drop(self, job_id: str, entry: Held) -> None:
        """Stop holding ``job_id`` if ``entry`` is still what is held of it."""
        with self.lock:
            if self.held.get(job_id) is entry:
                del self.held[job_id]

    def get(self, job_id: str) -> Held | None:
        with self.lock:
            return self.held.get(job_id)

    def lease_until(self) -> float | None:
        """When a lease taken now ends, or ``None`` in a store one process
        uses (nobody else could take the job over)."""
        if not self.store.shared_across_processes:
            return None
        return time.time() + self.lease_seconds / 2

    def queued_lease_until(self) -> float | None:
        """The lease of a job queued now: held by this process with a local
        executor, else taken by the worker that runs it."""
        return self.lease_until() if self._local() else None

    def request_cancel(self, job_id: str) -> None:
        """Tell the run of ``job_id`` executing here, if any, to stop."""
        held = self.get(job_id)
        if held is not None and held.handle is not None:
            held.handle.request_cancel()

    # -- renewing and recovering ----------------------------------------------
    def start(self) -> None:
        """Renew this process's leases and look for lost jobs, every quarter
        of ``JOBIFY_LEASE_SECONDS``: only in a store shared across
        processes, where only another process can notice that one died."""
        if self.store.shared_across_processes:
            quarter = self.lease_seconds / 4
            self.scheduler.every("heartbeat", quarter, self.heartbeat)
            self.scheduler.every("reclaim", quarter, self.reclaim_lost)

    def heartbeat(self) -> None:
        """Renew the lease of every job held here, in one store call; tell a
        running job whose lease is gone (taken over after a stall) to stop."""
        with self.lock:  # each job's run number and handle, as of one moment
            held = {job_id: (entry.attempts, entry.handle) for job_id, entry in self.held.items()}
        if not held:
            return
        began = time.monotonic()
        renewed = self.store.renew_leases(
            {job_id: attempts for job_id, (attempts, _) in held.items()},
            t.cast(float, self.lease_until()),
        )
        took = time.monotonic() - began
        if took > self.lease_seconds / 4:
            logger.warning("Renewing the leases of %d jobs took %.2f s, more than a quarter"
                           " of JOBIFY_LEASE_SECONDS (%s s): raise it, or look at the store",
                           len(held), took, self.lease_seconds)
        # Only a run that was running when its renewal was asked, and was
        # refused, lost its job: a job that started meanwhile (its queued
        # run number was refused) goes on.
        for job_id, (_, handle) in held.items():
            if job_id not in renewed and handle is not None:
                handle.request_cancel()

    def reclaim_lost(self, now: float | None = None) -> int:
        """Deal with jobs whose lease expired (their process died or hung):
        queue them again here when they may run again and their request was
        saved, else fail them with error type ``lost``. Return how many.

        Safe to run in every process at once: each job is claimed with a
        compare-and-set on its attempt number and lease.
        """
        lost = self.store.expired_leases(now, app=self.app_name)
        with self.lock:
            # Alive here: a late heartbeat, not a dead process.
            lost = [job for job in lost if job.id not in self.held]
        for job in lost:
            try:
                self._reclaim(job)
            except StoreError:
                logger.exception("Could not recover lost job %s", job.id)
        return len(lost)

    def _reclaim(self, job: Job) -> None:
        saved = self.store.load_request(job.id)
        # A job that never started may always run; a started one only if
        # its operation allows another run.
        again = saved is not None and not job.cancel_requested and (
            job.status is JobStatus.PENDING or job.attempts < job.max_attempts)
        if again and self._closed():
            return  # left to a process that is not stopping
        if again:
            data = json.loads(t.cast(bytes, saved))
            run = Run(job.id, CapturedRequest.from_dict(data["request"]),
                      JobOptions.from_dict(data["options"]), attempt=job.attempts + 1)
            error = JobError("lost", "The process running the job stopped; it was queued again.")
            taken = self.lifecycle.requeue(job, error if job.attempts else job.error,
                                           lease_until=self.queued_lease_until())
            if taken is not None:
                logger.warning("Job %s was lost by its process; queued again here", job.id)
                send_signal(job_lost, self.app, job=job, requeued=True)
                self._redispatch(run, True)
            return
        message = ("The process holding the job stopped (it crashed, was killed, or hung)"
                   " before the job finished.")
        claim = {"attempts": job.attempts, "lease_until": job.lease_until}
        if self.lifecycle.fail(job.id, JobError("lost", message), if_status=[job.status],
                               if_fields=claim, patient=False):
            logger.warning("Job %s was lost by its process; failed", job.id)
            send_signal(job_lost, self.app, job=job, requeued=False)

    def fail_when_store_is_back(
        self, job_id: str, unwritten: Unwritten, entry: Held | None = None
    ) -> None:
        """Write ``unwritten`` now or, while the store refuses, every second
        from the scheduler (and once more at shutdown). The job stays held
        meanwhile: its lease is renewed, and it is never taken for lost."""
        first_try = entry is None
        if entry is None:
            entry = Held(attempts=unwritten.if_fields["attempts"], unwritten=unwritten)
            self.hold(job_id, entry)
        try:
            # Patient in the run's thread; the scheduler's later tries fail fast.
            self.lifecycle.fail(job_id, unwritten.error, if_status=unwritten.if_status,
                                if_fields=unwritten.if_fields, patient=first_try)
        except StoreError:
            if not self._closed():
                self.scheduler.call_at(
                    ("store-retry", job_id), time.monotonic() + STORE_BACK_INTERVAL,
                    functools.partial(self.fail_when_store_is_back, job_id, unwritten, entry))
                return
            logger.error("Job %s could not be failed (the store still refuses writes) before"
                         " this process stopped: another process will find it lost", job_id)
        self.drop(job_id, entry)

    # -- letting go at shutdown ---------------------------------------------------
    def wind_down(self, *, pending_only: bool) -> None:
        """Let go of the jobs held here, at shutdown: the queued ones (all
        with ``pending_only``), then, after the grace, the running ones."""
        with self.lock:
            held = dict(self.held)
        for job_id, entry in held.items():
            if entry.unwritten is not None:  # the scheduler is trying; one last try
                if not pending_only:
                    self.scheduler.discard(("store-retry", job_id))
                    self.fail_when_store_is_back(job_id, entry.unwritten, entry)
                continue
            if pending_only and entry.handle is not None:
                continue
            if entry.handle is None:
                self.let_go(job_id, entry)
                continue
            if entry.saved and entry.attempts < entry.max_attempts and self._release(
                    job_id, entry):
                continue
            try:
                if self.lifecycle.fail(job_id, shutdown_error(), if_status=ACTIVE_STATUSES,
                                       if_fields={"attempts": entry.attempts}, patient=False):
                    entry.handle.request_cancel()
            except StoreError:
                logger.exception("Job %s could not be failed at shutdown", job_id)

    def _release(self, job_id: str, entry: Held) -> bool:
        """Give up a run that did not finish within the shutdown grace, of
        a job that may run again and whose request is saved: put the job
        back to ``pending`` with its lease expired, for another process to
        run (:meth:`Lifecycle.release`), and tell the run to stop. Return
        whether it was released (``False``: it ended, or its cancellation
        was requested, meanwhile; or the store refused)."""
        handle = t.cast(JobHandle, entry.handle)
        self.drop(job_id, entry)  # no more heartbeats for it from here
        self.scheduler.discard(("deadline", job_id))
        try:
            released = self.lifecycle.release(job_id, entry.attempts,
                                              released_error(entry.attempts))
        except StoreError:
            logger.exception("Job %s could not be released at shutdown", job_id)
            released = None
        if released is None:
            with self.lock:
                self.held.setdefault(job_id, entry)
            return False
        logger.warning("Job %s did not finish within the shutdown grace: run %d was given up"
                       " and the job released to another process", job_id, entry.attempts)
        handle.request_cancel()
        return True

    def let_go_run(self, run: Run) -> None:
        """Let go of a run that will not execute here (its countdown ended
        after this process began to stop), unless its job was let go already."""
        entry = self.get(run.job_id)
        if entry is not None and entry.attempts == run.attempt - 1:
            self.let_go(run.job_id, entry)

    def let_go(self, job_id: str, entry: Held) -> None:
        """Drop a job queued here that will not run here (this process is
        stopping): release it to another process if its request is saved
        (its lease expires at once), else fail it (error type ``shutdown``)."""
        self.drop(job_id, entry)
        self.scheduler.discard(("retry", job_id))
        if entry.saved and self.store.renew_lease(job_id, entry.attempts, 0.0):
            return  # another process will run it
        try:
            self.lifecycle.fail(job_id, shutdown_error(), if_status=[JobStatus.PENDING],
                                if_fields={"attempts": entry.attempts}, patient=False)
        except StoreError:
            logger.exception("Job %s could not be failed at shutdown", job_id)
