"""Executing the runs of jobs: the code an executor calls, in a thread of
this process or on a Celery worker.

A run starts the job (:meth:`Lifecycle.start
<flask_jobify.lifecycle.Lifecycle.start>`), executes the request as Flask
would (:func:`~flask_jobify.runner.run_request`), then stores how it ended:
a final status, or back to ``pending`` for a retry after a backoff. The
job stays held by this process (its lease renewed, see
:mod:`flask_jobify.leases`) until its end is stored, so a slow store never
makes it look lost.
"""
from __future__ import annotations

import functools
import logging
import time
import typing as t

from flask import Flask

from .config import Settings
from .context import JobHandle
from .errors import StoreError
from .executor import Run
from .leases import Held, Leases, Unwritten
from .lifecycle import Ending, Lifecycle, ending_of
from .models import Job, JobError, JobStatus
from .options import JobOptions
from .queues import Queues
from .runner import Outcome, run_request
from .scheduler import Scheduler
from .signals import job_retried, job_started
from .signals import send as send_signal

__all__ = ["Worker"]

logger = logging.getLogger("flask_jobify")


class Worker:
    """Executes the runs of one app's jobs in the calling thread.

    Thread-safe: each run executes in its own thread, with its own
    :class:`~flask_jobify.context.JobHandle`.

    :param dispatch: hands the next run of a job (a retry) to the executor,
        past a full queue: ``dispatch(run, countdown, saved)``, ``saved``
        telling whether the job's request is saved in the store.
    :param start: starts this process's background work, at each run.
    :param queues: takes a slot of the run's execution queue, if it has
        one, before the run starts (see :mod:`flask_jobify.queues`).
    """

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        lifecycle: Lifecycle,
        leases: Leases,
        scheduler: Scheduler,
        *,
        dispatch: t.Callable[[Run, float, bool], bool],
        start: t.Callable[[], None] = lambda: None,
        queues: Queues | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.lifecycle = lifecycle
        self.leases = leases
        self.scheduler = scheduler
        self._dispatch = dispatch
        self._start = start
        self.queues = queues

    def timeout_of(self, options: JobOptions) -> float | None:
        """Seconds a run with ``options`` may take, or ``None``."""
        return options.timeout if options.timeout is not None else self.settings.default_timeout

    def run(self, run: Run) -> None:
        """Execute ``run`` in the calling thread and store how it ended."""
        self._start()
        if self.queues is not None and not self.queues.admit(run):
            return  # it waits for a slot of its queue, its job pending
        entry = self.leases.hold_run(run)
        try:
            job = self._begin(run)
            if job is None:
                return
            handle = JobHandle(run.job_id, self.leases.store, attempt=run.attempt,
                               cancel_check_interval=self.settings.cancel_check_interval)
            with self.leases.lock:
                entry.attempts, entry.handle = run.attempt, handle
                entry.max_attempts = job.max_attempts
            timeout = self.timeout_of(run.options)
            if timeout is not None:
                self.scheduler.call_at(("deadline", run.job_id), time.monotonic() + timeout,
                                       functools.partial(self.on_deadline, run.job_id,
                                                         run.attempt))
            send_signal(job_started, self.app, job=job)
            try:
                outcome = run_request(
                    self.app, run.request, handle, expose_errors=self.settings.expose_errors,
                    keep_cookies=self._keeps_cookies(job),
                )
            except BaseException as exc:  # SystemExit, KeyboardInterrupt, a greenlet killed
                error = JobError(type(exc).__name__, "The run was interrupted.")
                self._end(run, Ending(JobStatus.FAILED, error))
                raise
            finally:
                self.scheduler.discard(("deadline", run.job_id))
            self._conclude(job, run, outcome, entry)
        finally:
            self.leases.drop(run.job_id, entry)  # a retry holds a new entry
            if self.queues is not None:
                self.queues.release(run)

    def _begin(self, run: Run) -> Job | None:
        """Start the job; ``None`` if it was cancelled, deleted or taken
        over while it waited, or if the store refused (it is then failed
        with error type ``store_error`` once the store takes it)."""
        try:
            return self.lifecycle.start(run.job_id, run.attempt, now=time.time(),
                                        lease_until=self.leases.lease_until())
        except StoreError as exc:
            logger.error("Job %s could not be started: the store refused it (%s); it will"
                         " be failed with error type store_error once the store takes it",
                         run.job_id, exc)
            self.leases.fail_when_store_is_back(run.job_id, Unwritten(
                JobError("store_error", f"The job could not be started: {exc}"),
                (JobStatus.PENDING,), {"attempts": run.attempt - 1}))
            return None

    def _keeps_cookies(self, job: Job) -> bool:
        """Whether the job's stored response keeps ``Set-Cookie`` headers
        (``JOBIFY_RESULT_COOKIES``)."""
        policy = self.settings.result_cookies
        return policy == "always" or (policy == "owner" and job.owner is not None)

    def _conclude(self, job: Job, run: Run, outcome: Outcome, entry: Held) -> None:
        """Store how ``run`` ended: a final status, or back to ``pending``
        for a retry."""
        ending = ending_of(outcome)
        if (ending.retryable and run.attempt < job.max_attempts
                and self._retry(job, run, ending, saved=entry.saved)):
            return
        self._end(run, ending)

    def _end(self, run: Run, ending: Ending) -> None:
        """End ``run``; if the store refuses for longer than
        ``JOBIFY_STORE_RETRY_SECONDS``, fail the job (error type
        ``store_error``) as soon as the store takes it."""
        try:
            self.lifecycle.end(run.job_id, run.attempt, ending)
        except StoreError as exc:
            logger.error("Job %s ended %s, but the store refused it (%s); it will be failed"
                         " with error type store_error once the store takes it",
                         run.job_id, ending.status.value, exc)
            self.leases.fail_when_store_is_back(run.job_id, Unwritten(
                JobError("store_error", f"The job's end could not be stored: {exc}"),
                (JobStatus.RUNNING,), {"attempts": run.attempt}))

    def _retry(self, job: Job, run: Run, ending: Ending, *, saved: bool) -> bool:
        """Put a job whose run failed back to ``pending`` and dispatch its
        next run after a backoff. ``False`` if it ended meanwhile (a cancel)."""
        delay = run.options.retry_delay(run.attempt, self.settings.retry_max_backoff)
        error = t.cast(JobError, ending.error)
        try:
            waiting = self.lifecycle.wait_for_retry(
                job.id, run.attempt, error, lease_until=self.leases.queued_lease_until())
        except StoreError:
            logger.exception("Job %s could not wait for its next run: the store failed", job.id)
            return False  # ended as it is, or failed once the store takes it
        if waiting is None:
            return True  # ended cancelled (or otherwise) by the lifecycle
        logger.info("Job %s: run %d of %d failed (%s); next run in %.1f s",
                    job.id, run.attempt, job.max_attempts, error.type, delay)
        send_signal(job_retried, self.app, job=waiting)
        try:
            self._dispatch(run.next(), delay, saved)
        except Exception as exc:  # the broker went away between two runs
            logger.exception("Job %s could not be queued again", job.id)
            self.lifecycle.fail(
                job.id, JobError("executor_unavailable", f"Could not queue a retry: {exc}"),
                if_status=[JobStatus.PENDING], if_fields={"attempts": run.attempt})
        return True

    def on_deadline(self, job_id: str, attempt: int) -> None:
        """Time out run number ``attempt`` of ``job_id`` (from the scheduler)."""
        try:
            timed_out = self.lifecycle.time_out(job_id, attempt)
        except StoreError:
            logger.warning("Job %s ran past its time limit, but the store failed;"
                           " trying again in 1 s", job_id)
            self.scheduler.call_at(("deadline", job_id), time.monotonic() + 1,
                                   functools.partial(self.on_deadline, job_id, attempt))
            return
        if timed_out is not None:
            self.leases.request_cancel(job_id)
