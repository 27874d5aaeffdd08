"""The change feed behind the all-jobs event stream (``{prefix}/events``).

A store tells a waiter when *one* job changes (:meth:`JobStore.wait
<flask_jobify.stores.base.JobStore.wait>`); a dashboard wants every job
that changes. The feed asks the store, through its public API only, for
the active jobs and the newest ones every ``JOBIFY_SSE_FEED_INTERVAL``
seconds and hands each job whose ``version`` moved to every subscriber.
One reader per process serves all of that process's streams, and it reads
the shared store, so a change made in any process (any gunicorn worker,
any machine on Redis, a Celery worker) reaches every stream.

Cost, per process and while at least one stream is open: two listings of
the active jobs (``pending``, ``running``; at most :data:`ACTIVE_LIMIT`
each), one of the :data:`RECENT_LIMIT` newest jobs, and one ``get`` for
each job that left those lists, per interval. Nothing when no stream is
open: the reader thread ends with its last subscriber.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import typing as t

from .errors import StoreError
from .models import ACTIVE_STATUSES, Job
from .perprocess import PerProcess

if t.TYPE_CHECKING:
    from .stores.base import JobStore

logger = logging.getLogger("flask_jobify")

#: Active jobs of each status read per look.
ACTIVE_LIMIT = 200
#: Newest jobs read per look (so that jobs just created or just finished
#: are seen even when they were never seen active).
RECENT_LIMIT = 50
#: Changes a subscriber may have waiting before the oldest are dropped (a
#: stream that cannot keep up: its client is told to reload).
BACKLOG = 1000


@dataclasses.dataclass(frozen=True)
class Change:
    """One change: the job as it is now, or, when ``deleted``, as it was
    last seen (so that a stream can tell whether its caller saw it)."""

    job: Job
    deleted: bool = False


class Subscription:
    """What one stream receives: :meth:`get` the next change. Thread-safe."""

    def __init__(self) -> None:
        self._changes: queue.Queue[Change | None] = queue.Queue(BACKLOG)
        #: Set when changes were dropped because this subscriber lagged.
        self.overflowed = False

    def put(self, change: Change | None) -> None:
        try:
            self._changes.put_nowait(change)
        except queue.Full:
            self.overflowed = True

    def get(self, timeout: float) -> Change | None:
        """The next change, or ``None`` after ``timeout`` seconds (or when
        the feed stopped)."""
        try:
            return self._changes.get(timeout=timeout)
        except queue.Empty:
            return None


class _Local:
    """The feed of one process: its subscribers, reader thread and last look."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscribers: set[Subscription] = set()
        self.reader: threading.Thread | None = None
        self.wake = threading.Event()


class ChangeFeed:
    """Every change of an app's jobs, for the all-jobs event stream.

    Thread-safe; one reader thread per process while it has subscribers.

    :param store: the app's store (read with ``list`` and ``get`` only).
    :param app: the app's name: only its jobs are read.
    :param interval: seconds between two looks at the store.
    """

    def __init__(self, store: JobStore, app: str, interval: float) -> None:
        self.store = store
        self.app = app
        self.interval = interval
        self._local: PerProcess[_Local] = PerProcess(_Local)

    def look(self) -> dict[str, Job]:
        """The jobs the feed watches, by id: the active ones and the newest."""
        jobs: dict[str, Job] = {}
        for status in sorted(ACTIVE_STATUSES):
            for job in self.store.list(status=status, limit=ACTIVE_LIMIT, app=self.app):
                jobs[job.id] = job
        for job in self.store.list(limit=RECENT_LIMIT, app=self.app):
            jobs.setdefault(job.id, job)
        return jobs

    def subscribe(self) -> Subscription:
        """A new subscriber; it gets the changes from the reader's next look
        on. Start the reader if none runs in this process."""
        local = self._local.get()
        subscription = Subscription()
        with local.lock:
            local.subscribers.add(subscription)
            local.wake.clear()  # set by the last unsubscribe, to end the reader sooner
            if local.reader is None or not local.reader.is_alive():
                local.reader = threading.Thread(
                    target=self._read, args=(local,), name="jobify-feed", daemon=True)
                local.reader.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop sending to ``subscription``; the reader ends with the last."""
        local = self._local.get()
        with local.lock:
            local.subscribers.discard(subscription)
            if not local.subscribers:
                local.wake.set()

    def subscribers(self) -> int:
        """Subscribers in this process."""
        local = self._local.get()
        with local.lock:
            return len(local.subscribers)

    def _read(self, local: _Local) -> None:
        # The first look sends every job it reads: a stream that subscribed
        # before it may have read its own first state before a change.
        seen: dict[str, Job] = {}
        while True:
            try:
                seen, changes = self._changes(seen)
            except StoreError as exc:  # a Redis outage: try again at the next look
                logger.warning("Flask-Jobify change feed: the store failed: %s", exc)
                changes = []
            except Exception:  # any other store error: the streams must not go quiet
                logger.exception("Flask-Jobify change feed: the store raised; trying again")
                changes = []
            with local.lock:  # after the look: a stream that subscribed during it gets it
                if not local.subscribers:
                    local.reader = None
                    return
                subscribers = list(local.subscribers)
            for change in changes:
                for subscriber in subscribers:
                    subscriber.put(change)
            local.wake.wait(self.interval)

    def _changes(self, seen: dict[str, Job]) -> tuple[dict[str, Job], list[Change]]:
        """The jobs of this look and the changes since ``seen``, the last look."""
        now = self.look()
        changes = [Change(job) for job in now.values()
                   if job.id not in seen or seen[job.id].version != job.version]
        for job_id, before in seen.items():
            if job_id in now:
                continue
            # Left the lists (ended long after newer jobs came, or deleted).
            job = self.store.get(job_id)
            if job is None:
                changes.append(Change(before, deleted=True))
            elif job.version != before.version:
                changes.append(Change(job))
        return now, changes

__all__ = [
    "ACTIVE_LIMIT",
    "BACKLOG",
    "RECENT_LIMIT",
    "Change",
    "ChangeFeed",
    "Subscription",
]
