"""The job's state machine: every change of a job's status goes through here.

::

    pending --start--> running --end--> succeeded | failed | cancelled | timed_out
       ^  \\                |  \\
       |   \\--cancel-->    |   \\--retry wait--> pending   (a failed run that may run again)
       |     cancelled      |
       +--- requeue <-------+   (its process died: lost; or it stopped: released)
    running --release--> pending   (its process stopped; another may run it again)
    pending | running --lost / shutdown--> failed

:data:`TRANSITIONS` lists the allowed moves; :class:`Lifecycle` is the only
code that writes a job's ``status``, and :func:`ending_of` the one place
that decides how a run ended. Every write is a compare-and-set in the store
(``if_status`` on the status, ``if_fields`` on the run number), so the runner,
the timeout monitor, a cancelling client and another process's lease
sweep agree on who ends a job: the first one to write.

Writes made by the thread that runs a job (the run starting, ending, or
waiting for a retry) are retried while the store fails (a Redis restart, a
locked or full disk) for up to ``JOBIFY_STORE_RETRY_SECONDS``, with
exponential backoff and jitter (:mod:`tenacity`). Writes made for an HTTP
request fail fast, and the request gets a ``503``; writes made by the
scheduler thread (a timeout, a lost job) fail fast too, and the scheduler tries
them again at its next round.
"""
from __future__ import annotations

import dataclasses
import logging
import typing as t

import tenacity
from flask import Flask

from .errors import StoreClosed, StoreError
from .models import (
    Job,
    JobError,
    JobProgress,
    JobStatus,
    StoredResponse,
)
from .signals import job_finished
from .signals import send as send_signal

if t.TYPE_CHECKING:
    from .runner import Outcome
    from .stores.base import JobStore

logger = logging.getLogger("flask_jobify")

P, R, S, F, C, T = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED,
                    JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT)

#: Every status a job may move to from each active status. Final statuses
#: move nowhere. ``pending -> pending`` is a job queued again (lost, or
#: released by a stopping process); ``running -> pending`` is a retry wait,
#: or a run given up by a stopping process (released to another process).
TRANSITIONS: t.Mapping[JobStatus, frozenset[JobStatus]] = {
    P: frozenset({R, C, F, P}),
    R: frozenset({S, F, C, T, P}),
}


class IllegalTransition(RuntimeError):
    """A move the state machine does not allow: a bug in Flask-Jobify."""


@dataclasses.dataclass(frozen=True)
class Ending:
    """How one run of a job ended, as :func:`ending_of` decides it."""

    status: JobStatus
    error: JobError | None = None
    #: The response to keep for ``/result``; ``None``: the job has none.
    response: StoredResponse | None = None
    #: A failure that another run may mend (an exception, or a 5xx).
    retryable: bool = False


def cancelled_error() -> JobError:
    return JobError("cancelled", "The job was cancelled; its result is discarded.")


def shutdown_error() -> JobError:
    return JobError("shutdown", "The server stopped before the job finished; submit it again.")


def released_error(attempt: int) -> JobError:
    return JobError("shutdown", f"The server stopped during run {attempt}; the job was"
                    " released to another process, which runs it again.")


def timeout_error() -> JobError:
    return JobError("timeout", "The job ran past its time limit; its result is discarded.")


def ending_of(outcome: Outcome) -> Ending:
    """Decide how a run ended from what it produced: the one place that does.

    - the view (or its streamed body) raised :class:`~flask_jobify.errors.JobCancelled`,
      or noticed a cancellation and returned: ``cancelled``, no result;
    - an exception escaped the view, its body, the app's hooks or the
      freezing of its response: ``failed``, with the exception's class as
      error type and the app's rendering of the error as result; retryable;
    - the view answered 5xx: ``failed`` (error type ``http_error``), retryable;
      4xx: ``failed``, not retryable; anything else: ``succeeded``.

    A cancellation requested while the run went on wins over all of these
    (see :meth:`Lifecycle.end`).
    """
    if outcome.cancelled:
        return Ending(C, cancelled_error())
    stored = outcome.response
    if outcome.error is not None:
        return Ending(F, outcome.error, stored, retryable=True)
    assert stored is not None
    if stored.status < 400:
        return Ending(S, None, stored)
    error = JobError("http_error", f"The view answered with HTTP {stored.status}.")
    return Ending(F, error, stored, retryable=stored.status >= 500)


class Lifecycle:
    """Moves jobs of one app between statuses in its store.

    Thread-safe (the store is). Sends :data:`~flask_jobify.signals.job_finished`
    for every job it ends.

    :param app: the app, sender of the signals.
    :param store: where jobs are.
    :param store_retry_seconds: how long a background write is retried
        while the store raises :class:`~flask_jobify.errors.StoreError`.
    """

    def __init__(self, app: Flask, store: JobStore, *, store_retry_seconds: float) -> None:
        self.app = app
        self.store = store
        self.store_retry_seconds = store_retry_seconds

    # -- the one writer -----------------------------------------------------
    def move(
        self,
        job_id: str,
        to: JobStatus,
        *,
        if_status: t.Iterable[JobStatus],
        if_fields: t.Mapping[str, t.Any] | None = None,
        result: StoredResponse | None = None,
        patient: bool = True,
        **changes: t.Any,
    ) -> Job | None:
        """Move a job whose status is one of ``if_status`` (and whose fields
        match ``if_fields``) to ``to``, with ``changes``; ``None`` if it was
        not in that state. ``patient`` retries while the store fails.

        :raises IllegalTransition: for a move :data:`TRANSITIONS` forbids.
        :raises StoreError: if the store still failed after
            ``store_retry_seconds`` (or at once, unless ``patient``).
        """
        sources = frozenset(if_status)
        for source in sources:
            if to not in TRANSITIONS.get(source, frozenset()):
                raise IllegalTransition(f"A job may not move from {source} to {to}.")
        fields = {"status": to, **changes}
        if to.is_final:
            fields["lease_until"] = None
        job = self._write(
            lambda: self.store.update(job_id, fields, if_status=sources, result=result,
                                      if_fields=if_fields),
            patient=patient,
        )
        if job is not None and to.is_final:
            send_signal(job_finished, self.app, job=job)
        return job

    def _write(self, write: t.Callable[[], Job | None], *, patient: bool) -> Job | None:
        if not patient or self.store_retry_seconds <= 0:
            return write()
        retrying = tenacity.Retrying(
            retry=(tenacity.retry_if_exception_type(StoreError)
                   & tenacity.retry_if_not_exception_type(StoreClosed)),
            stop=tenacity.stop_after_delay(self.store_retry_seconds),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            before_sleep=_log_store_retry,
            reraise=True,
        )
        return retrying(write)

    # -- a run ----------------------------------------------------------------
    def start(self, job_id: str, attempt: int, *, now: float,
              lease_until: float | None) -> Job | None:
        """``pending -> running`` for run number ``attempt``; ``None`` if the
        job was cancelled, deleted or taken over while it waited."""
        return self.move(job_id, R, if_status=[P], if_fields={"attempts": attempt - 1},
                         started_at=now, attempts=attempt, progress=JobProgress(),
                         lease_until=lease_until)

    def end(self, job_id: str, attempt: int, ending: Ending) -> Job | None:
        """``running -> final`` for run number ``attempt``.

        Cancel means cancel: if a cancellation was requested while the run
        went on, the job ends ``cancelled`` and its result is discarded,
        even if the view ignored the request and returned normally. ``None``
        when the job had already ended (timed out, failed at shutdown) or
        was taken over by another run.
        """
        if ending.status is not C:
            job = self.move(job_id, ending.status, if_status=[R],
                            if_fields={"attempts": attempt, "cancel_requested": False},
                            result=ending.response, error=ending.error,
                            http_status=None if ending.response is None else ending.response.status)
            if job is not None:
                return job
        return self.move(job_id, C, if_status=[R], if_fields={"attempts": attempt},
                         error=cancelled_error(), http_status=None)

    def wait_for_retry(self, job_id: str, attempt: int, error: JobError, *,
                       lease_until: float | None) -> Job | None:
        """``running -> pending`` after a failed run that will run again;
        ``None`` if the job was cancelled meanwhile (then it ends
        ``cancelled``) or ended otherwise."""
        job = self.move(job_id, P, if_status=[R],
                        if_fields={"attempts": attempt, "cancel_requested": False},
                        error=error, http_status=None, lease_until=lease_until)
        if job is None:
            self.end(job_id, attempt, Ending(C, cancelled_error()))
        return job

    def time_out(self, job_id: str, attempt: int) -> Job | None:
        """``running -> timed_out``: run number ``attempt`` ran past its
        limit. Fails fast (it runs on the scheduler thread)."""
        return self.move(job_id, T, if_status=[R], if_fields={"attempts": attempt}, patient=False,
                         cancel_requested=True, error=timeout_error())

    # -- from outside the run ---------------------------------------------------
    def cancel_pending(self, job_id: str) -> Job | None:
        """``pending -> cancelled`` (a ``DELETE``); fails fast."""
        return self.move(job_id, C, if_status=[P], patient=False,
                         cancel_requested=True, error=cancelled_error())

    def request_cancel(self, job_id: str) -> Job | None:
        """Ask a running job to stop (a ``DELETE``): it stays ``running``
        with ``cancel_requested`` until its run ends, then ends ``cancelled``."""
        return self.store.update(job_id, {"cancel_requested": True}, if_status=[R])

    def fail(self, job_id: str, error: JobError, *, if_status: t.Iterable[JobStatus] = (R,),
             if_fields: t.Mapping[str, t.Any] | None = None, patient: bool = True) -> Job | None:
        """``active -> failed`` for a reason outside the view: ``lost``,
        ``shutdown``, ``executor_unavailable``, ``store_error``."""
        return self.move(job_id, F, if_status=if_status, if_fields=if_fields, error=error,
                         patient=patient)

    def release(self, job_id: str, attempt: int, error: JobError) -> Job | None:
        """``running -> pending`` for run number ``attempt`` of a job that
        may run again, given up by a stopping process: its lease expires at
        once (``lease_until = 0``), so that another process's lease sweep
        queues it (:meth:`requeue`) without waiting. Fenced by the run
        number, so the given-up run's later writes (progress, its end) are
        refused; ``None`` if the job had ended, was taken over, or its
        cancellation was requested. Fails fast (the process is stopping)."""
        return self.move(job_id, P, if_status=[R], patient=False,
                         if_fields={"attempts": attempt, "cancel_requested": False},
                         error=error, http_status=None, lease_until=0.0)

    def requeue(self, job: Job, error: JobError | None, *, lease_until: float | None) -> Job | None:
        """``active -> pending`` for a job whose process died (claimed by
        its attempt number and lease, so that one process wins). Fails fast
        (it runs on the scheduler thread)."""
        return self.move(job.id, P, if_status=[job.status], patient=False,
                         if_fields={"attempts": job.attempts, "lease_until": job.lease_until},
                         error=error, lease_until=lease_until)


def _log_store_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    logger.warning("Flask-Jobify could not write to the job store (%s); trying again in %.2f s",
                   exc, state.upcoming_sleep)


__all__ = ["TRANSITIONS", "Ending", "IllegalTransition", "Lifecycle", "cancelled_error",
           "ending_of", "released_error", "shutdown_error", "timeout_error"]
