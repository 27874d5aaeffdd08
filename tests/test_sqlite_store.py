"""SQLite store: what only a shared file promises (processes, reopening, indexes).

The contract itself is in ``test_stores.py``. Helpers that run in other
processes are module-level functions, so that the ``spawn`` start method can
import them.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
import time
import typing as t
import uuid

import pytest

from flask_jobify.errors import StoreError
from flask_jobify.models import Job, JobProgress, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores import NO_OWNER, store_from_url
from flask_jobify.stores import sqlite as sqlite_store
from flask_jobify.stores.sqlite import SCHEMA_VERSION, SQLiteStore, connections, schema
from flask_jobify.stores.sqlite import store as store_module

WORKERS = 4
JOBS_PER_WORKER = 250
CONTESTED = 100
#: Generous: a spawned interpreter imports Flask before it starts.
LONG = 60


def _job(**fields: t.Any) -> Job:
    fields.setdefault("id", new_job_id())
    return Job(operation="op", method="POST", path="/p", **fields)


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "jobs.db")


@pytest.fixture
def store(path) -> t.Iterator[SQLiteStore]:
    store = SQLiteStore(path)
    yield store
    store.close()


# -- several processes on one file ---------------------------------------------------
def _create_and_race(path: str, worker: int, contested: list[str], start, queue) -> None:
    store = SQLiteStore(path)
    start.wait(LONG)  # all together, for as much contention as possible
    created, won = [], []
    for n in range(JOBS_PER_WORKER):
        job = _job(owner=f"worker{worker}")
        store.create(job)
        created.append(job.id)
        if n < len(contested):  # interleave the races with the creations
            job_id = contested[n]
            if store.update(job_id, {"status": JobStatus.RUNNING, "attempts": worker},
                            if_status=[JobStatus.PENDING]):
                won.append(job_id)
            store.update(job_id, {"progress": JobProgress(worker)})  # no condition: never lost
    queue.put((worker, created, won))
    store.close()


def test_processes_lose_no_job_and_each_race_has_one_winner(store, path) -> None:
    contested = [_job() for _ in range(CONTESTED)]
    for job in contested:
        store.create(job)
    ctx = multiprocessing.get_context("spawn")
    start, queue = ctx.Barrier(WORKERS), ctx.Queue()
    ids = [job.id for job in contested]
    processes = [ctx.Process(target=_create_and_race, args=(path, n, ids, start, queue))
                 for n in range(WORKERS)]
    for process in processes:
        process.start()
    reports = [queue.get(timeout=LONG) for _ in processes]
    for process in processes:
        process.join(LONG)
        assert process.exitcode == 0

    created = [job_id for _, ids_, _ in reports for job_id in ids_]
    assert len(set(created)) == WORKERS * JOBS_PER_WORKER
    assert all(store.get(job_id) is not None for job_id in created)
    listed = store.list(limit=10 * WORKERS * JOBS_PER_WORKER)
    assert len(listed) == WORKERS * JOBS_PER_WORKER + CONTESTED
    assert len(store.list(owner="worker0", limit=1000)) == JOBS_PER_WORKER

    winner_of: dict[str, int] = {}
    for worker, _, won in reports:
        for job_id in won:
            assert job_id not in winner_of, "two processes won the same compare-and-set"
            winner_of[job_id] = worker
    assert set(winner_of) == set(ids)
    for job_id, worker in winner_of.items():
        job = store.get(job_id)
        assert job.status is JobStatus.RUNNING
        assert job.attempts == worker
        assert job.version == 1 + WORKERS  # one CAS and one progress update per worker


def _update_when_told(path: str, job_id: str, go, done) -> None:
    store = SQLiteStore(path)
    if go.wait(LONG):
        updating_at = time.time()
        store.update(job_id, {"status": JobStatus.SUCCEEDED},
                     result=StoredResponse(200, [("Content-Type", "text/plain")], b"done"))
        done.put(updating_at)
    store.close()


def test_wait_wakes_when_another_process_updates(store, path, monkeypatch) -> None:
    job = _job()
    store.create(job)
    ctx = multiprocessing.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    process = ctx.Process(target=_update_when_told, args=(path, job.id, go, done))
    process.start()
    # Let the other process update only once wait() has read the job unchanged,
    # so that wait() must notice a change it was not notified of.
    fetch = store._fetch

    def fetch_then_go(*args: t.Any) -> t.Any:
        rows = fetch(*args)
        go.set()
        return rows

    monkeypatch.setattr(store, "_fetch", fetch_then_go)
    got = store.wait(job.id, job.version, timeout=LONG)
    returned_at = time.time()
    updating_at = done.get(timeout=LONG)
    process.join(LONG)
    assert process.exitcode == 0
    assert got is not None and got.status is JobStatus.SUCCEEDED
    # Returned after the update, by a poll soon after it: not by the timeout.
    assert updating_at <= returned_at < updating_at + 2
    assert store.get_result(job.id).body == b"done"


def test_wait_wakes_for_a_change_in_this_process_without_polling(path, monkeypatch) -> None:
    store = SQLiteStore(path, poll_interval=LONG)  # only a notification ends the wait early
    job = _job()
    store.create(job)
    fetch = store._fetch
    changer = threading.Thread(target=store.update, args=(job.id, {"attempts": 1}))

    def fetch_then_change(*args: t.Any) -> t.Any:
        rows = fetch(*args)
        if changer.ident is None:  # once: on the first read
            changer.start()
        return rows

    monkeypatch.setattr(store, "_fetch", fetch_then_change)
    started = time.monotonic()
    got = store.wait(job.id, job.version, timeout=LONG)
    waited = time.monotonic() - started
    changer.join()
    assert got.attempts == 1
    assert waited < 2  # woken by the notification, not by a poll after LONG
    store.close()


def _use_inherited_store(store: SQLiteStore, job_id: str) -> None:
    job = _job(id=job_id)
    store.create(job)
    assert store.update(job_id, {"status": JobStatus.RUNNING}, if_status=[JobStatus.PENDING])
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connections(store) -> None:
    before = _job()
    store.create(before)  # the parent has a connection open before forking
    job_id = new_job_id()
    process = multiprocessing.get_context("fork").Process(
        target=_use_inherited_store, args=(store, job_id))
    process.start()
    process.join(LONG)
    assert process.exitcode == 0
    assert store.get(job_id).status is JobStatus.RUNNING  # the parent's connection still works
    assert store.get(before.id) == before


# -- the file ----------------------------------------------------------------------
def test_reopened_file_keeps_jobs_and_results(path) -> None:
    first = SQLiteStore(path)
    job = _job(owner="alice", meta={"k": [1, 2]})
    first.create(job)
    done = first.update(job.id, {"status": JobStatus.SUCCEEDED},
                        result=StoredResponse(201, [("X-A", "1")], b"\x00\xff"))
    first.close()
    again = store_from_url(f"sqlite:///{path}")
    assert again.get(job.id) == done
    assert again.get_result(job.id) == StoredResponse(201, [("X-A", "1")], b"\x00\xff")
    assert [j.id for j in again.list(owner="alice")] == [job.id]
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="upgrade"):
        SQLiteStore(path)


def test_from_url_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SQLiteStore.from_url("sqlite:///rel/sub/jobs.db")
    assert relative.path == str(tmp_path / "rel" / "sub" / "jobs.db")
    assert os.path.exists(relative.path)
    absolute = SQLiteStore.from_url(f"sqlite:///{tmp_path}/abs/jobs.db")  # four slashes
    assert absolute.path == str(tmp_path / "abs" / "jobs.db")
    relative.close()
    absolute.close()
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/jobs.db", "sqlite:///:memory:"):
        with pytest.raises(StoreError):
            SQLiteStore.from_url(bad)


def test_create_once_claims_an_id_and_replaces_an_expired_job(store) -> None:
    job = _job()
    assert store.create_once(job) is None
    assert store.create_once(_job(id=job.id)) == job
    store.update(job.id, {"status": JobStatus.SUCCEEDED, "result_ttl": 0.0},
                 result=StoredResponse(200, [], b"old"))  # expired at once, not yet purged
    again = _job(id=job.id)
    assert store.create_once(again) is None
    assert store.get(job.id) == again
    assert store.get_result(job.id) is None


def test_connections_of_ended_threads_are_closed(store) -> None:
    store.get(new_job_id())  # this thread's connection
    opened: list[sqlite3.Connection] = []

    def use() -> None:
        store.get(new_job_id())
        opened.append(store._connection())

    for _ in range(20):
        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
    # A thread's connection is closed when the thread ends.
    for db in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            db.execute("SELECT 1")
    store.get(new_job_id())  # and this thread's still works


def test_close_never_closes_a_connection_under_another_thread(store) -> None:
    """close() closes the caller's connection; a thread in the middle of a
    write finishes it (closing its connection under it could crash the
    process), and its next use raises StoreClosed."""
    from flask_jobify.errors import StoreClosed

    job = _job()
    store.create(job)
    in_write, go_on = threading.Event(), threading.Event()
    outcome: list[t.Any] = []

    def write() -> None:
        with store._transaction() as db:
            in_write.set()
            go_on.wait(5)
            db.execute("SELECT 1")
        try:
            store.get(job.id)
        except StoreClosed as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert in_write.wait(5)
    store.close()
    go_on.set()
    writer.join(5)
    assert len(outcome) == 1  # the write finished; the next use was refused
    with pytest.raises(StoreClosed):
        store.get(job.id)


def test_no_thread_closes_a_connection_another_thread_uses(store) -> None:
    """At interpreter exit the main thread counts as stopped while it runs
    atexit handlers; a thread opening a connection then must not close the
    main thread's (it used to: jobs stayed running after a clean exit)."""
    store.get(new_job_id())
    mine = store._connection()
    main = threading.main_thread()
    if threading.current_thread() is not main or not hasattr(main, "_is_stopped"):
        pytest.skip("needs CPython's threading internals (3.9-3.12) and the main thread")
    stopped = main._is_stopped  # type: ignore[attr-defined]
    main._is_stopped = True  # type: ignore[attr-defined]  # as during atexit
    try:
        thread = threading.Thread(target=store.get, args=(new_job_id(),))
        thread.start()
        thread.join()
    finally:
        main._is_stopped = stopped  # type: ignore[attr-defined]
    mine.execute("SELECT 1")  # still open


# -- indexes -------------------------------------------------------------------------
def test_get_and_list_use_indexes_at_100k_jobs(store, monkeypatch) -> None:
    rows = 100_000
    data = _job().to_dict()

    def row(n: int) -> tuple[t.Any, ...]:
        job_id = f"job{n:019d}"
        return (job_id, "pending", f"op{n % 3}", f"owner{n % 50}", float(n), None, 0,
                json.dumps({**data, "id": job_id, "created_at": float(n), "owner": f"owner{n % 50}",
                            "operation": f"op{n % 3}"}))

    with sqlite3.connect(store.path) as db:
        db.executemany("INSERT INTO jobs (id, status, operation, owner, created_at, expires_at,"
                       " version, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", map(row, range(rows)))
    db.close()

    issued: list[tuple[str, tuple[t.Any, ...]]] = []
    fetch = store._fetch

    def recording_fetch(sql: str, *params: t.Any) -> t.Any:
        issued.append((sql, params))
        return fetch(sql, *params)

    monkeypatch.setattr(store, "_fetch", recording_fetch)

    def plan_of(call: t.Callable[[], t.Any]) -> str:
        issued.clear()
        call()
        (sql, params), = issued
        plan = store._connection().execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return " | ".join(step[-1] for step in plan)

    assert store.get("job0000000000000012345").created_at == 12345.0
    get_plan = plan_of(lambda: store.get("job0000000000000012345"))
    assert get_plan.startswith("SEARCH jobs USING") and "(id=?)" in get_plan, get_plan

    newest = store.list(limit=2)
    assert [j.created_at for j in newest] == [rows - 1.0, rows - 2.0]
    cursor = (newest[-1].created_at, newest[-1].id)
    assert store.list(limit=1, after=cursor)[0].created_at == rows - 3.0
    for listing in (
        lambda: store.list(limit=10),
        lambda: store.list(limit=10, after=cursor),
        lambda: store.list(limit=10, owner="owner7", after=cursor),
        lambda: store.list(limit=10, owner=NO_OWNER, after=cursor),
        lambda: store.list(limit=10, status=JobStatus.PENDING, operation="op1"),
    ):
        plan = plan_of(listing)
        assert "USING INDEX jobs_created" in plan or "USING INDEX jobs_owner" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # no sort: rows come in index order


# -- what stays on disk ------------------------------------------------------------
def _on_disk(path: str) -> bytes:
    """The raw bytes of the database file and of its WAL."""
    data = b""
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            with open(name, "rb") as file:
                data += file.read()
    return data


def _sizes(path: str) -> tuple[int, int]:
    wal = path + "-wal"
    return os.path.getsize(path), os.path.getsize(wal) if os.path.exists(wal) else 0


@pytest.mark.parametrize("where", ["wal", "file"])
def test_saved_request_leaves_no_trace_on_disk_once_the_job_ends(store, path, where) -> None:
    secret = f"Bearer {uuid.uuid4().hex}".encode()
    job = _job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    # A body of 20 KB: the row spills into overflow pages, which are freed too.
    request = json.dumps({"headers": [["Authorization", secret.decode()]],
                          "body": f"{secret.decode()} " * 500}).encode()
    store.save_request(job.id, request)
    if where == "file":  # the job ran long: a checkpoint copied the request into the file
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        db.close()
        with open(path, "rb") as file:
            assert secret in file.read()
    else:
        with open(path + "-wal", "rb") as file:
            assert secret in file.read()
    assert store.update(job.id, {"status": JobStatus.SUCCEEDED},
                        result=StoredResponse(200, [], b"done"))
    assert secret not in _on_disk(path)


def test_saved_request_of_a_deleted_job_leaves_no_trace(store, path) -> None:
    secret = f"Bearer {uuid.uuid4().hex}".encode()
    job = _job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    store.save_request(job.id, b"Authorization: " + secret)
    assert secret in _on_disk(path)
    assert store.delete(job.id)
    assert secret not in _on_disk(path)


def test_saved_request_read_meanwhile_is_gone_after_the_sweep(store, path) -> None:
    """A reader holding a snapshot keeps the ending job's checkpoint from
    truncating the WAL; the next sweep does it."""
    secret = f"Bearer {uuid.uuid4().hex}".encode()
    job = _job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    store.save_request(job.id, b"Authorization: " + secret)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM requests").fetchone()  # a snapshot with the request
    assert store.update(job.id, {"status": JobStatus.SUCCEEDED})
    assert secret in _on_disk(path)  # could not truncate: the reader may need those pages
    reader.execute("COMMIT")
    reader.close()
    store.purge_expired()
    assert secret not in _on_disk(path)


def _run_retryable_app(path: str, secret: str) -> None:
    """A retryable job submitted with a secret ``Authorization`` through the
    app: its request is saved in the store while it runs, and gone after."""
    from flask import Flask

    from flask_jobify import Jobify

    gate = threading.Event()
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=f"sqlite:///{path}", JOBIFY_DROP_HEADERS=())
    jobify = Jobify(app)

    @app.post("/charge")
    @jobify.job(retries=2, retryable=True)
    def charge() -> t.Any:
        gate.wait(30)
        return {"charged": True}

    client = app.test_client()
    try:
        accepted = client.post("/charge", headers={"X-Job-Flag": "ON",
                                                   "Authorization": secret})
        assert accepted.status_code == 202
        job_id = accepted.get_json()["jobId"]
        store = app.extensions["jobify"].store
        assert secret.encode() in store.load_request(job_id)
        assert secret.encode() in _on_disk(path)  # the test can fail: it is there now
        gate.set()
        deadline = time.monotonic() + 30
        while client.get(f"/jobs/{job_id}?wait=5").get_json()["status"] != "succeeded":
            assert time.monotonic() < deadline
        assert client.get(f"/jobs/{job_id}/result").get_json() == {"charged": True}
        # The job thread checkpoints just after it committed the end, which
        # a poll may see first: wait for it, briefly.
        deadline = time.monotonic() + 5
        while secret.encode() in _on_disk(path):
            assert time.monotonic() < deadline, "the request is still on disk"
            time.sleep(0.01)
    finally:
        gate.set()
        app.extensions["jobify"].shutdown(grace=5)
        app.extensions["jobify"].store.close()


def test_retryable_job_credentials_leave_the_file_and_wal_when_it_ends(path) -> None:
    _run_retryable_app(path, f"Bearer {uuid.uuid4().hex}")


def test_file_and_wal_shrink_after_a_purge(store, path, monkeypatch) -> None:
    # Small steps, so that the sweep's loops take several turns.
    monkeypatch.setattr(store_module, "PURGE_BATCH", 64)
    monkeypatch.setattr(connections, "VACUUM_STEP", 256)
    monkeypatch.setattr(connections, "WAL_BURST_LIMIT", 1024 * 1024)
    body = os.urandom(10 * 1024)
    jobs = [_job(status=JobStatus.RUNNING, attempts=1, result_ttl=0.0) for _ in range(300)]
    for job in jobs:
        store.create(job)
        store.update(job.id, {"status": JobStatus.SUCCEEDED},
                     result=StoredResponse(200, [], body))
    full, full_wal = _sizes(path)
    assert full + full_wal > 300 * 10 * 1024
    assert store.purge_expired(now=time.time() + 1) == 300
    size, wal = _sizes(path)
    assert wal == 0, "the sweep truncates the WAL"
    assert size < 200 * 1024, f"{size} bytes left of {full}: the freed pages went back"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    db.close()


def test_every_connection_zeroes_deleted_rows_and_bounds_the_wal(store) -> None:
    db = store._connection()
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert db.execute("PRAGMA journal_size_limit").fetchone()[0] == sqlite_store.WAL_SIZE_LIMIT


def _file_without_auto_vacuum(path: str) -> None:
    """A store file as earlier versions made it: no auto_vacuum."""
    store = SQLiteStore(path)
    store.create(_job())
    store.close()
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA auto_vacuum = NONE")
        db.execute("VACUUM")
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    db.close()


def test_small_file_without_auto_vacuum_is_converted_on_opening(path) -> None:
    _file_without_auto_vacuum(path)
    store = SQLiteStore(path)
    try:
        assert len(store.list()) == 1
        assert store._connection().execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    finally:
        store.close()


def test_large_file_without_auto_vacuum_is_left_with_a_warning(path, monkeypatch, caplog) -> None:
    _file_without_auto_vacuum(path)
    monkeypatch.setattr(schema, "VACUUM_ON_OPEN_LIMIT", 0)
    with caplog.at_level("WARNING", logger="flask_jobify"):
        store = SQLiteStore(path)
    try:
        assert len(store.list()) == 1
        assert store._connection().execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        assert "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;" in caplog.text
        store.purge_expired()  # incremental_vacuum is a no-op on such a file
    finally:
        store.close()


# -- issue 20: writes off SQLite's slow paths ------------------------------------------
def _checkpointers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread.name.startswith("jobify-sqlite-checkpoint-")]


def test_a_commit_reaches_the_file_through_the_background_checkpoint(store, path) -> None:
    """No connection checkpoints as it commits (``wal_autocheckpoint = 0``):
    the process's checkpointer thread copies the WAL into the file soon after."""
    assert store._connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    job = _job()
    store.create(job)
    deadline = time.monotonic() + 10
    while True:
        with open(path, "rb") as file:
            if job.id.encode() in file.read():
                break
        assert time.monotonic() < deadline, "the job never left the WAL"
        time.sleep(0.02)
    assert store.get(job.id) == job


def test_the_checkpointer_ends_when_idle_and_when_the_store_closes(path, monkeypatch) -> None:
    from flask_jobify.stores.sqlite import checkpoints

    monkeypatch.setattr(checkpoints, "CHECKPOINT_IDLE", 0.2)
    store = SQLiteStore(path)
    try:
        store.create(_job())
        assert _checkpointers()
        deadline = time.monotonic() + 5
        while _checkpointers():  # no commit for CHECKPOINT_IDLE: it ends
            assert time.monotonic() < deadline
            time.sleep(0.02)
        store.create(_job())  # the next commit starts it again
        assert _checkpointers()
    finally:
        store.close()
    deadline = time.monotonic() + 5
    while _checkpointers():
        assert time.monotonic() < deadline, "still checkpointing a closed store"
        time.sleep(0.02)


def test_writers_of_one_process_queue_on_its_lock_and_time_out_with_store_error(path) -> None:
    """A thread's write waits for another thread's transaction (not in
    SQLite's busy handler), and past ``busy_timeout`` raises StoreError."""
    store = SQLiteStore(path, busy_timeout=0.2)
    in_write, go_on = threading.Event(), threading.Event()

    def hold() -> None:
        with store._transaction():
            in_write.set()
            go_on.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert in_write.wait(5)
        with pytest.raises(StoreError, match="writers"):
            store.create(_job())
        late = _job()
        writer = threading.Thread(target=store.create, args=(late,))
        writer.start()
        go_on.set()
        writer.join(5)
        assert store.get(late.id) == late  # it waited its turn
    finally:
        go_on.set()
        holder.join(5)
        store.close()


def test_a_duplicate_id_is_refused_by_the_single_statement_create(store) -> None:
    from flask_jobify.errors import DuplicateJobId

    job = _job()
    store.create(job)
    with pytest.raises(DuplicateJobId):
        store.create(_job(id=job.id))
    store.create(_job())  # the connection is usable: no transaction left open


def test_a_fork_while_a_thread_is_inside_sqlite_does_not_hang_the_child(store) -> None:
    """The child drops the parent's threads' local storage at the fork; it
    must not close their connections (a mutex held at the fork: for ever)."""
    store.create(_job())
    started, connection = threading.Event(), []

    def slow_read() -> None:
        db = store._connection()
        connection.append(db)
        started.set()
        with pytest.raises(sqlite3.OperationalError):  # interrupted below
            db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                       " WHERE i < 1000000000) SELECT count(*) FROM n").fetchall()

    reader = threading.Thread(target=slow_read)
    reader.start()
    try:
        assert started.wait(5)
        time.sleep(0.1)  # inside sqlite3_step, its mutex held
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung closing its parent's connection")
            time.sleep(0.02)
    finally:
        connection[0].interrupt()
        reader.join(10)
