"""Estimates in the job record: ``estimatedCompletionAt`` and ``queuePosition``.

They are estimates, nothing more:

- A **running** job with progress ``p`` percent after ``e`` seconds is
  expected to take ``e * 100 / p`` in all (:func:`running_completion`);
  without progress yet, the median of the operation's recent durations,
  while that lies ahead.
- A **pending** job's ``queuePosition`` is 1 + the pending jobs of the app
  accepted before it (counted up to :data:`QUEUE_BOUND`). It should start
  after ``(position - 1) // JOBIFY_MAX_WORKERS`` runs of the operation's
  median duration, and end one median later (:func:`pending_completion`):
  it assumes one process's threads and jobs like this one ahead.
- A finished job, or an operation with no recent success, has ``null``.

Cost on the read path: recent durations are a per-process cache per
operation (:data:`SAMPLES` durations), fed by the jobs this process ends
and refreshed from the store with one bounded listing (``limit=SAMPLES``)
at most every :data:`REFRESH_SECONDS`; a pending job's position is one
listing bounded by :data:`QUEUE_BOUND` (a page of ``GET /jobs`` shares its
listings: a few per page, not one per job). Nothing scans the store.

.. versionadded:: 0.2
"""
from __future__ import annotations

import collections
import dataclasses
import statistics
import threading
import time
import typing as t

from flask import g, has_app_context

from .errors import StoreError
from .models import Job, JobStatus
from .rules import MAX_SECONDS
from .signals import job_finished

if t.TYPE_CHECKING:
    from flask import Flask

    from .stores.base import JobStore

#: Seconds ahead past which an estimated end is unknown (``null``): ten years.
HORIZON = MAX_SECONDS

#: Set in ``g`` by the jobs listing: its pending jobs share listings of the
#: queue (see :meth:`Estimator.queue_position`).
LISTING_FLAG = "_jobify_listing"

#: Recent durations kept per operation.
SAMPLES = 20
#: Seconds before an operation's durations are read again from the store.
REFRESH_SECONDS = 60.0
#: Most pending jobs counted ahead of one: past it, the position says
#: ``QUEUE_BOUND + 1``. Each count reads that many records, on every status
#: read of a pending job: a larger bound makes polls of a long queue dear.
QUEUE_BOUND = 100


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What the record says about a job's future."""

    #: POSIX seconds the job is expected to end at, or ``None``: unknown.
    completion_at: float | None = None
    #: 1 for the next pending job to start; ``None`` unless pending.
    queue_position: int | None = None


def running_completion(started_at: float, percent: float | None, now: float,
                       typical: float | None = None) -> float | None:
    """When a running job should end: from its progress rate when it has
    progress (``started_at + elapsed * 100 / percent``), else from the
    ``typical`` duration while that lies ahead; ``None`` otherwise.

    >>> running_completion(100.0, 25.0, 110.0)   # 10 s for 25 %: 40 s in all
    140.0
    >>> running_completion(100.0, None, 110.0, typical=30.0)
    130.0
    >>> running_completion(100.0, None, 140.0, typical=30.0) is None  # overdue
    True
    >>> running_completion(100.0, 1e-9, 110.0) is None  # past the horizon
    True
    """
    elapsed = max(now - started_at, 0.0)
    if percent is not None and 0 < percent <= 100:
        return _within_horizon(started_at + elapsed * 100.0 / percent, now)
    if typical is not None and started_at + typical > now:
        return started_at + typical
    return None


def pending_completion(position: int, typical: float | None, slots: int,
                       now: float) -> float | None:
    """When a pending job at queue ``position`` (1: next) should end, with
    ``slots`` jobs running at once and each taking ``typical`` seconds.

    >>> pending_completion(1, 10.0, 4, 0.0)   # starts at once: one run
    10.0
    >>> pending_completion(9, 10.0, 4, 0.0)   # 8 ahead on 4 threads: two waves first
    30.0
    >>> pending_completion(1, None, 4, 0.0) is None
    True
    """
    if typical is None:
        return None
    waves = (position - 1) // max(slots, 1)
    return _within_horizon(now + (waves + 1) * typical, now)


def _within_horizon(moment: float, now: float) -> float | None:
    """``moment``, or ``None`` past :data:`HORIZON` from ``now`` (a percent
    of ``1e-9`` puts the end past year 9999, which no timestamp can say)."""
    return moment if moment - now <= HORIZON else None


class Estimator:
    """The estimates of one app's jobs, in one process.

    Thread-safe: the cache of durations is behind a lock; store reads
    happen outside it. Each process has its own cache.

    :param slots: jobs that run at once (``JOBIFY_MAX_WORKERS``).
    """

    def __init__(self, app: Flask, store: JobStore, *, slots: int,
                 clock: t.Callable[[], float] = time.time) -> None:
        self._store = store
        self._app_name = app.name
        self._slots = slots
        self._clock = clock
        self._lock = threading.Lock()
        #: operation -> (monotonic time read from the store, durations).
        self._durations: dict[str, tuple[float, collections.deque[float]]] = {}
        self._last = threading.local()
        job_finished.connect(self._on_finished, sender=app)

    def _on_finished(self, sender: t.Any, job: Job, **_: t.Any) -> None:
        duration = _duration(job)
        if duration is None:
            return
        with self._lock:
            entry = self._durations.get(job.operation)
            if entry is not None:
                entry[1].append(duration)

    def typical_duration(self, operation: str) -> float | None:
        """The median of the operation's recent successful durations, in
        seconds; ``None`` when none is known."""
        now = time.monotonic()
        with self._lock:
            entry = self._durations.get(operation)
        if entry is None or now - entry[0] > REFRESH_SECONDS:
            recent = self._store.list(status=JobStatus.SUCCEEDED, operation=operation,
                                      limit=SAMPLES, app=self._app_name)
            samples = collections.deque(
                (d for d in map(_duration, reversed(recent)) if d is not None), maxlen=SAMPLES)
            entry = (now, samples)
            with self._lock:
                self._durations[operation] = entry
        with self._lock:
            durations = list(entry[1])
        return statistics.median(durations) if durations else None

    def queue_position(self, job: Job) -> int:
        """1 + the pending jobs of the app accepted before ``job`` (at
        most :data:`QUEUE_BOUND` counted).

        One job's status: one bounded :meth:`JobStore.count
        <flask_jobify.stores.base.JobStore.count>` (no record read on
        SQLite). A page of ``GET /jobs`` (:data:`LISTING_FLAG` in ``g``):
        one listing of the queue, reused for the next pending jobs of the
        page while it reaches far enough, so a page costs a few listings,
        not one count per job."""
        key = (job.created_at, job.id)
        window = _request_window()
        position = None if window is None else window.position(key)
        if position is None and not (has_app_context() and g.get(LISTING_FLAG)):
            return 1 + self._store.count(status=JobStatus.PENDING, after=key,
                                         limit=QUEUE_BOUND, app=self._app_name)
        if position is None:
            limit = QUEUE_BOUND if window is None else 2 * QUEUE_BOUND
            ahead = self._store.list(status=JobStatus.PENDING, after=key, limit=limit,
                                     app=self._app_name)
            window = _QueueWindow(key, [(j.created_at, j.id) for j in ahead],
                                  complete=len(ahead) < limit)
            _keep_window(window)
            position = t.cast(int, window.position(key))
        return position

    def of(self, job: Job) -> Estimate:
        """The estimate of ``job`` now; the last one again for the same
        ``job`` object in this thread (a record dumps two fields from it).
        Keyed by the object, not by its id and version: a pending job keeps
        its version while the jobs ahead of it start, so a later read of
        it is estimated anew."""
        last = getattr(self._last, "value", None)
        if last is not None and last[0] is job:
            return t.cast(Estimate, last[1])
        try:
            estimate = self._estimate(job)
        except StoreError:  # an estimate never fails the record
            estimate = Estimate()
        self._last.value = (job, estimate)  # held: its id() is not reused
        return estimate

    def _estimate(self, job: Job) -> Estimate:
        now = self._clock()
        if job.status is JobStatus.RUNNING and job.started_at is not None:
            percent = job.progress.percent
            typical = None if percent else self.typical_duration(job.operation)
            return Estimate(running_completion(job.started_at, percent, now, typical))
        if job.status is JobStatus.PENDING:
            position = self.queue_position(job)
            typical = self.typical_duration(job.operation)
            return Estimate(pending_completion(position, typical, self._slots, now), position)
        return Estimate()


class _QueueWindow:
    """Pending jobs of an app older than ``anchor``, newest first, as one
    listing read them: enough to count the jobs ahead of the anchor and
    of each listed job with at least :data:`QUEUE_BOUND` listed behind
    it (or all of them, when the listing is ``complete``)."""

    def __init__(self, anchor: tuple[float, str], older: list[tuple[float, str]], *,
                 complete: bool) -> None:
        self._index = {anchor: -1, **{key: i for i, key in enumerate(older)}}
        self._count = len(older)
        self._complete = complete

    def position(self, key: tuple[float, str]) -> int | None:
        """The queue position of the job with ``key`` (``(created_at,
        id)``), or ``None`` when this listing cannot tell it."""
        index = self._index.get(key)
        if index is None:
            return None
        behind = self._count - index - 1  # listed jobs accepted before it
        if behind < QUEUE_BOUND and not self._complete:
            return None
        return min(behind, QUEUE_BOUND) + 1


def _request_window() -> _QueueWindow | None:
    """The queue listing read in this app context, if any."""
    return g.get("_jobify_queue_window") if has_app_context() else None


def _keep_window(window: _QueueWindow) -> None:
    if has_app_context():
        g._jobify_queue_window = window


def _duration(job: Job) -> float | None:
    """Seconds the last run of a succeeded ``job`` took, or ``None``."""
    if job.status is not JobStatus.SUCCEEDED or job.started_at is None \
            or job.finished_at is None:
        return None
    return max(job.finished_at - job.started_at, 0.0)


__all__ = [
    "HORIZON", "LISTING_FLAG", "QUEUE_BOUND", "REFRESH_SECONDS", "SAMPLES", "Estimate", "Estimator",
    "pending_completion", "running_completion",
]
