"""The execution queues of a :class:`~flask_jobify.stores.sqlite.SQLiteStore`:
its ``slots`` table (see :mod:`flask_jobify.stores.slots` for the rules),
and the count of an owner's active jobs.

:class:`SQLiteSlots` is a base of the store: each acquisition is one
``BEGIN IMMEDIATE`` transaction, so of every process sharing the file
exactly one takes a free slot. Thread-safe as the store is.
"""
from __future__ import annotations

import sqlite3
import time
import typing as t

from ...models import JobStatus
from .. import slots
from .connections import SQLiteFile

__all__ = ["SQLiteSlots"]

#: A queue's rows with what their jobs' columns say (``NULL`` for a gone job;
#: ``jobs.lease_until`` is ``NULL`` for a finished one).
_ROWS = ("SELECT s.job_id, s.created_at, s.until, j.status, j.lease_until, s.attempt"
         " FROM slots s LEFT JOIN jobs j ON j.id = s.job_id WHERE s.queue = ? AND s.holding = ?")
_JOB = ("SELECT status, created_at, json_extract(data, '$.attempts') FROM jobs"
        " WHERE id = ?")


def _slot(row: t.Sequence[t.Any]) -> slots.Slot:
    return slots.Slot(row[0], row[1], row[2], row[3], row[4])


class SQLiteSlots(SQLiteFile):
    """Slots and waiting lines in the ``slots`` table (see the module)."""

    def acquire_slot(
        self, queue: str, job_id: str, attempt: int, limit: int, *, until: float | None,
        alive: t.Collection[str] = (),
    ) -> bool:
        """One transaction, which reads the holders and the waiters ahead of
        the job (through the index ``slots_line``), and drops the rows that
        no longer count."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(_JOB, (job_id,)).fetchone()
            if row is None or row[0] != JobStatus.PENDING.value or row[2] != attempt - 1:
                return True
            if db.execute("UPDATE slots SET attempt = ?, until = ? WHERE queue = ? AND job_id = ?"
                          " AND holding = 1", (attempt, until, queue, job_id)).rowcount:
                return True  # a run of the job holds it already: a retry
            db.execute("INSERT OR REPLACE INTO slots VALUES (?, ?, 0, ?, ?, ?)",
                       (queue, job_id, attempt, row[1], now + slots.WAITER_TTL))
            holders = [_slot(held) for held in db.execute(_ROWS, (queue, 1)).fetchall()]
            granted, stale = self._grant(db, queue, job_id, limit, holders, now, alive)
            db.executemany("DELETE FROM slots WHERE queue = ? AND job_id = ?",
                           [(queue, gone) for gone in stale])
            if granted:
                db.execute("UPDATE slots SET holding = 1, attempt = ?, until = ?"
                           " WHERE queue = ? AND job_id = ?", (attempt, until, queue, job_id))
        return granted

    @staticmethod
    def _grant(db: sqlite3.Connection, queue: str, job_id: str, limit: int,
               holders: list[slots.Slot], now: float,
               alive: t.Collection[str]) -> tuple[bool, list[str]]:
        """:func:`~flask_jobify.stores.slots.grant`, reading the waiters a
        hundred at a time, oldest first, as far as it needs."""
        cursor = db.execute(_ROWS + " ORDER BY s.created_at, s.job_id", (queue, 0))

        def waiters() -> t.Iterator[slots.Slot]:
            while batch := cursor.fetchmany(100):
                yield from map(_slot, batch)

        try:
            return slots.grant(job_id, limit, holders, waiters(), now, alive)
        finally:
            cursor.close()

    def release_slot(self, queue: str, job_id: str, attempt: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM slots WHERE queue = ? AND job_id = ? AND holding = 1"
                       " AND attempt = ?", (queue, job_id, attempt))

    def slot_holders(self, queue: str) -> tuple[str, ...]:
        now = time.time()
        rows = self._fetch(_ROWS + " ORDER BY s.created_at, s.job_id", queue, 1)
        return tuple(row[0] for row in rows if slots.holds(row[3], row[4], row[2], now))

    def count_active(self, owner: str, *, limit: int, app: str | None = None) -> int:
        """One ``SELECT`` on the partial index ``jobs_owner_active``, which
        holds active jobs only."""
        rows = self._fetch(
            "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = ?"
            " AND status IN ('pending', 'running') AND (? IS NULL OR"
            " json_extract(data, '$.app') IS NULL OR json_extract(data, '$.app') = ?)"
            " LIMIT ?)", owner, app, app, limit)
        return int(rows[0][0])
