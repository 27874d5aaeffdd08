"""The slots of execution queues (``@jobify.job(queue=..., concurrency=N)``):
the rules every store applies in its atomic step of
:meth:`JobStore.acquire_slot <flask_jobify.stores.base.JobStore.acquire_slot>`.

A queue has ``N`` slots. A row per job says either that the job holds a
slot (with the run number that took it, and a bound for a job without a
lease), or that it waits in line (until when it was last seen trying).
Nothing renews a row: whether it still counts is read from its job's
record (:func:`holds`, :func:`waits`), so a slot frees itself when the
lease of a process that died runs out; the run that took it gives it back
when it returns (a job that ended before its run did, timed out, keeps its
slot until then, or until the row's bound). Rows that no
longer count are dropped by the next :func:`grant` that meets them.

Pure functions and plain values: thread-safe. The Redis store runs the
same rules in Lua (:mod:`flask_jobify.stores.redis.slots`).
"""
from __future__ import annotations

import dataclasses
import typing as t

from ..models import Job, JobStatus

__all__ = ["WAITER_TTL", "Line", "Slot", "grant", "holds", "may_wait", "waits"]

#: Seconds a job without a lease (a Celery job, whose worker re-sends it
#: every second or so while it waits) keeps its place in line after its
#: last try; a leased job keeps it while its lease lasts.
WAITER_TTL = 10.0

_ACTIVE = ("pending", "running")


def holds(status: str | None, lease_until: float | None, bound: float | None,
          now: float) -> bool:
    """Whether a slot row still holds its slot: its job (``status``,
    ``lease_until``; ``None`` when the job is gone) is active, and its lease
    has not run out; without a lease, the row's own ``bound`` (``None``:
    no bound, a store one process uses) has not passed. A row whose job
    ended (timed out, or cancelled or deleted by someone else) while its
    run still executes holds until that run gives it back, or at the
    latest until its ``bound``: a timed-out view goes on until it returns."""
    if status in _ACTIVE and lease_until is not None:
        return lease_until > now
    return bound is None or bound > now


def waits(status: str | None, lease_until: float | None, seen_until: float | None,
          now: float) -> bool:
    """Whether a waiting row still keeps its place: its job is ``pending``
    and leased, or without a lease was seen trying within :data:`WAITER_TTL`."""
    if status != "pending":
        return False
    if lease_until is not None:
        return lease_until > now
    return seen_until is not None and seen_until > now


def may_wait(job: Job | None, attempt: int) -> bool:
    """Whether run number ``attempt`` of ``job`` may take a slot or wait for
    one: the job is ``pending`` and this run is the next one. Otherwise the
    store lets the run go on without a slot, and it finds out as it starts."""
    return job is not None and job.status is JobStatus.PENDING and job.attempts == attempt - 1


@dataclasses.dataclass(frozen=True)
class Slot:
    """One row of a queue, with what its job's record says."""

    job_id: str
    #: Its job's ``created_at``: the place in line.
    created_at: float
    #: A holder's bound, or a waiter's ``seen_until``.
    until: float | None
    status: str | None
    lease_until: float | None

    @classmethod
    def of(cls, job_id: str, job: Job | None, until: float | None) -> Slot:
        if job is None:
            return cls(job_id, 0.0, until, None, None)
        return cls(job_id, job.created_at, until, job.status.value, job.lease_until)


def grant(job_id: str, limit: int, holders: t.Iterable[Slot], waiters: t.Iterable[Slot],
          now: float, alive: t.Collection[str] = ()) -> tuple[bool, list[str]]:
    """Decide whether ``job_id``, which waits in line (it is among
    ``waiters``, given oldest first), takes one of the ``limit`` slots now:
    only if fewer than ``limit`` rows of ``holders`` hold a slot, and no
    more waiters ahead of it keep their place than there are free slots.
    Return the decision and the ids of the rows that no longer count
    (to drop). Reads ``waiters`` only as far as it needs. A holder among
    ``alive`` (held by the asking process, which knows it is alive) holds
    its slot whatever its lease and its job say (its run still executes):
    a process that stalled past its own leases, or whose timed-out run
    goes on, never runs two jobs of a queue of one."""
    stale: list[str] = []
    held = 0
    for slot in holders:
        if slot.job_id == job_id:
            continue
        if slot.job_id in alive or holds(slot.status, slot.lease_until, slot.until, now):
            held += 1
        else:
            stale.append(slot.job_id)
    free = limit - held
    if free <= 0:
        return False, stale
    for slot in waiters:
        if slot.job_id == job_id:
            return True, stale
        if waits(slot.status, slot.lease_until, slot.until, now):
            free -= 1
            if free == 0:
                return False, stale
        else:
            stale.append(slot.job_id)
    return True, stale


@dataclasses.dataclass
class Line:
    """One queue's rows in a store's memory (:class:`~flask_jobify.stores.memory.MemoryStore`),
    guarded by the store's lock."""

    #: Job id -> (run number, bound) of the jobs holding a slot.
    holders: dict[str, tuple[int, float | None]] = dataclasses.field(default_factory=dict)
    #: Job id -> ``seen_until`` of the jobs waiting.
    waiters: dict[str, float] = dataclasses.field(default_factory=dict)
