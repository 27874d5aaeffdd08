"""Running a failed job again, as a new job: ``flask jobs rerun`` and the
dashboard's "re-run" button both call :func:`rerun`.

A re-run replays the request the failed job kept in the store (see
``JOBIFY_KEEP_FAILED_REQUESTS``): the request as it was accepted, after
``JOBIFY_DROP_HEADERS`` and the request filters, with the operation's
options. The new job has its own id, the failed job's operation, owner and
webhook (its deliveries start afresh), and records the job it re-runs in
``meta["rerun_of"]``. The failed job is left as it is.
"""
from __future__ import annotations

import json
import typing as t

from .capture import CapturedRequest
from .errors import (
    ExecutorError,
    ExecutorUnavailable,
    JobNotFound,
    NotRerunnable,
    QueueFull,
    ShuttingDown,
)
from .models import Job, JobStatus, new_job_id
from .options import JobOptions
from .signals import job_accepted
from .webhooks import META_KEY, callback_meta

if t.TYPE_CHECKING:
    from .state import JobifyState

__all__ = ["RERUN_OF", "rerun"]

#: The ``meta`` entry of a re-run job: the id of the job it re-runs.
RERUN_OF = "rerun_of"


def rerun(state: JobifyState, job_id: str, *, hand_off: bool = False) -> Job:
    """Accept a new job that runs the request of the failed job
    ``job_id`` again, and return it (``pending``).

    Thread-safe. It is queued as a request's job is: on this process's
    threads, or on Celery. With ``hand_off`` (a process that serves no
    jobs: ``flask jobs rerun``), a thread-executor job is left ``pending``
    in the shared store with an expired lease, and the first serving
    process that sweeps for lost jobs (every quarter of
    ``JOBIFY_LEASE_SECONDS``) runs it; a Celery job goes to the broker.

    Who may re-run a job is the caller's business: this checks only that
    the job is this app's (the dashboard checks the admin access rule).

    :raises JobNotFound: if no job of this app has this id (it expired).
    :raises NotRerunnable: (409) if the job did not fail, or its request
        was not kept (``JOBIFY_KEEP_FAILED_REQUESTS`` was off, the store is
        not shared across processes, or the job was accepted before).
    :raises ShuttingDown: if this process stopped accepting jobs.
    :raises QueueFull: if this process's queue is full.
    :raises ContentTooLarge: if the request is longer than
        ``JOBIFY_MAX_SAVED_BODY`` and must leave the process.
    :raises StoreError: if the store fails.
    :raises ExecutorUnavailable: if Celery's broker refused the job.
    :rtype: flask_jobify.models.Job
    """
    failed = state.store.get(job_id)
    if failed is None or not state.owns(failed):
        raise JobNotFound()
    if failed.status is not JobStatus.FAILED:
        raise NotRerunnable(
            f"Job {job_id} is {failed.status.value}: only a failed job can be re-run.")
    saved = state.store.load_request(job_id)
    if saved is None:
        raise NotRerunnable(
            f"Job {job_id} failed, but its request was not kept, so it cannot run again."
            " Set JOBIFY_KEEP_FAILED_REQUESTS = True (with a store shared across processes)"
            " so that failed jobs keep their request until they expire.")
    if state.closed:
        raise ShuttingDown()
    data = json.loads(saved)
    captured = CapturedRequest.from_dict(data["request"])
    options = JobOptions.from_dict(data["options"])
    hook = failed.meta.get(META_KEY) or {}
    job = Job(
        id=new_job_id(),
        operation=failed.operation,
        method=failed.method,
        path=failed.path,
        result_ttl=state.result_ttl_of(options),
        owner=failed.owner,
        app=state.name,
        meta={**callback_meta(hook.get("url"), hook.get("baseUrl") or "http://localhost/"),
              RERUN_OF: failed.id},
    )
    state.prepare(job, captured, options)
    if hand_off and state.executor.local:
        _hand_off(state, job, saved)
    else:
        try:
            queued = state.enqueue(job, captured, options)
        except ExecutorError:
            raise ExecutorUnavailable() from None
        if not queued:
            raise QueueFull()
    job_accepted.send(state.app, job=job)
    return job


def _hand_off(state: JobifyState, job: Job, saved: bytes) -> None:
    """Store ``job`` ``pending`` with its request and an expired lease: a
    serving process's sweep for lost jobs queues it (see
    :meth:`Leases.reclaim_lost <flask_jobify.leases.Leases.reclaim_lost>`)."""
    if not state.store.shared_across_processes:
        raise NotRerunnable(
            "This store is not shared across processes: no other process can run the"
            " re-run job. Re-run it from the app's own process (the dashboard).")
    job.lease_until = 0.0  # expired: taken over at once
    state.store.create(job)
    state.store.save_request(job.id, saved)
