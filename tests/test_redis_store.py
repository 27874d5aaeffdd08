"""Redis store: what only Redis promises (key prefixes, Redis expiry, other
processes, listing at scale).

The contract itself is in ``test_stores.py``. Every test needs Redis: the
``prefix`` fixture skips it when Redis is down (fails it on CI) and deletes
the keys of its prefix afterwards. Helpers that run in other processes are
module-level functions, so that the ``spawn`` start method can import them.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import threading
import time
import typing as t
import uuid

import pytest
from conftest import REDIS_URL, drop_redis_keys, require_redis

from flask_jobify.models import Job, JobProgress, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores import NO_OWNER, store_from_url
from flask_jobify.stores.redis import RedisStore
from flask_jobify.stores.redis import listener as redis_listener

SPAWN = multiprocessing.get_context("spawn")
#: Generous: a spawned interpreter imports Flask before it starts.
LONG = 60


def _job(**fields: t.Any) -> Job:
    fields.setdefault("id", new_job_id())
    fields.setdefault("operation", "op")
    return Job(method="POST", path="/p", **fields)


def _open(prefix: str) -> RedisStore:
    store = store_from_url(f"{REDIS_URL}?prefix={prefix}")
    assert isinstance(store, RedisStore)
    return store


@pytest.fixture
def prefix() -> t.Iterator[str]:
    require_redis()
    name = f"jobify-test-{uuid.uuid4().hex}"
    yield name
    drop_redis_keys(name)


@pytest.fixture
def store(prefix: str) -> t.Iterator[RedisStore]:
    store = _open(prefix)
    yield store
    store.close()


def _keys(store: RedisStore, prefix: str) -> set[str]:
    return {key.decode() for key in store.client.scan_iter(f"{prefix}:*", count=1000)}


def test_redis_store_from_url_reads_the_prefix_and_never_decodes() -> None:
    default = RedisStore.from_url("redis://127.0.0.1:6379/15?decode_responses=true")
    named = RedisStore.from_url("redis://127.0.0.1:6379/15?prefix=app-1&socket_timeout=5")
    assert default.prefix == "jobify" and named.prefix == "app-1"
    assert not default.client.get_encoder().decode_responses
    assert named.client.connection_pool.connection_kwargs["socket_timeout"] == 5.0


def test_redis_store_keys_are_namespaced_by_prefix(store: RedisStore, prefix: str) -> None:
    other_prefix = f"{prefix}-other"
    other = _open(other_prefix)
    try:
        job = _job(owner="alice")
        store.create(job)
        store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=StoredResponse(200, [], b"ok"))
        twin = _job(id=job.id, owner="alice")  # the same id, under the other prefix
        other.create(twin)
        assert _keys(store, prefix) >= {
            f"{prefix}:job:{job.id}", f"{prefix}:result:{job.id}", f"{prefix}:jobs",
            f"{prefix}:status:succeeded", f"{prefix}:operation:op", f"{prefix}:owner:alice"}
        assert all(key.startswith(f"{other_prefix}:") for key in _keys(other, other_prefix))
        assert store.get(job.id).status is JobStatus.SUCCEEDED
        assert other.get(job.id) == twin
        assert other.get_result(job.id) is None
        assert [j.id for j in other.list(status=JobStatus.SUCCEEDED)] == []
        assert other.list(owner="alice") == [twin]
        assert other.delete(job.id) is True
        assert store.get(job.id) is not None and store.list(owner="alice") != []
    finally:
        other.close()
        drop_redis_keys(other_prefix)


def test_redis_store_final_jobs_carry_a_redis_expiry(store: RedisStore, prefix: str) -> None:
    job = _job(result_ttl=120)
    store.create(job)
    job_key, result_key = f"{prefix}:job:{job.id}", f"{prefix}:result:{job.id}"
    store.update(job.id, {"status": JobStatus.RUNNING})
    assert store.client.pttl(job_key) == -1  # active jobs never expire
    done = store.update(job.id, {"status": JobStatus.SUCCEEDED},
                        result=StoredResponse(200, [], b"ok"))
    store.update(job.id, {"meta": {"later": True}})  # rewriting a record keeps its expiry
    # The store sets PEXPIREAT to expires_at rounded up to the millisecond;
    # Redis counts down from its clock, at or past finished_at: up to 1 ms
    # more than result_ttl.
    most = math.ceil(done.expires_at * 1000) - math.floor(done.finished_at * 1000)
    for key in (job_key, result_key):
        assert 110_000 < store.client.pttl(key) <= most


def test_redis_store_purge_drops_index_entries_and_a_reused_id_starts_clean(
    store: RedisStore, prefix: str
) -> None:
    job = _job(owner="alice", result_ttl=0.0)
    store.create(job)
    store.update(job.id, {"status": JobStatus.FAILED}, result=StoredResponse(500, [], b"x"))
    deadline = time.monotonic() + 5
    while store.client.exists(f"{prefix}:job:{job.id}") and time.monotonic() < deadline:
        time.sleep(0.001)  # Redis expires the key within a millisecond
    assert store.client.zscore(f"{prefix}:status:failed", job.id) is not None  # not swept yet
    again = _job(id=job.id, owner="alice")  # an idempotency key reuses its id
    store.create(again)
    assert store.client.zscore(f"{prefix}:status:failed", job.id) is None
    assert store.purge_expired() == 0
    assert store.list(owner="alice") == [again]
    store.update(job.id, {"status": JobStatus.CANCELLED})
    assert store.purge_expired(now=time.time() + 7200) == 1  # past its hour
    assert store.get(job.id) is None and store.list() == []
    assert _keys(store, prefix) == set()  # nothing left behind


def test_redis_store_saved_requests_leave_redis_when_the_job_ends(
    store: RedisStore, prefix: str
) -> None:
    """A saved request (it may hold credentials) is a key of its own, deleted
    in the step that ends the job (or deletes it); no other key under the
    prefix holds its bytes."""
    secret = f"Bearer {uuid.uuid4().hex}".encode()
    ended, deleted, running = (_job(status=JobStatus.RUNNING, attempts=1) for _ in range(3))
    for job in (ended, deleted, running):
        store.create(job)
        store.save_request(job.id, b"Authorization: " + secret)

    def holding_secret() -> set[str]:
        return {key for key in _keys(store, prefix)
                if store.client.type(key) == b"string" and secret in store.client.get(key)}

    assert holding_secret() == {f"{prefix}:request:{job.id}" for job in (ended, deleted, running)}
    assert store.update(ended.id, {"status": JobStatus.SUCCEEDED},
                        result=StoredResponse(200, [], b"ok"))
    assert store.delete(deleted.id)
    assert holding_secret() == {f"{prefix}:request:{running.id}"}
    assert store.update(running.id, {"status": JobStatus.FAILED})
    assert holding_secret() == set()


def _update_when_told(prefix: str, job_id: str, go: t.Any, done: t.Any) -> None:
    store = _open(prefix)
    assert go.wait(LONG)
    store.update(job_id, {"status": JobStatus.SUCCEEDED})
    done.put(time.time())
    store.close()


def test_redis_store_wait_wakes_when_another_process_updates(
    store: RedisStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_listener, "_SAFETY_POLL", 3600.0)  # only a notice can wake it
    job = _job()
    store.create(job)
    go, done = SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=_update_when_told, args=(prefix, job.id, go, done))
    child.start()
    read = threading.Event()
    real_get = store.get

    def get(job_id: str) -> Job | None:
        found = real_get(job_id)
        read.set()  # wait() has subscribed and read the job: it waits from now on
        return found

    monkeypatch.setattr(store, "get", get)
    got: list[tuple[Job | None, float]] = []
    waiter = threading.Thread(target=lambda: got.append(
        (store.wait(job.id, job.version, LONG), time.time())))
    waiter.start()
    assert read.wait(LONG)
    go.set()
    updated_at = done.get(timeout=LONG)
    waiter.join(LONG)
    child.join(LONG)
    assert got, "wait() did not return"
    woken, returned_at = got[0]
    assert woken.status is JobStatus.SUCCEEDED and woken.version == job.version + 1
    assert returned_at - updated_at < 0.5


def test_redis_store_watching_misses_no_change_and_reads_once_per_wake(
    store: RedisStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``watching`` listens from before the caller's read: a change made by
    another process between that read and the wait still wakes the wait,
    which then reads once (``wait`` reads before it sleeps, then again)."""
    monkeypatch.setattr(redis_listener, "_SAFETY_POLL", 3600.0)  # only a notice can wake it
    job = _job()
    store.create(job)
    other = _open(prefix)  # another process's store
    reads = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda job_id: reads.append(job_id) or real_get(job_id))
    got: list[Job | None] = []

    def watch() -> None:
        with store.watching(job.id) as wait:
            seen = store.get(job.id)
            other.update(job.id, {"progress": JobProgress(10, "between")})
            got.append(wait(seen.version, LONG))

    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join(LONG)
    other.close()
    assert not watcher.is_alive(), "the change between the read and the wait was missed"
    assert got[0].version == job.version + 1 and got[0].progress.message == "between"
    assert len(reads) == 2  # the caller's read, and one after the notice
    assert store._listener.waiters == {}  # nothing left behind


def test_redis_store_update_starts_from_the_record_it_wrote(
    store: RedisStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update first tries the record this store wrote last (one round
    trip, no read); when another process changed it since, the update reads
    and decides on the record as it is: no lost write, no stale refusal."""
    other = _open(prefix)  # another process's store
    job = _job()
    store.create(job)
    reads: list[str] = []
    real_get = store._db.get  # counting the store's reads
    monkeypatch.setattr(store._db, "get", lambda key: reads.append(key) or real_get(key))
    mine = store.update(job.id, {"progress": JobProgress(10, "mine")})
    assert mine is not None and reads == []  # written on what it wrote at create()
    other.update(job.id, {"status": JobStatus.RUNNING, "attempts": 1})
    # What this store wrote says pending; the record says running.
    assert store.update(job.id, {"status": JobStatus.CANCELLED},
                        if_status=[JobStatus.PENDING]) is None
    done = store.update(job.id, {"progress": JobProgress(50, "after")},
                        if_status=[JobStatus.RUNNING], if_fields={"attempts": 1})
    assert done is not None and (done.status, done.attempts, done.version) == (
        JobStatus.RUNNING, 1, job.version + 3)
    assert other.get(job.id) == done
    reads.clear()
    assert store.update(job.id, {"progress": JobProgress(60)}) is not None
    assert reads == []
    other.close()


def test_redis_store_64_waiters_share_one_listener(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_listener, "_SAFETY_POLL", 3600.0)  # only a notice can wake them
    jobs = [_job() for _ in range(8)]
    for job in jobs:
        store.create(job)
    lock, reads, all_read = threading.Lock(), [0], threading.Event()
    real_get = store.get

    def get(job_id: str) -> Job | None:
        found = real_get(job_id)
        with lock:
            reads[0] += 1
            if reads[0] == 64:  # every waiter has subscribed and read its job
                all_read.set()
        return found

    monkeypatch.setattr(store, "get", get)
    results: list[Job | None] = []
    waiters = [threading.Thread(target=lambda job=job: results.append(
        store.wait(job.id, job.version, LONG))) for job in jobs for _ in range(8)]
    for waiter in waiters:
        waiter.start()
    assert all_read.wait(LONG)
    for job in jobs:
        store.update(job.id, {"progress": JobProgress(50)})
    for waiter in waiters:
        waiter.join(LONG)
    assert len(results) == 64 and all(job.version == 1 for job in results)
    listeners = [th for th in threading.enumerate() if th.name == f"jobify-redis-{store.prefix}"]
    assert len(listeners) == 1
    store.close()
    assert not listeners[0].is_alive()


def _race(prefix: str, job_ids: list[str], shared_id: str, worker: int,
          barrier: t.Any, results: t.Any) -> None:
    store = _open(prefix)
    barrier.wait(LONG)
    won = [job_id for job_id in job_ids if store.update(
        job_id, {"status": JobStatus.RUNNING, "attempts": worker}, if_status=[JobStatus.PENDING])]
    for n in range(50):
        store.update(shared_id, {"progress": JobProgress(n, f"worker {worker}")})
    results.put((worker, won))
    store.close()


def test_redis_store_across_4_processes_one_cas_winner_and_no_lost_update(
    store: RedisStore, prefix: str
) -> None:
    jobs, shared = [_job() for _ in range(40)], _job()
    for job in [*jobs, shared]:
        store.create(job)
    barrier, results = SPAWN.Barrier(4), SPAWN.Queue()
    workers = [SPAWN.Process(target=_race, args=(
        prefix, [j.id for j in jobs], shared.id, n, barrier, results)) for n in range(4)]
    for worker in workers:
        worker.start()
    winners = dict(results.get(timeout=LONG) for _ in workers)
    for worker in workers:
        worker.join(LONG)
    won = sorted(job_id for ids in winners.values() for job_id in ids)
    assert won == sorted(j.id for j in jobs)  # each job won exactly once
    for worker, ids in winners.items():
        for job_id in ids:
            assert store.get(job_id).attempts == worker
    assert store.get(shared.id).version == 4 * 50


def _bulk_create(store: RedisStore, prefix: str, jobs: list[Job]) -> None:
    """Write ``jobs`` as :meth:`RedisStore.create` would, in a few round trips."""
    indexes: dict[str, dict[str, float]] = {}
    pipe = store.client.pipeline(transaction=False)
    for start in range(0, len(jobs), 5000):
        chunk = jobs[start:start + 5000]
        pipe.mset({f"{prefix}:job:{job.id}": json.dumps(job.to_dict()) for job in chunk})
    for job in jobs:
        names = ["jobs", f"status:{job.status.value}", f"operation:{job.operation}"]
        names.append("ownerless" if job.owner is None else f"owner:{job.owner}")
        for name in names:
            indexes.setdefault(f"{prefix}:{name}", {})[job.id] = job.created_at
    for key, members in indexes.items():
        items = list(members.items())
        for start in range(0, len(items), 10000):
            pipe.zadd(key, dict(items[start:start + 10000]))
    pipe.execute()


def test_redis_store_list_pages_stay_fast_at_100k_jobs(store: RedisStore, prefix: str) -> None:
    base, now = time.time() - 200_000, time.time()
    statuses = {7: JobStatus.SUCCEEDED, 3: JobStatus.FAILED}
    jobs = [
        _job(created_at=base + n // 4,  # four jobs share each created_at: ties go by id
             operation=f"op{n % 10}", owner="alice" if n % 97 == 0 else None,
             status=statuses.get(n % 1000, JobStatus.PENDING),
             finished_at=now if n % 1000 in statuses else None,
             expires_at=now + 3600 if n % 1000 in statuses else None)
        for n in range(100_000)
    ]
    _bulk_create(store, prefix, jobs)
    newest = sorted(jobs, key=lambda job: (job.created_at, job.id), reverse=True)

    def expect(limit: int, after: Job | None = None, **filters: t.Any) -> list[str]:
        cursor = None if after is None else (after.created_at, after.id)
        return [job.id for job in newest
                if all(getattr(job, name) == value for name, value in filters.items())
                and (cursor is None or (job.created_at, job.id) < cursor)][:limit]

    def timed(limit: int, after: Job | None = None, **filters: t.Any) -> list[str]:
        cursor = None if after is None else (after.created_at, after.id)
        started = time.perf_counter()
        page = store.list(limit=limit, after=cursor, **filters)
        assert time.perf_counter() - started < 1.0  # an index walk takes milliseconds
        return [job.id for job in page]

    middle = newest[50_001]  # has tie partners on both sides
    assert timed(50) == expect(50)
    assert timed(50, after=middle) == expect(50, after=middle)
    assert timed(20, status=JobStatus.SUCCEEDED) == expect(20, status=JobStatus.SUCCEEDED)
    assert timed(20, after=middle, status=JobStatus.FAILED) == expect(
        20, after=middle, status=JobStatus.FAILED)
    assert timed(10, operation="op3", owner="alice", after=middle) == expect(
        10, operation="op3", owner="alice", after=middle)
    assert timed(20, owner=NO_OWNER, after=middle) == expect(20, after=middle, owner=None)
    assert store.list(limit=1, after=(middle.created_at, middle.id))[0] == newest[50_002]


def test_app_prefix_namespaces_the_keys(prefix: str) -> None:
    from flask import Flask

    from flask_jobify import Jobify

    apps = []
    for name in ("first", "second"):
        app = Flask(name)
        app.config.update(JOBIFY_STORE=REDIS_URL, JOBIFY_REDIS_PREFIX=f"{prefix}-{name}")
        Jobify(app)
        apps.append(app)
    stores = [app.extensions["jobify"].store for app in apps]
    assert [s.prefix for s in stores] == [f"{prefix}-first", f"{prefix}-second"]
    job = _job()
    stores[0].create(job)
    assert stores[0].get(job.id) is not None
    assert stores[1].get(job.id) is None  # the other app does not see it
    # A prefix in the URL wins over the config key.
    assert store_from_url(f"{REDIS_URL}?prefix=x", redis_prefix="y").prefix == "x"  # type: ignore[attr-defined]
    for app, name in zip(apps, ("first", "second")):
        app.extensions["jobify"].shutdown(grace=0)
        drop_redis_keys(f"{prefix}-{name}")
