"""Redis store: expiry, key namespaces and notifications across processes."""
from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import typing as t

import pytest

from conftest import REDIS_URL, drop_redis_keys, require_redis
from flask_jobify.models import Job, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores.redis import RedisStore


@pytest.fixture
def prefix() -> t.Iterator[str]:
    require_redis()
    name = f"jobify-test-{uuid.uuid4().hex}"
    yield name
    drop_redis_keys(name)




def _job(**fields) -> Job:
    return Job(id=new_job_id(), operation="op", method="POST", path="/p", **fields)


def _store(prefix: str) -> RedisStore:
    return RedisStore.from_url(f"{REDIS_URL}?prefix={prefix}")


def test_redis_store_prefixes_are_separate(prefix) -> None:
    one, other = _store(prefix), _store(prefix + "-other")
    job = _job()
    one.create(job)
    assert one.get(job.id) == job
    assert other.get(job.id) is None
    assert other.list() == []
    assert one.client.exists(f"{prefix}:job:{job.id}")
    drop_redis_keys(prefix + "-other")


def test_redis_store_final_jobs_carry_a_redis_expiry(prefix) -> None:
    store = _store(prefix)
    job = _job(result_ttl=120)
    store.create(job)
    assert store.client.pttl(f"{prefix}:job:{job.id}") == -1  # active jobs never expire
    store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=StoredResponse(200, [], b"ok"))
    for key in (f"{prefix}:job:{job.id}", f"{prefix}:result:{job.id}"):
        assert 0 < store.client.pttl(key) <= 120_000


def _update_when_told(prefix: str, job_id: str, go) -> None:
    go.wait(30)
    _store(prefix).update(job_id, {"status": JobStatus.SUCCEEDED})


def test_redis_store_wait_wakes_on_another_process(prefix) -> None:
    store = _store(prefix)
    job = _job()
    store.create(job)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    process = ctx.Process(target=_update_when_told, args=(prefix, job.id, go))
    process.start()
    got = []
    waiter = threading.Thread(target=lambda: got.append(store.wait(job.id, job.version, 60)))
    waiter.start()
    go.set()
    waiter.join(60)
    process.join(30)
    assert got and got[0].status is JobStatus.SUCCEEDED


def _race(prefix: str, job_ids: list[str], worker: int, queue) -> None:
    store = _store(prefix)
    won = [j for j in job_ids
           if store.update(j, {"status": JobStatus.RUNNING, "attempts": worker},
                           only_if=[JobStatus.PENDING])]
    queue.put(won)


def test_redis_store_cas_across_processes_has_one_winner(prefix) -> None:
    store = _store(prefix)
    jobs = [_job() for _ in range(50)]
    for job in jobs:
        store.create(job)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=_race, args=(prefix, [j.id for j in jobs], n, queue))
                 for n in range(4)]
    for process in processes:
        process.start()
    won = [job_id for _ in processes for job_id in queue.get(timeout=60)]
    for process in processes:
        process.join(30)
    assert sorted(won) == sorted(j.id for j in jobs)


def test_redis_store_purge_drops_index_entries_of_expired_jobs(prefix) -> None:
    store = _store(prefix)
    job = _job(result_ttl=0.001)
    store.create(job)
    store.update(job.id, {"status": JobStatus.FAILED})
    assert store.purge_expired(now=time.time() + 60) == 1
    assert store.client.exists(f"{prefix}:job:{job.id}") == 0
    assert store.client.zcard(f"{prefix}:jobs") == 0
