"""Running a failed job again, as a new job: ``flask jobs rerun`` and the
dashboard's "re-run" button both call :func:`rerun`.

A re-run replays the request the failed job kept in the store (see
``JOBIFY_KEEP_FAILED_REQUESTS``): the request as it was accepted, after
``JOBIFY_DROP_HEADERS`` and the request filters, with the operation's
options. The new job has its own id, the failed job's operation, owner and
webhook (its deliveries start afresh), and records the job it re-runs in
``meta["rerun_of"]``. The failed job records its re-run in
``meta["rerun_by"]`` and is otherwise left as it is: a failed job is re-run
once (a second ``rerun``, or two at once, is refused), and a re-run that
fails too can be re-run in its turn.
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
from .signals import send as send_signal
from .webhooks import META_KEY, callback_meta

if t.TYPE_CHECKING:
    from .state import JobifyState

__all__ = ["RERUN_BY", "RERUN_OF", "rerun"]

#: The ``meta`` entry of a re-run job: the id of the job it re-runs.
RERUN_OF = "rerun_of"
#: The ``meta`` entry of a re-run failed job: the id of its re-run.
RERUN_BY = "rerun_by"
#: Tries to write the failed job's ``meta`` while others write it too.
_TRIES = 5


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
    :raises NotRerunnable: (409) if the job did not fail, was re-run
        already (or is being re-run now), or its request was not kept
        (``JOBIFY_KEEP_FAILED_REQUESTS`` was off, the store is not shared
        across processes, or the job was accepted before).
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
    if state.settings.drop_headers:  # as configured now: added since, they still go
        captured = captured.without_headers(state.settings.drop_headers)
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
    if hand_off and state.executor.local and not state.store.shared_across_processes:
        raise NotRerunnable(
            "This store is not shared across processes: no other process can run the"
            " re-run job. Re-run it from the app's own process (the dashboard).")
    _claim(state, failed, job.id)
    try:
        if hand_off and state.executor.local:
            _hand_off(state, job, captured, options)
        else:
            try:
                queued = state.enqueue(job, captured, options)
            except ExecutorError:
                raise ExecutorUnavailable() from None
            if not queued:
                raise QueueFull()
    except BaseException:
        _release(state, failed.id, job.id)
        raise
    send_signal(job_accepted, state.app, job=job)
    return job


def _claim(state: JobifyState, failed: Job, new_id: str) -> None:
    """Record ``new_id`` as the re-run of ``failed``, unless it has one:
    a compare-and-set on the job's ``version``, so that of two re-runs at
    once (two terminals, a double click) one goes on.

    :raises NotRerunnable: if it has a re-run already.
    :raises JobNotFound: if it expired meanwhile.
    """
    job: Job | None = failed
    for _ in range(_TRIES):
        if job is None:
            raise JobNotFound()
        if job.meta.get(RERUN_BY):
            raise NotRerunnable(
                f"Job {job.id} was re-run already, as job {job.meta[RERUN_BY]}: re-run"
                " that one if it failed too.")
        if state.store.update(job.id, {"meta": {**job.meta, RERUN_BY: new_id}},
                              if_status=[JobStatus.FAILED],
                              if_fields={"version": job.version}) is not None:
            return
        job = state.store.get(job.id)
    raise NotRerunnable(f"Job {failed.id} is being changed by others: try again.")


def _release(state: JobifyState, failed_id: str, new_id: str) -> None:
    """Forget ``new_id`` as the re-run of ``failed_id`` (it could not be
    queued), so that the job can be re-run again. Best effort."""
    for _ in range(_TRIES):
        job = state.store.get(failed_id)
        if job is None or job.meta.get(RERUN_BY) != new_id:
            return
        meta = {name: value for name, value in job.meta.items() if name != RERUN_BY}
        if state.store.update(failed_id, {"meta": meta},
                              if_fields={"version": job.version}) is not None:
            return


def _hand_off(state: JobifyState, job: Job, captured: CapturedRequest,
              options: JobOptions) -> None:
    """Store ``job`` ``pending`` with its request, then expire its lease: a
    serving process's sweep for lost jobs queues it (see
    :meth:`Leases.reclaim_lost <flask_jobify.leases.Leases.reclaim_lost>`).
    The lease expires only once the request is saved: a sweep in between
    would find no request and fail the job as lost."""
    held = job.lease_until
    state.store.create(job)
    data = {"request": captured.to_dict(), "options": options.to_dict()}
    state.store.save_request(job.id, json.dumps(data).encode())
    # Expired: taken over at once. If this write fails, the lease runs out by itself.
    state.store.update(job.id, {"lease_until": 0.0}, if_status=[JobStatus.PENDING],
                       if_fields={"lease_until": held, "attempts": 0})
