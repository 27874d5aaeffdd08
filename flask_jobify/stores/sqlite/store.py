"""The SQLite job store: its queries.

:class:`SQLiteStore` is thread-safe and safe across the processes of one
machine (see the class). Its connections and the upkeep of the WAL are in
:mod:`.connections`, its tables in :mod:`.schema`.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import typing as t
from urllib.parse import unquote, urlsplit

from ...errors import DuplicateJobId, StoreError
from ...models import Job, JobStatus, StoredResponse
from ..base import (
    NO_OWNER,
    Cursor,
    JobStore,
    OwnerFilter,
    apply_changes,
    conditions_hold,
    is_expired,
)
from .schema import migrate, use_incremental_vacuum, use_wal
from .slots import SQLiteSlots

#: Expired jobs deleted per transaction by a sweep (SQLite's default limit
#: of bound parameters is 32,766).
PURGE_BATCH = 500

#: SQL twin of :func:`~flask_jobify.stores.base.is_expired`, for listing and purging.
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_GET = "SELECT data FROM jobs WHERE id = ?"
_INSERT = ("INSERT INTO jobs (id, status, operation, owner, created_at, expires_at, version, data,"
           " lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_ACTIVE = "status IN ('pending', 'running')"
#: SQL twin of :func:`~flask_jobify.stores.base.of_app`; takes the app twice.
_OF_APP = "(? IS NULL OR json_extract(data, '$.app') IS NULL OR json_extract(data, '$.app') = ?)"


def _row(job: Job) -> tuple[t.Any, ...]:
    """The columns of ``job``, in :data:`_INSERT`'s order. A final job has no
    lease in its column, so that :meth:`SQLiteStore.expired_leases` never sees it."""
    return (job.id, job.status.value, job.operation, job.owner, job.created_at,
            job.expires_at, job.version, json.dumps(job.to_dict()),
            None if job.is_final else job.lease_until)


def _live(rows: list[t.Any]) -> Job | None:
    """The job in the rows of :data:`_GET`, unless there is none or it has expired."""
    job = Job.from_dict(json.loads(rows[0][0])) if rows else None
    return None if job is None or is_expired(job) else job


def _forget(db: sqlite3.Connection, job_id: str) -> tuple[bool, bool]:
    """Delete a job, its result and its request; tell whether the job
    existed and whether it had a saved request."""
    db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
    had_request = db.execute("DELETE FROM requests WHERE job_id = ?", (job_id,)).rowcount > 0
    return db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0, had_request


class SQLiteStore(SQLiteSlots, JobStore):
    """Jobs in one SQLite file in WAL mode, shared by the processes of one machine.

    Safe to share between threads: each thread uses its own connection,
    opened at its first call and closed when the thread ends. Safe to share
    between processes on the same machine, such as gunicorn workers, the file being on a local disk:
    every write is one ``BEGIN IMMEDIATE`` transaction, which takes the
    file's write lock before reading, so a compare-and-set (``if_status``) has
    exactly one winner among all processes, and a committed job is visible
    to every process at once. A process forked after using the store (gunicorn
    ``--preload``) opens connections of its own and never touches its
    parent's. Not safe on a network file system, where SQLite's locks do not
    hold.

    :meth:`wait` wakes at once for changes made in its own process and
    within ``poll_interval`` seconds for changes made in another, since
    SQLite cannot notify across processes.

    What stays on disk: the file uses ``auto_vacuum = INCREMENTAL`` and
    every connection ``secure_delete = ON`` (deleted rows are overwritten
    with zeros) and ``journal_size_limit =`` :data:`WAL_SIZE_LIMIT`; a
    thread of each process checkpoints the WAL soon after its commits (not
    the committing request), truncating it once past :data:`WAL_BURST_LIMIT`.
    :meth:`purge_expired` (the sweep) returns the pages it freed to the
    file system (``PRAGMA incremental_vacuum``) and checkpoints the WAL
    into the file, truncating it to nothing (``wal_checkpoint(TRUNCATE)``).
    A job that ends, or is deleted, with a saved request (which may hold
    credentials) is checkpointed at once as well, so that no copy of the
    request stays in the WAL. A checkpoint waits at most
    :data:`CHECKPOINT_PATIENCE` for other connections; if one still reads
    or writes, the next sweep does it.

    :param path: the database file, relative to the working folder when the
        store is created; its folder is created if needed.
    :param poll_interval: seconds between two reads of a waited-on job.
    :param busy_timeout: seconds a write waits for another writer's lock
        before :class:`~flask_jobify.errors.StoreError` is raised.
    """

    shared_across_processes = True

    def __init__(
        self, path: str, *, poll_interval: float = 0.01, busy_timeout: float = 30.0
    ) -> None:
        if not path or path == ":memory:" or path.startswith("file:"):
            raise StoreError(f"SQLiteStore needs a file path, not {path!r} (use memory://).")
        super().__init__(os.path.abspath(path), busy_timeout)
        self.poll_interval = poll_interval
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with self._errors():
            self._create_schema()

    @classmethod
    def from_url(cls, url: str, **kwargs: t.Any) -> SQLiteStore:
        """``sqlite:///relative/path.db`` (from the working folder) or
        ``sqlite:////absolute/path.db``; ``kwargs`` go to the constructor."""
        parts = urlsplit(url)
        path = unquote(parts.path)[1:]  # "/rel.db" -> "rel.db", "//abs.db" -> "/abs.db"
        if parts.scheme != "sqlite" or parts.netloc or not path:
            raise StoreError(f"Not an SQLite URL: {url!r}; use sqlite:///path/to/jobs.db")
        return cls(path, **kwargs)

    def _create_schema(self) -> None:
        use_wal(self._connection(), self.path, self.busy_timeout)
        with self._transaction() as db:
            migrate(db, self.path)
        if use_incremental_vacuum(db, self.path):
            self._checkpoint()

    # -- the contract --------------------------------------------------------------
    def create(self, job: Job) -> None:
        """One ``INSERT``, its own transaction."""
        try:
            self._write_one(_INSERT, *_row(job))
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise DuplicateJobId(f"A job with id {job.id!r} exists already.") from None
            raise

    def create_once(self, job: Job) -> Job | None:
        """One transaction: return the live job holding the id, or replace an
        expired one not yet purged by ``job``."""
        with self._transaction() as db:
            existing = _live(db.execute(_GET, (job.id,)).fetchall())
            if existing is not None:
                return existing
            _forget(db, job.id)  # an expired job: its request went when it ended
            db.execute(_INSERT, _row(job))
        return None

    def get(self, job_id: str) -> Job | None:
        return _live(self._fetch(_GET, job_id))

    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        if_status: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
        if_fields: t.Mapping[str, t.Any] | None = None,
    ) -> Job | None:
        """One transaction. When the job ends with a saved request, the
        request's row is zeroed and the WAL checkpointed (see the class)."""
        had_request = False
        with self._transaction() as db:
            job = _live(db.execute(_GET, (job_id,)).fetchall())
            if job is None or not conditions_hold(job, if_status, if_fields):
                return None
            apply_changes(job, changes)
            db.execute("UPDATE jobs SET status = ?, operation = ?, owner = ?, created_at = ?,"
                       " expires_at = ?, version = ?, data = ?, lease_until = ? WHERE id = ?",
                       (*_row(job)[1:], job_id))
            if result is not None:
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                           (job_id, result.status, result.head_json(), result.body))
            if job.is_final and self.forgets_request(job):
                had_request = db.execute(
                    "DELETE FROM requests WHERE job_id = ?", (job_id,)).rowcount > 0
        self._notify()
        if had_request:
            self._checkpoint()
        return job

    def renew_leases(self, leases: t.Mapping[str, int], until: float) -> set[str]:
        """One transaction: an ``UPDATE`` of the column and of the record
        per job, which keeps its ``version``; waiters are not woken."""
        until, now, renewed = float(until), time.time(), set()
        with self._transaction() as db:
            for job_id, attempt in leases.items():
                # json(?) of the repr keeps every digit; json_set of a REAL keeps 15.
                if db.execute(
                    "UPDATE jobs SET lease_until = ?,"
                    " data = json_set(data, '$.lease_until', json(?))"
                    f" WHERE id = ? AND {_ACTIVE} AND json_extract(data, '$.attempts') = ?"
                    f" AND {_LIVE}", (until, json.dumps(until), job_id, attempt, now),
                ).rowcount:
                    renewed.add(job_id)
        return renewed

    def expired_leases(
        self, now: float | None = None, limit: int = 100, *, app: str | None = None
    ) -> list[Job]:
        now = time.time() if now is None else now
        # Walks the partial index jobs_leases, which holds active leased jobs only.
        rows = self._fetch("SELECT data FROM jobs WHERE lease_until IS NOT NULL"
                           f" AND lease_until <= ? AND {_ACTIVE} AND {_OF_APP}"
                           " ORDER BY lease_until LIMIT ?", now, app, app, limit)
        return [Job.from_dict(json.loads(data)) for (data,) in rows]

    def save_request(self, job_id: str, data: bytes) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO requests (job_id, data) SELECT id, ? FROM jobs"
                       f" WHERE id = ? AND {_ACTIVE} AND {_LIVE}",
                       (bytes(data), job_id, time.time()))

    def load_request(self, job_id: str) -> bytes | None:
        rows = self._fetch("SELECT requests.data FROM requests JOIN jobs ON jobs.id = job_id"
                           f" WHERE job_id = ? AND {_LIVE}", job_id, time.time())
        return bytes(rows[0][0]) if rows else None

    def get_result(self, job_id: str) -> StoredResponse | None:
        return self.get_with_result(job_id)[1]

    def get_with_result(self, job_id: str) -> tuple[Job | None, StoredResponse | None]:
        """One ``SELECT`` of the job, joined with its result."""
        rows = self._fetch("SELECT data, results.status, headers, body FROM jobs LEFT JOIN"
                           f" results ON job_id = id WHERE id = ? AND {_LIVE}",
                           job_id, time.time())
        if not rows:
            return None, None
        data, status, headers, body = rows[0]
        job = Job.from_dict(json.loads(data))
        if status is None:
            return job, None
        return job, StoredResponse.from_parts(status, headers, body)

    def delete(self, job_id: str) -> bool:
        with self._transaction() as db:
            existed, had_request = _forget(db, job_id)
        self._notify()
        if had_request:
            self._checkpoint()
        return existed

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
        """One ``SELECT``. With an ``owner`` filter it walks the index
        ``jobs_owner`` (``owner IS NULL`` for :data:`NO_OWNER` is a lookup in
        it too), whose rows are in listing order: no sort, and no row of
        another owner read."""
        where, params = _conditions(status, operation, owner, after, app)
        rows = self._fetch(f"SELECT data FROM jobs WHERE {' AND '.join(where)}"
                           " ORDER BY created_at DESC, id DESC LIMIT ?", *params, limit)
        return [Job.from_dict(json.loads(data)) for (data,) in rows]

    def count(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 1000,
        after: Cursor | None = None,
        app: str | None = None,
    ) -> int:
        """One ``SELECT COUNT`` over at most ``limit`` index rows; no record
        is read or decoded."""
        where, params = _conditions(status, None, None, after, app)
        rows = self._fetch(f"SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE {' AND '.join(where)}"
                           " LIMIT ?)", *params, limit)
        return int(rows[0][0])

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        process = self._process()
        deadline = time.monotonic() + timeout
        while True:
            with process.lock:
                seen = process.generation
            # A primary-key read of one column; the whole job only at the end.
            rows = self._fetch(f"SELECT version FROM jobs WHERE id = ? AND {_LIVE}",
                               job_id, time.time())
            remaining = deadline - time.monotonic()
            if not rows or rows[0][0] != version or remaining <= 0:
                return self.get(job_id)
            with process.lock:
                if process.generation == seen:  # else a change came in meanwhile
                    process.changed.wait(min(remaining, self.poll_interval))

    def purge_expired(self, now: float | None = None) -> int:
        """Delete the expired jobs, :data:`PURGE_BATCH` per transaction (so
        other writers get their turn, and the WAL a checkpoint between two);
        then give the freed pages back (``incremental_vacuum``) and
        checkpoint the WAL, truncating it (see the class): a sweep keeps the
        file and its WAL at the size of the live jobs."""
        now = time.time() if now is None else now
        purged = 0
        while True:
            with self._transaction() as db:
                ids = [job_id for (job_id,) in db.execute(
                    "SELECT id FROM jobs WHERE expires_at <= ? LIMIT ?", (now, PURGE_BATCH))]
                marks = ", ".join("?" * len(ids))
                for table in ("results", "requests"):
                    db.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", ids)
                db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
            purged += len(ids)
            if len(ids) < PURGE_BATCH:
                break
        if purged:
            self._notify()
        with self._errors():
            self._vacuum()
        self._checkpoint()
        return purged


def _conditions(
    status: JobStatus | None, operation: str | None, owner: OwnerFilter,
    after: Cursor | None, app: str | None,
) -> tuple[list[str], list[t.Any]]:
    """The ``WHERE`` terms and parameters of a listing (see :meth:`SQLiteStore.list`)."""
    where: list[str] = [_LIVE, _OF_APP]
    params: list[t.Any] = [time.time(), app, app]
    filters = (("status", status and status.value), ("operation", operation),
               ("owner", None if owner is NO_OWNER else owner))
    for column, value in filters:
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if owner is NO_OWNER:
        where.append("owner IS NULL")
    if after is not None:
        # Strictly older in (created_at, id) order, as a range the index can seek.
        where.append("created_at <= ? AND (created_at < ? OR id < ?)")
        params += [after[0], after[0], after[1]]
    return where, params


__all__ = ["PURGE_BATCH", "SQLiteStore"]
