"""The per-owner limit: ``JOBIFY_MAX_RUNNING_PER_OWNER`` active jobs per
caller, so that one caller cannot fill the pool or the queues.

Checked as each new job is stored, before its first run is dispatched
(:meth:`JobifyState.dispatch_new <flask_jobify.state.JobifyState.dispatch_new>`):
the owner's ``pending`` and ``running`` jobs are counted in the store
(:meth:`JobStore.count_active <flask_jobify.stores.base.JobStore.count_active>`,
an index of active jobs: finished ones are never read), the new one
included. Counting after storing keeps the limit exact under concurrency:
of requests of one owner that arrive together at its limit, none gets past
it (each counts the others; at worst all of them are refused, and retry).
Jobs without an owner (a caller the owner loader names ``None``) are not
limited.
"""
from __future__ import annotations

from .errors import TooManyJobs
from .models import Job
from .stores.base import JobStore

__all__ = ["check_owner_quota"]


def check_owner_quota(store: JobStore, job: Job, limit: int | None, *, retry_after: int) -> None:
    """Refuse the stored, new ``job`` if its owner now has more than
    ``limit`` active jobs (``None``: no limit): delete it and raise.

    :raises TooManyJobs: (429, with ``Retry-After: retry_after``) the job
        was deleted.
    :raises StoreError: if the store fails (the job may be left: the
        caller deletes it).
    """
    if limit is None or job.owner is None:
        return
    if store.count_active(job.owner, limit=limit + 1, app=job.app) > limit:
        store.delete(job.id)
        raise TooManyJobs(
            f"You have {limit} jobs that have not finished, the most this server runs for"
            " one caller at once (JOBIFY_MAX_RUNNING_PER_OWNER): wait for one to end, or"
            " cancel one, then retry.", headers={"Retry-After": str(retry_after)})
