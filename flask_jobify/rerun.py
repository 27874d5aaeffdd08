"""Run a failed job again, from the request it saved.

A minimal version written for the dashboard's re-run button (issue 17);
issue 18 (the CLI) owns this module and may replace it, keeping
:func:`rerun`'s signature.
"""
from __future__ import annotations

import json
import typing as t

from .capture import CapturedRequest
from .errors import JobNotFound, NotRerunnable, QueueFull
from .models import Job, JobStatus, new_job_id
from .options import JobOptions

if t.TYPE_CHECKING:
    from .state import JobifyState

#: The statuses a job may be re-run from.
RERUNNABLE = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED})


def rerun(state: JobifyState, job_id: str) -> Job:
    """Store and dispatch a new job that runs ``job_id``'s request again;
    its ``meta["rerun_of"]`` names ``job_id``. The new job has the old one's
    operation, path, owner and options.

    Only a job that ended without succeeding, and whose request is saved
    in the store (:meth:`~flask_jobify.stores.base.JobStore.load_request`:
    ``{"request": CapturedRequest.to_dict(), "options": JobOptions.to_dict()}``,
    kept for operations that may run again), can be re-run.

    :raises JobNotFound: no such job in ``state``'s app.
    :raises NotRerunnable: (409) it is active or succeeded, or its request
        was not saved.
    :raises QueueFull: the queue is full or the process is stopping.
    """
    old = state.store.get(job_id)
    if old is None or not state.owns(old):
        raise JobNotFound()
    if old.status not in RERUNNABLE:
        raise NotRerunnable(f"Job {old.id} is {old.status.value}: only a job that failed,"
                            " timed out or was cancelled can run again.")
    raw = state.store.load_request(old.id)
    if raw is None:
        raise NotRerunnable(f"Job {old.id}'s request was not saved (its operation may not run"
                            " again, or the store forgot it), so it cannot run again.")
    saved = json.loads(raw)
    captured = CapturedRequest.from_dict(saved["request"])
    options = JobOptions.from_dict(saved["options"])
    job = Job(id=new_job_id(), operation=old.operation, method=old.method, path=old.path,
              result_ttl=old.result_ttl, owner=old.owner, app=old.app,
              meta={"rerun_of": old.id})
    state.prepare(job, captured, options)
    if not state.submit(job, captured, options):
        raise QueueFull(headers={"Retry-After": str(state.settings.retry_after)})
    return job
