"""A job store in this process's memory: fast, and lost on restart."""
from __future__ import annotations

import bisect
import copy
import dataclasses
import threading
import time
import typing as t

from ..errors import DuplicateJobId
from ..models import Job, JobStatus, StoredResponse
from ..perprocess import PerProcess
from . import slots
from .base import (
    NO_OWNER,
    Cursor,
    JobStore,
    OwnerFilter,
    apply_changes,
    conditions_hold,
    is_expired,
    of_app,
)
from .compact import GIVE_BACK_AFTER, Compactor, Packed, give_back_memory

#: A job's place in the listing order: ``(created_at, id)``.
_Key = tuple[float, str]


def _copy(job: Job) -> Job:
    meta = copy.deepcopy(job.meta) if job.meta else {}
    return dataclasses.replace(job, meta=meta)


class _Waiters:
    """The condition the waiters on one job sleep on, and how many they are."""

    __slots__ = ("changed", "count")

    def __init__(self, lock: threading.RLock) -> None:
        self.changed = threading.Condition(lock)
        self.count = 0


class MemoryStore(JobStore):
    """Jobs in a dict guarded by one lock, with a condition per waited-on
    job: a change wakes the waiters of that job only.

    Safe to share between threads. Not shared between processes: each
    gunicorn worker would see only its own jobs, so use it for one-process
    servers, tests and demos (``JOBIFY_STORE = "memory://"``).
    Records are copied on the way in and out, so callers never share a
    mutable record with the store.

    Listing walks sorted ``(created_at, id)`` lists, one of every job and
    one per owner (jobs without an owner under ``None``), kept under the
    same lock: a page of one owner's jobs, or of ownerless ones, reads that
    page and the expired jobs not yet purged, never the other owners' jobs.
    """

    shared_across_processes = False

    def __init__(self) -> None:
        self._lock_of: PerProcess[threading.RLock] = PerProcess(lambda: threading.RLock())
        #: The waiters of each job someone waits on (the lock is held).
        self._waiters_of: dict[str, _Waiters] = {}
        self._jobs: dict[str, Job] = {}
        self._results: dict[str, Packed] = {}
        self._compact = Compactor()  # issue 20: what the records share
        self._requests: dict[str, bytes] = {}
        self._all: list[_Key] = []
        self._by_owner: dict[str | None, list[_Key]] = {}
        self._lines: dict[str, slots.Line] = {}  # execution queues

    @property
    def _lock(self) -> threading.RLock:
        """Guards everything; made in the process that uses it (see
        :mod:`flask_jobify.perprocess`)."""
        return self._lock_of.get()

    def _wake(self, job_id: str) -> None:
        """Wake the waiters of ``job_id``, if any (the lock is held)."""
        waiters = self._waiters_of.get(job_id)
        if waiters is not None:
            waiters.changed.notify_all()

    # -- the listing indexes (the lock is held) ----------------------------
    def _index(self, job: Job) -> None:
        key = (job.created_at, job.id)
        bisect.insort(self._all, key)
        bisect.insort(self._by_owner.setdefault(job.owner, []), key)

    def _unindex(self, key: _Key, owner: str | None) -> None:
        owned = self._by_owner.get(owner, [])
        for keys in (self._all, owned):
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]
        if not owned:
            self._by_owner.pop(owner, None)  # an owner whose jobs are all gone

    def _live(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or is_expired(job):
            return None
        return job

    def create(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise DuplicateJobId(f"A job with id {job.id!r} exists already.")
            self._jobs[job.id] = self._compact.job(_copy(job))
            self._index(job)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._live(job_id)
            return None if job is None else _copy(job)

    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        if_status: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
        if_fields: t.Mapping[str, t.Any] | None = None,
    ) -> Job | None:
        with self._lock:
            job = self._live(job_id)
            if job is None or not conditions_hold(job, if_status, if_fields):
                return None
            key, owner = (job.created_at, job.id), job.owner
            apply_changes(job, changes)
            self._compact.job(job)
            if (job.created_at, job.owner) != (key[0], owner):
                self._unindex(key, owner)
                self._index(job)
            if result is not None:
                self._results[job_id] = self._compact.pack(result)
            if job.is_final and self.forgets_request(job):
                self._requests.pop(job_id, None)
            self._wake(job_id)
            return _copy(job)

    def renew_leases(self, leases: t.Mapping[str, int], until: float) -> set[str]:
        renewed = set()
        with self._lock:
            for job_id, attempt in leases.items():
                job = self._live(job_id)
                if job is not None and not job.is_final and job.attempts == attempt:
                    job.lease_until = until
                    renewed.add(job_id)
        return renewed

    def expired_leases(
        self, now: float | None = None, limit: int = 100, *, app: str | None = None
    ) -> list[Job]:
        now = time.time() if now is None else now
        with self._lock:
            # Only this process sees these jobs: the leases are its own, and
            # a scan is as fast as the number of jobs in memory allows.
            lost = sorted(
                (job for job in self._jobs.values()
                 if not job.is_final and job.lease_until is not None
                 and job.lease_until <= now and of_app(job, app)),
                key=lambda job: t.cast(float, job.lease_until),
            )
            return [_copy(job) for job in lost[:limit]]

    def save_request(self, job_id: str, data: bytes) -> None:
        with self._lock:
            job = self._live(job_id)
            if job is not None and not job.is_final:
                self._requests[job_id] = data

    def load_request(self, job_id: str) -> bytes | None:
        with self._lock:
            return self._requests.get(job_id) if self._live(job_id) is not None else None

    def get_result(self, job_id: str) -> StoredResponse | None:
        with self._lock:
            packed = self._results.get(job_id) if self._live(job_id) is not None else None
        return None if packed is None else Compactor.unpack(packed)

    def delete(self, job_id: str) -> bool:
        with self._lock:
            self._results.pop(job_id, None)
            self._requests.pop(job_id, None)
            job = self._jobs.pop(job_id, None)
            if job is not None:
                self._unindex((job.created_at, job.id), job.owner)
            self._wake(job_id)
            return job is not None

    def list(
        self,
        *,
        status: JobStatus | None = None,
        operation: str | None = None,
        owner: OwnerFilter = None,
        limit: int = 50,
        after: Cursor | None = None,
        app: str | None = None,
    ) -> list[Job]:
        """Walk the owner's index (or that of every job) newest first from
        the cursor, checking the other filters: reads the page, the jobs of
        this owner the filters leave out, and expired jobs not yet purged."""
        now = time.time()
        found: list[Job] = []
        with self._lock:
            if owner is None:
                keys = self._all
            else:
                keys = self._by_owner.get(None if owner is NO_OWNER else owner, [])
            end = len(keys) if after is None else bisect.bisect_left(keys, (after[0], after[1]))
            for at in range(end - 1, -1, -1):
                if len(found) >= limit:
                    break
                job = self._jobs[keys[at][1]]
                if (not is_expired(job, now)
                        and (status is None or job.status == status)
                        and (operation is None or job.operation == operation)
                        and of_app(job, app)):
                    found.append(_copy(job))
        return found

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        lock = self._lock
        with lock:
            waiters = self._waiters_of.get(job_id)
            if waiters is None:
                waiters = self._waiters_of[job_id] = _Waiters(lock)
            waiters.count += 1
            try:
                while True:
                    job = self._live(job_id)
                    if job is None or job.version != version:
                        return None if job is None else _copy(job)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return _copy(job)
                    waiters.changed.wait(remaining)
            finally:
                waiters.count -= 1
                if not waiters.count:
                    del self._waiters_of[job_id]

    def purge_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            expired = [job_id for job_id, job in self._jobs.items() if is_expired(job, now)]
            for job_id in expired:
                del self._jobs[job_id]
                self._results.pop(job_id, None)
                self._requests.pop(job_id, None)
            if expired:  # one pass over each index, not one removal per job
                self._all = [key for key in self._all if key[1] in self._jobs]
                self._by_owner = {
                    owner: kept for owner, keys in self._by_owner.items()
                    if (kept := [key for key in keys if key[1] in self._jobs])}
                for job_id in expired:
                    self._wake(job_id)
            if len(expired) >= GIVE_BACK_AFTER:  # dicts never shrink: copy them
                self._jobs, self._results = dict(self._jobs), dict(self._results)
                self._requests = dict(self._requests)
        if len(expired) >= GIVE_BACK_AFTER:
            give_back_memory()
        return len(expired)

    # -- execution queues (see flask_jobify.stores.slots) --------------------------
    def acquire_slot(
        self, queue: str, job_id: str, attempt: int, limit: int, *, until: float | None,
        alive: t.Collection[str] = (),
    ) -> bool:
        """Under the store's lock; sorts the queue's waiters (few) each time."""
        now = time.time()
        with self._lock:
            if not slots.may_wait(self._live(job_id), attempt):
                return True
            line = self._lines.setdefault(queue, slots.Line())
            if job_id in line.holders:  # a run of the job holds it already: a retry
                line.holders[job_id] = (attempt, until)
                return True
            line.waiters[job_id] = now + slots.WAITER_TTL
            holders = [slots.Slot.of(held, self._live(held), bound)
                       for held, (_, bound) in line.holders.items()]
            waiters = sorted((slots.Slot.of(waiting, self._live(waiting), seen)
                              for waiting, seen in line.waiters.items()),
                             key=lambda slot: (slot.created_at, slot.job_id))
            granted, stale = slots.grant(job_id, limit, holders, waiters, now, alive)
            for gone in stale:
                line.holders.pop(gone, None)
                line.waiters.pop(gone, None)
            if granted:
                del line.waiters[job_id]
                line.holders[job_id] = (attempt, until)
            return granted

    def release_slot(self, queue: str, job_id: str, attempt: int) -> None:
        with self._lock:
            line = self._lines.get(queue)
            if line is not None and line.holders.get(job_id, (None,))[0] == attempt:
                del line.holders[job_id]
                if not line.holders and not line.waiters:
                    del self._lines[queue]

    def slot_holders(self, queue: str) -> tuple[str, ...]:
        now = time.time()
        with self._lock:
            line = self._lines.get(queue) or slots.Line()
            held = [slots.Slot.of(job_id, self._live(job_id), bound)
                    for job_id, (_, bound) in line.holders.items()]
        return tuple(slot.job_id for slot in sorted(held, key=lambda slot: slot.created_at)
                     if slots.holds(slot.status, slot.lease_until, slot.until, now))

    def count_active(self, owner: str, *, limit: int, app: str | None = None) -> int:
        """Walks the owner's index: its finished jobs too (in memory, cheap)."""
        count = 0
        with self._lock:
            for _, job_id in reversed(self._by_owner.get(owner, [])):
                job = self._jobs[job_id]
                if not job.is_final and of_app(job, app):
                    count += 1
                    if count >= limit:
                        break
        return count


__all__ = ["MemoryStore"]
