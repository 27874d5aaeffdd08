"""A job store in one SQLite file, shared by every process on a machine."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import typing as t
from urllib.parse import unquote, urlsplit

from ..errors import StoreError
from ..models import Job, JobStatus, StoredResponse
from .base import Cursor, JobStore, apply_changes, is_expired, status_allowed

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    operation TEXT NOT NULL,
    owner TEXT,
    created_at REAL NOT NULL,
    expires_at REAL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE INDEX IF NOT EXISTS jobs_expires ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class SQLiteStore(JobStore):
    """Jobs in one SQLite file (WAL mode).

    Safe to share between threads (one connection per thread) and between
    processes on one machine (several gunicorn workers): every write is a
    ``BEGIN IMMEDIATE`` transaction, so compare-and-set updates are atomic
    across processes. A waiter is woken at once by changes made in its own
    process and within ``poll_interval`` seconds by changes made in others.
    A forked child opens its own connections.

    :param path: the database file; its folder is created if needed.
    :param poll_interval: seconds between two reads of a waited-on job.
    :param busy_timeout: seconds a write waits for another writer's lock.
    """

    shared_across_processes = True

    def __init__(self, path: str, *, poll_interval: float = 0.01, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.busy_timeout = busy_timeout
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        db = self._db()
        # executescript commits on its own; every statement is idempotent.
        db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")

    @classmethod
    def from_url(cls, url: str, **kwargs: t.Any) -> SQLiteStore:
        """``sqlite:///relative.db`` (from the working folder) or
        ``sqlite:////absolute/path.db``."""
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.netloc or len(path) < 2:
            raise StoreError(f"Not an SQLite URL: {url!r}; use sqlite:///path/to/jobs.db")
        return cls(path[1:], **kwargs)  # "/rel.db" -> "rel.db", "//abs.db" -> "/abs.db"

    # -- connections -------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours
            self._pid = os.getpid()
            self._local = threading.local()
            self._connections = []
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    class _Transaction:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: t.Any, *args: t.Any) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _write(self) -> SQLiteStore._Transaction:
        return self._Transaction(self._db())

    def _notify(self) -> None:
        with self._lock:
            self._changed.notify_all()

    # -- the contract ------------------------------------------------------
    def _read(self, db: sqlite3.Connection, job_id: str) -> Job | None:
        row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = Job.from_dict(json.loads(row[0]))
        return None if is_expired(job) else job

    def _save(self, db: sqlite3.Connection, job: Job) -> None:
        db.execute(
            "UPDATE jobs SET status = ?, owner = ?, expires_at = ?, version = ?, data = ?"
            " WHERE id = ?",
            (job.status.value, job.owner, job.expires_at, job.version,
             json.dumps(job.to_dict()), job.id),
        )

    def create(self, job: Job) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO jobs (id, status, operation, owner, created_at, expires_at,"
                    " version, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (job.id, job.status.value, job.operation, job.owner, job.created_at,
                     job.expires_at, job.version, json.dumps(job.to_dict())),
                )
        except sqlite3.IntegrityError:
            raise StoreError(f"A job with id {job.id!r} exists already.") from None
        self._notify()

    def get(self, job_id: str) -> Job | None:
        return self._read(self._db(), job_id)

    def update(
        self,
        job_id: str,
        changes: t.Mapping[str, t.Any],
        *,
        only_if: t.Iterable[JobStatus] | None = None,
        result: StoredResponse | None = None,
    ) -> Job | None:
        with self._write() as db:
            job = self._read(db, job_id)
            if job is None or not status_allowed(job, only_if):
                return None
            apply_changes(job, changes)
            self._save(db, job)
            if result is not None:
                db.execute(
                    "INSERT OR REPLACE INTO results (job_id, status, headers, body)"
                    " VALUES (?, ?, ?, ?)",
                    (job_id, result.status, json.dumps(result.headers), result.body),
                )
        self._notify()
        return job

    def get_result(self, job_id: str) -> StoredResponse | None:
        db = self._db()
        if self._read(db, job_id) is None:
            return None
        row = db.execute(
            "SELECT status, headers, body FROM results WHERE job_id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        headers = [(name, value) for name, value in json.loads(row[1])]
        return StoredResponse(row[0], headers, bytes(row[2]))

    def delete(self, job_id: str) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            existed = db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0
        self._notify()
        return existed

    def list(
        self,
        *,
        status: JobStatus | None = None,
        operation: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        after: Cursor | None = None,
    ) -> list[Job]:
        where = ["(expires_at IS NULL OR expires_at > ?)"]
        params: list[t.Any] = [time.time()]
        for column, value in (("status", status and status.value), ("operation", operation),
                              ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        rows = self._db().execute(
            f"SELECT data FROM jobs WHERE {' AND '.join(where)}"  # noqa: S608 - fixed columns
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [Job.from_dict(json.loads(data)) for (data,) in rows]

    def wait(self, job_id: str, version: int, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job.version != version:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            with self._lock:
                self._changed.wait(min(remaining, self.poll_interval))

    def purge_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute(
                "DELETE FROM results WHERE job_id IN"
                " (SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?)",
                (now,),
            )
            count = db.execute(
                "DELETE FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).rowcount
        return count

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()
