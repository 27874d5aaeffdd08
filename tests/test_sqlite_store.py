"""SQLite store: what only a shared file can promise (processes, indexes)."""
from __future__ import annotations

import multiprocessing
import threading

from flask_jobify.models import Job, JobStatus, new_job_id
from flask_jobify.stores.sqlite import SQLiteStore


def _job(**fields) -> Job:
    return Job(id=fields.pop("id", new_job_id()), operation="op", method="POST", path="/p", **fields)


def _create_and_race(path: str, worker: int, shared_ids: list[str], queue) -> None:
    store = SQLiteStore(path)
    created = []
    for _ in range(100):
        job = _job()
        store.create(job)
        created.append(job.id)
    won = [
        job_id
        for job_id in shared_ids
        if store.update(job_id, {"status": JobStatus.RUNNING, "attempts": worker},
                        only_if=[JobStatus.PENDING])
    ]
    queue.put((created, won))
    store.close()


def test_sqlite_store_processes_lose_nothing_and_cas_has_one_winner(tmp_path) -> None:
    path = str(tmp_path / "jobs.db")
    store = SQLiteStore(path)
    shared = [_job() for _ in range(50)]
    for job in shared:
        store.create(job)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = [
        ctx.Process(target=_create_and_race, args=(path, n, [j.id for j in shared], queue))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    created = [job_id for ids, _ in results for job_id in ids]
    assert len(created) == len(set(created)) == 400
    assert all(store.get(job_id) is not None for job_id in created)
    winners = [job_id for _, won in results for job_id in won]
    assert sorted(winners) == sorted(j.id for j in shared)  # each CAS won exactly once
    store.close()


def _update_later(path: str, job_id: str, go) -> None:
    go.wait(30)
    store = SQLiteStore(path)
    store.update(job_id, {"status": JobStatus.SUCCEEDED})
    store.close()


def test_sqlite_store_wait_sees_another_process(tmp_path) -> None:
    path = str(tmp_path / "jobs.db")
    store = SQLiteStore(path)
    job = _job()
    store.create(job)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    process = ctx.Process(target=_update_later, args=(path, job.id, go))
    process.start()
    got = []
    waiter = threading.Thread(target=lambda: got.append(store.wait(job.id, job.version, 60)))
    waiter.start()
    go.set()
    waiter.join(60)
    process.join(30)
    assert got and got[0].status is JobStatus.SUCCEEDED
    store.close()


def test_sqlite_store_reopened_file_keeps_jobs(tmp_path) -> None:
    path = str(tmp_path / "jobs.db")
    first = SQLiteStore(path)
    job = _job()
    first.create(job)
    first.close()
    assert SQLiteStore(path).get(job.id) == job


def test_sqlite_store_lookups_use_indexes(tmp_path) -> None:
    store = SQLiteStore(str(tmp_path / "jobs.db"))
    db = store._db()
    get_plan = " ".join(r[-1] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT data FROM jobs WHERE id = ?", ("x",)))
    list_plan = " ".join(r[-1] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT data FROM jobs WHERE (expires_at IS NULL OR expires_at > 0)"
        " ORDER BY created_at DESC, id DESC LIMIT 5"))
    assert "USING INDEX" in get_plan or "PRIMARY KEY" in get_plan
    assert "jobs_created" in list_plan and "TEMP B-TREE" not in list_plan
    store.close()


def test_sqlite_store_from_url_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert SQLiteStore.from_url("sqlite:///rel/jobs.db").path == "rel/jobs.db"
    assert SQLiteStore.from_url(f"sqlite:///{tmp_path}/abs.db").path == f"{tmp_path}/abs.db"
