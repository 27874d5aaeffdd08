"""The contract every job store keeps.

A store keeps job records (:class:`~flask_jobify.models.Job`) and the
responses of finished jobs (:class:`~flask_jobify.models.StoredResponse`).
Every method is atomic: two threads, or two processes for stores that say
so, never see half of an update, and a compare-and-set on the status
(``if_status``) is how the executor, the timeout monitor and a cancelling
client agree on who ends a job.

A job's ``meta`` must be JSON-serialisable: the SQLite and Redis stores
keep records as JSON.
"""
from __future__ import annotations

import abc
import contextlib
import enum
import functools
import time
import typing as t

from ..errors import DuplicateJobId, StoreError
from ..models import ACTIVE_STATUSES, Job, JobStatus, StoredResponse

#: A listing cursor: ``(created_at, id)`` of the last job of the previous page.
Cursor = tuple[float, str]


class NoOwner(enum.Enum):
    """The type of :data:`NO_OWNER`, a sentinel (an enum, so that type
    checkers narrow ``owner is NO_OWNER``)."""

    NO_OWNER = "no owner"

    def __repr__(self) -> str:
        return "NO_OWNER"


#: ``store.list(owner=NO_OWNER)`` lists only the jobs that have no owner:
#: what a caller the owner loader names ``None`` may see.
#:
#: .. versionadded:: 0.1
NO_OWNER: t.Final = NoOwner.NO_OWNER

#: The ``owner`` filter of :meth:`JobStore.list`: ``None`` (every job), an
#: owner's id (that owner's jobs) or :data:`NO_OWNER` (jobs without an owner).
OwnerFilter = t.Union[str, NoOwner, None]

#: What :meth:`JobStore.watching` gives: ``wait(version, timeout)``, as
#: :meth:`JobStore.wait` for the watched job.
WaitForChange = t.Callable[[int, float], t.Optional[Job]]


class JobStore(abc.ABC):
    """Abstract job store.

    Implementations must be safe to share between threads. Those whose
    :attr:`shared_across_processes` is true are also safe to share between
    processes (several gunicorn workers, a Celery worker).
    """

    #: True when a job written by one process is visible to every other.
    shared_across_processes: t.ClassVar[bool] = False

    #: Keep the saved request of a job that ends ``failed`` until the job
    #: expires, is deleted or purged, so that it can be re-run
    #: (:func:`flask_jobify.rerun.rerun`); set from
    #: ``JOBIFY_KEEP_FAILED_REQUESTS``. Requests of jobs that end otherwise
    #: are forgotten as they end.
    keep_failed_requests: bool = False

    def forgets_request(self, job: Job) -> bool:
        """Whether ``job``, which just became final, loses its saved request
        in the step that ended it (see :attr:`keep_failed_requests`)."""
        return not (self.keep_failed_requests and job.status is JobStatus.FAILED)

    @abc.abstractmethod
    def create(self, job: Job) -> None:
        """Insert a new job.

        :raises DuplicateJobId: if a job with this id exists already (a
            :class:`~flask_jobify.errors.StoreError`).
        :raises StoreError: if the store fails.
        """

    @abc.abstractmethod
    def get(self, job_id: str) -> Job | None:
        """Return the job, or ``None`` if it is unknown or has expired.

        Must not slow down as the number of jobs grows (O(1) or O(log n)).
        """

    @abc.abstractmethod
    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        if_status: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
        if_fields: t.Mapping[str, t.Any] | None = None,
    ) -> Job | None:
        """Apply ``changes`` (``Job`` field names to new values) atomically.

        Nothing happens, and ``None`` is returned, if the job is unknown or
        expired, if ``if_status`` is given and the job's status is not one of
        them, or if ``if_fields`` is given and one of its fields differs from
        the job's (``{"attempts": 2}``: a run fences its writes with its
        attempt number). Otherwise ``version`` grows by one; if ``status`` becomes final,
        ``finished_at`` defaults to now and ``expires_at`` becomes
        ``finished_at + result_ttl``; ``result``, if given, is saved in the
        same atomic step; when ``status`` becomes final, a request saved with
        :meth:`save_request` is forgotten in that step too (unless
        :meth:`forgets_request` says otherwise: then it expires with the job). Waiters in
        :meth:`wait` are woken. Returns the job as it is after the change.
        """

    @abc.abstractmethod
    def renew_leases(self, leases: t.Mapping[str, int], until: float) -> set[str]:
        """Set ``lease_until`` to ``until`` on each job of ``leases`` (job id
        to attempt number) that is active and whose ``attempts`` is that
        number; return the ids of the jobs renewed.

        A heartbeat, not a change: ``version`` stays, and waiters are not
        woken. Atomic per job with respect to :meth:`update`. A process
        renews every job it holds in one call, so a store across a network
        should take a round trip or two for all of them, not one per job:
        else a process holding many jobs renews the last ones after their
        lease ran out.
        """

    def renew_lease(self, job_id: str, attempt: int, until: float) -> bool:
        """:meth:`renew_leases` for one job; return whether it was renewed."""
        return job_id in self.renew_leases({job_id: attempt}, until)

    @abc.abstractmethod
    def expired_leases(
        self, now: float | None = None, limit: int = 100, *, app: str | None = None
    ) -> list[Job]:
        """Return up to ``limit`` active jobs whose ``lease_until`` is set and
        not after ``now`` (default: the current time), oldest lease first.
        ``app`` keeps only the jobs of that app (see :func:`of_app`), so that
        an app never recovers another's jobs, however many of them are lost.

        Their process stopped renewing them: it died or hung. Must not read
        finished jobs or jobs without a lease (a Celery backlog), so that it
        costs the same at 100,000 jobs as at 10.
        """

    @abc.abstractmethod
    def save_request(self, job_id: str, data: bytes) -> None:
        """Keep the captured request of an active job, so that another
        process can run the job again after a crash.

        Forgotten when the job becomes final (a ``failed`` one keeps it
        with :attr:`keep_failed_requests`), is deleted or is purged.
        Nothing happens if the job is unknown.
        """

    @abc.abstractmethod
    def load_request(self, job_id: str) -> bytes | None:
        """Return the request saved with :meth:`save_request`, or ``None``."""

    @abc.abstractmethod
    def get_result(self, job_id: str) -> StoredResponse | None:
        """Return the saved response of a job, or ``None``."""

    def get_with_result(self, job_id: str) -> tuple[Job | None, StoredResponse | None]:
        """Return the job and its saved response (``None`` if it has none),
        read together: what the result endpoint needs, in one round trip
        where the store allows. ``(None, None)`` for an unknown or expired
        job."""
        job = self.get(job_id)
        return (None, None) if job is None else (job, self.get_result(job_id))

    @abc.abstractmethod
    def delete(self, job_id: str) -> bool:
        """Forget a job and its result. Return whether it existed."""

    @abc.abstractmethod
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
        """Return up to ``limit`` unexpired jobs, newest first.

        ``app`` keeps only the jobs of that app (see :func:`of_app`). It is
        not indexed: apps that share a store read each other's jobs while
        they list theirs (give each app its own store to avoid that).

        ``after`` is the ``(created_at, id)`` of the last job of the previous
        page: only jobs strictly older (in ``(created_at, id)`` order) are
        returned. ``owner`` keeps only that owner's jobs; :data:`NO_OWNER`
        keeps only jobs without an owner; ``None`` keeps every job.

        Each ``owner`` filter is indexed: a page must not read the jobs the
        filter leaves out, so that listing the 10 jobs of one owner, or the
        10 without one, costs the same next to 100,000 jobs of others as
        next to none.
        """

    def count(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 1000,
        after: Cursor | None = None,
        app: str | None = None,
    ) -> int:
        """How many unexpired jobs :meth:`list` would return with these
        filters, counting up to ``limit``. This default lists them; a store
        may count without reading the records (SQLite does)."""
        return len(self.list(status=status, limit=limit, after=after, app=app))

    @abc.abstractmethod
    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        """Block until the job's ``version`` differs from ``version``, or
        ``timeout`` seconds pass. Return the job as it is then (``None`` if it
        is gone). Returns at once if the version already differs.
        """

    @contextlib.contextmanager
    def watching(self, job_id: str) -> t.Iterator[WaitForChange]:
        """Watch a job from before the caller reads it; yield
        ``wait(version, timeout)``, which is :meth:`wait` for that job::

            with store.watching(job_id) as wait:
                job = store.get(job_id)   # may the caller see it? is it final?
                job = wait(job.version, 30)

        A store that is notified of changes (Redis) starts listening on
        entry, so that ``wait`` need not read the job again before it
        sleeps: no change between the caller's read and the wait can slip
        by. This default is :meth:`wait` itself, which reads first.
        """
        yield functools.partial(self.wait, job_id)

    @abc.abstractmethod
    def purge_expired(self, now: float | None = None) -> int:
        """Forget every job whose ``expires_at`` has passed; return how many."""

    def create_once(self, job: Job) -> Job | None:
        """Insert ``job`` unless a live job has its id: an atomic claim.

        Return ``None`` when ``job`` was inserted, else the job that holds
        the id. Idempotency keys rely on it: their job ids are derived from
        the key, so of concurrent creations (threads or processes) exactly
        one inserts. Built on :meth:`create`, whose duplicate check is
        atomic in every store; a store may override it with one native
        step (``INSERT OR IGNORE``, ``SET NX``).

        :raises StoreError: if the store fails, as :meth:`create`.
        """
        for _ in range(3):
            try:
                self.create(job)
                return None
            except DuplicateJobId:
                existing = self.get(job.id)
                if existing is not None:
                    return existing
                # Expired but not yet swept: sweeping only removes expired
                # jobs, so it cannot remove a job a concurrent claim created.
                self.purge_expired()
        raise StoreError(f"Could not claim the job id {job.id!r}; try again.")

    # -- execution queues (``@jobify.job(queue=..., concurrency=...)``) ----------
    @abc.abstractmethod
    def acquire_slot(
        self, queue: str, job_id: str, attempt: int, limit: int, *, until: float | None,
        alive: t.Collection[str] = (),
    ) -> bool:
        """Take one of the ``limit`` slots of ``queue`` for run number
        ``attempt`` of ``job_id``, atomically across everyone who shares
        the store: ``True`` if the run may start now, ``False`` if it must
        wait (then the job joins the queue's waiting line, in
        ``(created_at, id)`` order, and a slot freed later goes to the
        oldest job waiting). Also ``True``, without a slot, when the job is
        not ``pending`` with ``attempts == attempt - 1`` any more (cancelled,
        taken over): the run finds out as it starts.

        A slot is held while its job is active and leased (see
        :func:`~flask_jobify.stores.slots.holds`): it frees itself when
        the lease of the process holding it runs out (a crash), and is
        given back (:meth:`release_slot`) when its run returns; ``until``
        bounds a slot whose job has no lease (a Celery job about to start,
        a job that ended before its run returned; ``None``: a store one
        process uses).
        A job waits in line while it is ``pending`` and leased, or, without
        a lease, for :data:`~flask_jobify.stores.slots.WAITER_TTL` seconds
        after its last try. ``alive`` names the jobs whose slot the caller's
        process holds: they keep it until released, whatever their job says
        (see :func:`~flask_jobify.stores.slots.grant`).

        :raises StoreError: if the store fails.

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    def release_slot(self, queue: str, job_id: str, attempt: int) -> None:
        """Free the slot of ``queue`` held by run number ``attempt`` of
        ``job_id``, if it holds one (a later run of the job keeps its own).

        :raises StoreError: if the store fails.
        """

    @abc.abstractmethod
    def slot_holders(self, queue: str) -> tuple[str, ...]:
        """The ids of the jobs holding a slot of ``queue`` now, oldest first."""

    @abc.abstractmethod
    def count_active(self, owner: str, *, limit: int, app: str | None = None) -> int:
        """How many ``pending`` or ``running`` jobs ``owner`` has (of the
        app ``app``; see :func:`of_app`), counting up to ``limit``: reads
        that owner's active jobs only, never the finished ones
        (``JOBIFY_MAX_RUNNING_PER_OWNER``).

        :raises StoreError: if the store fails.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The store must not be used afterwards."""


def apply_changes(job: Job, changes: t.Mapping[str, t.Any], now: float | None = None) -> None:
    """Apply ``changes`` to ``job`` in place, as :meth:`JobStore.update` says.

    Shared by the stores so that they derive ``finished_at``, ``expires_at``
    and ``version`` in the same way.
    """
    for name, value in changes.items():
        if not hasattr(job, name):
            raise AttributeError(f"Job has no field {name!r}")
        setattr(job, name, value)
    if "status" in changes and job.status.is_final:
        if job.finished_at is None:
            job.finished_at = time.time() if now is None else now
        job.expires_at = job.finished_at + job.result_ttl
    job.version += 1


def conditions_hold(
    job: Job,
    if_status: t.Iterable[JobStatus] | None,
    if_fields: t.Mapping[str, t.Any] | None = None,
) -> bool:
    """Tell whether ``job`` passes the ``if_status`` and ``if_fields`` conditions
    of :meth:`JobStore.update`."""
    if if_status is not None and job.status not in set(if_status):
        return False
    return not if_fields or all(getattr(job, name) == value for name, value in if_fields.items())


def of_app(job: Job, app: str | None) -> bool:
    """Tell whether ``job`` passes the ``app`` filter of
    :meth:`JobStore.list` and :meth:`JobStore.expired_leases`: ``None``
    keeps every job; a name keeps that app's jobs and those that name no
    app (records written before jobs named their app)."""
    return app is None or job.app is None or job.app == app


def is_expired(job: Job, now: float | None = None) -> bool:
    """Tell whether a finished job has passed its ``expires_at``."""
    return job.expires_at is not None and job.expires_at <= (
        time.time() if now is None else now
    )


__all__ = [
    "ACTIVE_STATUSES",
    "NO_OWNER",
    "Cursor",
    "JobStore",
    "NoOwner",
    "OwnerFilter",
    "WaitForChange",
    "apply_changes",
    "conditions_hold",
    "is_expired",
    "of_app",
]
