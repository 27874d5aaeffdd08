"""The connections of a :class:`~flask_jobify.stores.sqlite.SQLiteStore`
to its file, and the upkeep of its write-ahead log.

:class:`SQLiteFile`, the store's base class, opens one connection per
thread and process, runs write transactions, checkpoints the WAL and gives
freed pages back to the file system. Thread-safe, and safe in a forked
child (see :class:`SQLiteFile`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import typing as t

from ...errors import StoreClosed, StoreError
from .checkpoints import Checkpointer

logger = logging.getLogger("flask_jobify")

#: Bytes the WAL is cut back to each time it starts over after a checkpoint
#: (``PRAGMA journal_size_limit``): a burst may grow it, but not for good.
WAL_SIZE_LIMIT = 8 * 1024 * 1024
#: A WAL past this many bytes after a commit is checkpointed by the writer
#: that saw it: readers that never all pause at once (long-polls) keep
#: SQLite's own checkpoints from starting the WAL over, and it would grow
#: for as long as a burst lasts.
WAL_BURST_LIMIT = 64 * 1024 * 1024
#: Pages a sweep gives back to the file system per transaction (16 MiB).
VACUUM_STEP = 4096
#: Seconds a checkpoint waits for other connections' reads and writes to
#: end; then it gives up until the next sweep, rather than hold its caller.
CHECKPOINT_PATIENCE = 0.25


class Process:
    """What one process owns of a store: a forked child gets its own."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0  # counts changes made here, so no wake-up is missed
        self.local = threading.local()
        # Issue 20: this process's writers queue here, not in SQLite's busy
        # handler (which sleeps 1, 2, 5 ... 100 ms between tries).
        self.writing = threading.Lock()
        self.checkpointer = checkpointer
        #: This process's connections left in a forked child (see :class:`Connection`).
        self.orphans: list[sqlite3.Connection] = []


class Connection:
    """A thread's connection, kept in that thread's local storage: closed
    when the thread ends and its local storage goes, never by another
    thread while its own thread may still use it. (Asking whether a
    thread is alive is no answer: at interpreter exit the main thread is
    already marked stopped while it runs ``atexit`` handlers.)

    In a forked child, where the local storage of the parent's threads
    goes at the fork, the connection is kept in ``orphans`` (the parent's
    :class:`Process`, which the child keeps), never closed: its thread may
    have held its mutex at the fork, and closing it would wait for ever."""

    __slots__ = ("db", "orphans", "pid")

    def __init__(self, db: sqlite3.Connection, orphans: list[sqlite3.Connection]) -> None:
        self.db = db
        self.orphans = orphans
        self.pid = os.getpid()

    def __del__(self) -> None:
        if os.getpid() != self.pid:
            self.orphans.append(self.db)
            return
        # At interpreter exit: nothing to tell, and contextlib may be gone.
        try:  # noqa: SIM105
            self.db.close()
        except Exception:  # noqa: BLE001
            pass


class SQLiteFile:
    """One SQLite file, reached by each thread of each process through a
    connection of its own: the base of
    :class:`~flask_jobify.stores.sqlite.SQLiteStore`, which says what is
    safe across threads and processes.

    A thread's connection is opened at its first call and closed when the
    thread ends. A process forked after using the file (gunicorn
    ``--preload``) opens connections of its own and never touches its
    parent's. Every connection has ``synchronous = NORMAL``,
    ``secure_delete = ON``, ``journal_size_limit =`` :data:`WAL_SIZE_LIMIT`
    and ``wal_autocheckpoint = 0``: each process's
    :class:`~flask_jobify.stores.sqlite.checkpoints.Checkpointer` thread
    copies the WAL into the file soon after a commit, and checkpoints a WAL
    past :data:`WAL_BURST_LIMIT` with truncation. The threads of a process
    take turns to write on a lock of the process (waiting at most
    ``busy_timeout``), so that only writers of different processes meet
    in SQLite's busy handler, which sleeps up to 100 ms between two tries.

    ``synchronous = NORMAL`` in WAL mode: a commit does not wait for
    ``fsync``; the WAL is synced at each checkpoint. A power cut may lose
    the last commits before it, never corrupts the file; a process that
    dies loses nothing committed.

    :param path: the database file, absolute.
    :param busy_timeout: seconds a write waits for another writer's lock
        before :class:`~flask_jobify.errors.StoreError` is raised.
    """

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self._wal = self.path + "-wal"
        self.busy_timeout = busy_timeout
        self._processes: dict[int, Process] = {}
        self._closed = False

    def _process(self) -> Process:
        pid = os.getpid()
        process = self._processes.get(pid)
        if process is None:  # first call here, maybe in a forked child
            # setdefault is atomic: threads racing here share one state. The
            # parent's state stays referenced, so its connections are never
            # closed (nor garbage-collected) in the child.
            process = self._processes.setdefault(pid, Process(Checkpointer(
                self, SQLiteFile._passive_checkpoint, f"jobify-sqlite-checkpoint-{pid}")))
        return process

    def _connection(self) -> sqlite3.Connection:
        process = self._process()
        held: Connection | None = getattr(process.local, "db", None)
        if self._closed:  # close() left this thread's connection to this thread
            if held is not None:
                del process.local.db
                held.db.close()
            raise StoreClosed(f"SQLite job store {self.path} is closed.")
        if held is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA secure_delete = ON")
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            db.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job
            held = process.local.db = Connection(db, process.orphans)
        return held.db

    @contextlib.contextmanager
    def _errors(self) -> t.Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite job store {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self) -> t.Iterator[sqlite3.Connection]:
        """This thread's connection, with this process's write lock held
        (see :class:`Process`); the :class:`Checkpointer` is told after."""
        process = self._process()
        if not process.writing.acquire(timeout=self.busy_timeout):
            raise StoreError(f"SQLite job store {self.path}: this process's other writers"
                             f" held it for more than {self.busy_timeout} s.")
        try:
            with self._errors():
                yield self._connection()
        finally:
            process.writing.release()
        process.checkpointer.committed()

    @contextlib.contextmanager
    def _transaction(self) -> t.Iterator[sqlite3.Connection]:
        """A write transaction, atomic across processes: ``BEGIN IMMEDIATE``
        takes the write lock before the first read."""
        with self._writing() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            finally:
                if db.in_transaction:  # an exception, or COMMIT failed
                    db.execute("ROLLBACK")

    def _write_one(self, sql: str, *params: t.Any) -> int:
        """One statement, a transaction of its own (SQLite's autocommit):
        three calls into SQLite fewer than :meth:`_transaction`. Return the
        rows it changed."""
        with self._writing() as db:
            return int(db.execute(sql, params).rowcount)

    def _bound_wal(self) -> None:
        """Checkpoint a WAL past :data:`WAL_BURST_LIMIT`; a ``stat`` otherwise
        (after a checkpoint of the :class:`Checkpointer`, between two steps
        of a vacuum)."""
        with contextlib.suppress(OSError):
            if os.path.getsize(self._wal) > WAL_BURST_LIMIT:
                self._checkpoint()

    def _fetch(self, sql: str, *params: t.Any) -> list[t.Any]:
        with self._errors():
            return self._connection().execute(sql, params).fetchall()

    def _notify(self) -> None:
        process = self._process()
        with process.lock:
            process.generation += 1
            process.changed.notify_all()

    def _checkpoint(self) -> bool:
        """Copy the WAL into the file and truncate it to nothing, waiting up
        to :data:`CHECKPOINT_PATIENCE` for other connections. Return whether
        it was done; never raise (the caller's write is committed already)."""
        db = self._connection()
        try:
            db.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_PATIENCE * 1000)}")
            try:
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            logger.debug("SQLite job store %s: checkpoint failed: %s", self.path, exc)
            return False
        return not busy

    def _passive_checkpoint(self) -> None:
        """Copy what the WAL holds into the file as far as no reader needs
        it, without the write lock (the :class:`Checkpointer`'s call)."""
        with contextlib.suppress(sqlite3.Error, StoreClosed):
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._bound_wal()

    def _vacuum(self) -> None:
        """Give the file's free pages back to the file system,
        :data:`VACUUM_STEP` pages per transaction: each freed page goes
        through the WAL, which :meth:`_bound_wal` checkpoints between two.
        Scripts, because ``incremental_vacuum`` frees one page per step and
        a script steps it to the end."""
        db = self._connection()
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return  # a file left without auto_vacuum (see schema.use_incremental_vacuum)
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        while free:
            try:
                db.executescript(
                    f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({VACUUM_STEP}); COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self._bound_wal()
            left = db.execute("PRAGMA freelist_count").fetchone()[0]
            free = left if left < free else 0  # none freed: another process is at it

    def close(self) -> None:
        """Close the store: this thread's connection now; another thread's
        when that thread next uses the store (which raises
        :class:`~flask_jobify.errors.StoreClosed`) or ends. A connection is
        never closed under a thread that may be using it (SQLite may crash
        the process). A parent's connections stay open in a forked child."""
        self._closed = True
        process = self._processes.get(os.getpid())
        if process is not None:
            process.checkpointer.close()
        held: Connection | None = getattr(process.local, "db", None) if process else None
        if process is not None and held is not None:
            del process.local.db
            held.db.close()


__all__ = [
    "CHECKPOINT_PATIENCE",
    "VACUUM_STEP",
    "WAL_BURST_LIMIT",
    "WAL_SIZE_LIMIT",
    "Connection",
    "Process",
    "SQLiteFile",
]
