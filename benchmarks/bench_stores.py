"""What two store operations cost at scale, per store (issue 13).

``list``: the anonymous ``GET /jobs?limit=20`` (a caller the owner loader
names ``None``) while ``--jobs`` jobs (100,000 by default) belong to owners
and 20 older jobs have none, through the Flask test client. Prints the
time of one request and what the store read for it:

- ``list calls`` and ``rows returned``: the store's ``list`` calls the view
  made and the jobs they returned to it;
- memory: ``jobs examined`` (records whose expiry was checked);
- SQLite: ``VM steps`` (SQLite virtual machine instructions, counted with a
  progress handler every 100), and the query plan of the listing query;
- Redis: ``ids read`` (index members returned by ``ZREVRANGEBYSCORE``) and
  ``records read`` (keys asked of ``MGET``).

The request is timed once without counting, then run again with counters.

``disk``: an SQLite file after ``--disk-jobs`` (10,000) jobs, each finished
with a ``--body-kb`` (10 KB) result, written from 4 threads while 2 threads
read, then after every job expired and the store's sweep
(``purge_expired``) ran: bytes of the database file and of its WAL, with
the store still open (as in a running server).

``retryable``: milliseconds per retryable job on SQLite (``create``,
``save_request`` of 2 KB, ``update`` to succeeded with a result), one
thread, 400 jobs: what the end's checkpoint costs.

    python benchmarks/bench_stores.py list [--jobs 100000] [--stores memory,sqlite,redis]
    python benchmarks/bench_stores.py disk [--disk-jobs 10000] [--body-kb 10]
    python benchmarks/bench_stores.py retryable

Redis: DB 15 of 127.0.0.1:6379 under a fresh prefix, whose keys are deleted
at the end (never ``FLUSHDB``). Figures are from one run on a shared
machine: compare the counts, and times only by their order of magnitude.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
import typing as t
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from flask import Flask, request

from flask_jobify import Jobify
from flask_jobify.models import Job, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore

REDIS_URL = "redis://127.0.0.1:6379/15"


def _job(created_at: float, owner: str | None, **fields: t.Any) -> Job:
    return Job(id=new_job_id(), operation="report", method="POST", path="/reports",
               owner=owner, created_at=created_at, **fields)


# -- filling a store fast ---------------------------------------------------------
def fill(store: JobStore, jobs: list[Job]) -> None:
    """Create ``jobs``; SQLite in one transaction and Redis pipelined, as
    ``create`` would one by one (same rows, same keys)."""
    kind = type(store).__name__
    if kind == "SQLiteStore":
        from flask_jobify.stores import sqlite

        with store._transaction() as db:  # type: ignore[attr-defined]
            db.executemany(sqlite._INSERT, [sqlite._row(job) for job in jobs])
    elif kind == "RedisStore":
        import json

        for start in range(0, len(jobs), 1000):
            pipe = store.client.pipeline(transaction=False)  # type: ignore[attr-defined]
            for job in jobs[start:start + 1000]:
                keys = [store._key("job", job.id), store._final, store._expiry,  # type: ignore[attr-defined]
                        store._leases, store._all, *store._indexes(job)]  # type: ignore[attr-defined]
                store._create(keys=keys, client=pipe, args=[  # type: ignore[attr-defined]
                    json.dumps(job.to_dict()), repr(job.created_at), job.id, ""])
            pipe.execute()
    else:
        for job in jobs:
            store.create(job)


# -- counting what the store reads ------------------------------------------------
class Counts(dict):  # type: ignore[type-arg]
    def add(self, name: str, n: int = 1) -> None:
        self[name] = self.get(name, 0) + n


@contextlib.contextmanager
def counting(store: JobStore) -> t.Iterator[Counts]:
    counts = Counts()
    original_list = store.list

    def counted_list(**kwargs: t.Any) -> list[Job]:
        page = original_list(**kwargs)
        counts.add("list calls")
        counts.add("rows returned", len(page))
        return page

    store.list = counted_list  # type: ignore[method-assign]
    kind = type(store).__name__
    try:
        if kind == "MemoryStore":
            from flask_jobify.stores import memory

            original = memory.is_expired

            def is_expired(job: Job, now: float | None = None) -> bool:
                counts.add("jobs examined")
                return original(job, now)

            memory.is_expired = is_expired  # type: ignore[assignment]
            try:
                yield counts
            finally:
                memory.is_expired = original  # type: ignore[assignment]
        elif kind == "SQLiteStore":
            db = store._connection()  # type: ignore[attr-defined]

            def step() -> int:
                counts.add("VM steps", 100)
                return 0

            db.set_progress_handler(step, 100)
            try:
                yield counts
            finally:
                db.set_progress_handler(None, 100)
        elif kind == "RedisStore":
            real = store._db  # type: ignore[attr-defined]

            class Counted:
                def __getattr__(self, name: str) -> t.Any:
                    return getattr(real, name)

                def zrevrangebyscore(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
                    entries = real.zrevrangebyscore(*args, **kwargs)
                    counts.add("ids read", len(entries))
                    return entries

                def mget(self, keys: t.Any, *args: t.Any) -> t.Any:
                    counts.add("records read", len(keys))
                    return real.mget(keys, *args)

            store._db = Counted()  # type: ignore[attr-defined]
            try:
                yield counts
            finally:
                store._db = real  # type: ignore[attr-defined]
        else:
            yield counts
    finally:
        del store.list


def sqlite_plan(store: JobStore) -> str:
    """The plan of the query an ownerless listing runs (new API), or of an
    unfiltered one (old)."""
    db = store._connection()  # type: ignore[attr-defined]
    sql = ("SELECT data FROM jobs WHERE (expires_at IS NULL OR expires_at > ?) AND owner IS NULL"
           " ORDER BY created_at DESC, id DESC LIMIT ?")
    return "; ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, (0, 21)))


def bench_list(backend: str, n_jobs: int, folder: str) -> None:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{folder}/list.db",
           "redis": f"{REDIS_URL}?prefix=bench-stores-{uuid.uuid4().hex}"}[backend]
    store = store_from_url(url)
    try:
        base = time.time() - n_jobs - 100
        ownerless = [_job(base + i, None) for i in range(20)]  # the oldest: worst case
        owned = [_job(base + 50 + i, f"user{i % 100}") for i in range(n_jobs)]
        began = time.perf_counter()
        fill(store, ownerless + owned)
        filled = time.perf_counter() - began
        app = Flask(__name__)
        app.config.update(JOBIFY_CLEANUP_INTERVAL=3600)
        jobify = Jobify(app, store=store)

        @jobify.owner_loader
        def owner() -> str | None:
            return request.headers.get("X-User")

        client = app.test_client()
        began = time.perf_counter()
        response = client.get("/jobs?limit=20")
        elapsed = time.perf_counter() - began
        assert response.status_code == 200, response.data
        listed = [job["id"] for job in response.get_json()["jobs"]]
        assert listed == [job.id for job in reversed(ownerless)], "wrong jobs listed"
        with counting(store) as counts:
            client.get("/jobs?limit=20")
        own = client.get("/jobs?limit=20", headers={"X-User": "user7"}).get_json()["jobs"]
        assert len(own) == 20 and all(job["id"] for job in own)
        print(f"{backend:7} {n_jobs:>7} owned jobs (filled in {filled:.1f} s):"
              f" anonymous GET /jobs?limit=20 {elapsed * 1000:10.1f} ms;"
              f" {', '.join(f'{k} {v:,}' for k, v in counts.items())}")
        if backend == "sqlite":
            print(f"        plan: {sqlite_plan(store)}")
    finally:
        store.close()
        if backend == "redis":
            import redis

            client_ = redis.Redis.from_url(REDIS_URL)
            prefix = store.prefix  # type: ignore[attr-defined]
            for keys in _chunks(list(client_.scan_iter(f"{prefix}:*", count=5000)), 5000):
                client_.delete(*keys)
            client_.close()


def _chunks(items: list[t.Any], size: int) -> t.Iterator[list[t.Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- disk --------------------------------------------------------------------------
def _sizes(path: str) -> tuple[int, int]:
    wal = path + "-wal"
    return os.path.getsize(path), (os.path.getsize(wal) if os.path.exists(wal) else 0)


def _mb(n: int) -> str:
    return f"{n / 1e6:7.1f} MB ({n:,} B)"


class Peak:
    """The largest database + WAL size seen, sampled every 10 ms."""

    def __init__(self, path: str) -> None:
        self.path, self.db, self.wal = path, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError):
                self.db, self.wal = (max(a, b) for a, b in zip((self.db, self.wal),
                                                                _sizes(self.path)))

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return f"peak db {_mb(self.db)}, peak WAL {_mb(self.wal)}"


def bench_disk(n_jobs: int, body_kb: int, folder: str) -> None:
    path = os.path.join(folder, "disk.db")
    store = store_from_url(f"sqlite:///{path}")
    body = os.urandom(body_kb * 1024)
    ids: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer(count: int) -> None:
        for _ in range(count):
            job = _job(time.time(), None, status=JobStatus.RUNNING, attempts=1, result_ttl=1.0)
            store.create(job)
            with lock:
                ids.append(job.id)
            store.update(job.id, {"status": JobStatus.SUCCEEDED},
                         result=StoredResponse(200, [("Content-Type", "text/plain")], body))

    def reader() -> None:  # long-polls and status checks, as a busy server has
        while not stop.is_set():
            with lock:
                recent = ids[-50:]
            for job_id in recent:
                store.get_with_result(job_id)
            store.list(limit=20)

    peak = Peak(path)
    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(n_jobs // 4,)) for _ in range(4)]
    began = time.perf_counter()
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    burst = time.perf_counter() - began
    stop.set()
    for thread in readers:
        thread.join()
    db, wal = _sizes(path)
    print(f"{n_jobs} jobs x {body_kb} KB results in {burst:.1f} s ({peak.stop()}):\n"
          f"  db {_mb(db)}  WAL {_mb(wal)}  total {_mb(db + wal)}")
    time.sleep(1.1)  # every job expires
    peak = Peak(path)
    began = time.perf_counter()
    purged = store.purge_expired()
    sweep = time.perf_counter() - began
    db, wal = _sizes(path)
    print(f"after the sweep (purged {purged} in {sweep:.2f} s; {peak.stop()}):\n"
          f"  db {_mb(db)}  WAL {_mb(wal)}  total {_mb(db + wal)}")
    began = time.perf_counter()
    store.purge_expired()
    again = time.perf_counter() - began
    db, wal = _sizes(path)
    print(f"after a second sweep ({again:.2f} s):\n"
          f"  db {_mb(db)}  WAL {_mb(wal)}  total {_mb(db + wal)}")
    store.close()


def bench_retryable(folder: str, n_jobs: int = 400) -> None:
    store = store_from_url(f"sqlite:///{folder}/retryable.db")
    request_data = os.urandom(2048)
    began = time.perf_counter()
    for _ in range(n_jobs):
        job = _job(time.time(), None, status=JobStatus.RUNNING, attempts=1)
        store.create(job)
        store.save_request(job.id, request_data)
        store.update(job.id, {"status": JobStatus.SUCCEEDED},
                     result=StoredResponse(200, [], b"ok"))
    elapsed = time.perf_counter() - began
    store.close()
    print(f"sqlite  retryable job (create, save_request, end): {elapsed / n_jobs * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["list", "disk", "retryable"])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--stores", default="memory,sqlite,redis")
    parser.add_argument("--disk-jobs", type=int, default=10_000)
    parser.add_argument("--body-kb", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.what == "list":
            for backend in args.stores.split(","):
                bench_list(backend, args.jobs, folder)
        elif args.what == "disk":
            bench_disk(args.disk_jobs, args.body_kb, folder)
        else:
            bench_retryable(folder)


if __name__ == "__main__":
    main()
