"""The tables of a :class:`~flask_jobify.stores.sqlite.SQLiteStore` and
how an older file is brought up to date.

Functions of a connection, run when a store opens its file: thread-safe as
far as SQLite is, and safe when several processes open the file at once
(each step takes the lock it needs, and finds done what another did).
"""
from __future__ import annotations

import logging
import sqlite3
import time

from ...errors import StoreError

logger = logging.getLogger("flask_jobify")

#: A file made without ``auto_vacuum`` (before Flask-Jobify set it) is
#: converted with ``VACUUM`` on opening when it is at most this many bytes;
#: a larger one is left as it is, with a warning, as a ``VACUUM`` copies it.
VACUUM_ON_OPEN_LIMIT = 32 * 1024 * 1024

#: Layout of the tables, kept in the file's ``PRAGMA user_version``. Version 2
#: added ``jobs.lease_until``, its index and the ``requests`` table; version 3
#: the ``slots`` table (execution queues) and the index ``jobs_owner_active``.
SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, operation TEXT NOT NULL, owner TEXT,
    created_at REAL NOT NULL, expires_at REAL, version INTEGER NOT NULL, data TEXT NOT NULL,
    lease_until REAL
);
-- Listing: newest first by (created_at, id), for everyone or for one owner
-- (or for none: "owner IS NULL" is a lookup in jobs_owner too).
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_expires ON jobs (expires_at) WHERE expires_at IS NOT NULL;
-- Lost jobs: only active jobs held by a process have a lease_until here.
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_until) WHERE lease_until IS NOT NULL;
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY, status INTEGER NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (job_id TEXT PRIMARY KEY, data BLOB NOT NULL);
-- Execution queues: a row per job holding a slot (holding = 1) or waiting for
-- one (holding = 0), in line by (created_at, job_id), as stores/slots.py says.
CREATE TABLE IF NOT EXISTS slots (
    queue TEXT NOT NULL, job_id TEXT NOT NULL, holding INTEGER NOT NULL,
    attempt INTEGER NOT NULL, created_at REAL NOT NULL, until REAL,
    PRIMARY KEY (queue, job_id)
);
CREATE INDEX IF NOT EXISTS slots_line ON slots (queue, holding, created_at, job_id);
-- JOBIFY_MAX_RUNNING_PER_OWNER: an owner's active jobs, without its finished ones.
CREATE INDEX IF NOT EXISTS jobs_owner_active ON jobs (owner) WHERE status IN ('pending', 'running')
"""


def use_wal(db: sqlite3.Connection, path: str, busy_timeout: float) -> None:
    """Put the file in WAL mode, and a file without tables in
    ``auto_vacuum = INCREMENTAL`` (an older file is converted by
    :func:`use_incremental_vacuum`).

    :raises sqlite3.Error: if another process holds the file locked for
        more than ``busy_timeout`` seconds.
    :raises StoreError: if the file cannot use WAL.
    """
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    # WAL is a property of the file. Switching takes an exclusive lock
    # without waiting for it, so processes starting at once retry.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    if mode.lower() != "wal":
        raise StoreError(f"SQLite job store {path}: cannot use WAL (mode {mode!r}).")


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Create the tables, or bring an older file's to :data:`SCHEMA_VERSION`.
    Run in a write transaction: of processes opening the file at once, the
    first migrates and the others find it done.

    :raises StoreError: if the file's schema is newer than this version's.
    """
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise StoreError(f"SQLite job store {path} has schema {found}, newer than"
                         f" this Flask-Jobify's {SCHEMA_VERSION}: upgrade Flask-Jobify.")
    # Version 1 to 2.
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if columns and "lease_until" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN lease_until REAL")
    for statement in _SCHEMA.split(";"):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def use_incremental_vacuum(db: sqlite3.Connection, path: str) -> bool:
    """Convert a file made without ``auto_vacuum``, if it is small enough
    to copy at once (:data:`VACUUM_ON_OPEN_LIMIT`); else warn. Return
    whether it was converted (its WAL then holds a copy of the file: the
    caller checkpoints it)."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 0:
        return False
    size = (db.execute("PRAGMA page_count").fetchone()[0]
            * db.execute("PRAGMA page_size").fetchone()[0])
    if size > VACUUM_ON_OPEN_LIMIT:
        logger.warning(
            "SQLite job store %s was made without auto_vacuum: it will not shrink"
            " after purges. With the app stopped, run: sqlite3 %s"
            " 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'", path, path)
        return False
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("VACUUM")  # takes the write lock; another process may do it too
    return True


__all__ = [
    "SCHEMA_VERSION",
    "VACUUM_ON_OPEN_LIMIT",
    "migrate",
    "use_incremental_vacuum",
    "use_wal",
]
