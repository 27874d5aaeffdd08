"""The store contract, run against every backend (see the ``store`` fixture)."""
from __future__ import annotations

import threading
import time

import pytest

from flask_jobify.errors import StoreError
from flask_jobify.models import Job, JobError, JobProgress, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore


def make_job(**fields) -> Job:
    fields.setdefault("id", new_job_id())
    fields.setdefault("operation", "report")
    fields.setdefault("method", "POST")
    fields.setdefault("path", "/reports")
    return Job(**fields)


def test_store_create_and_get_roundtrip(store: JobStore) -> None:
    job = make_job(owner="alice", meta={"k": [1, 2]})
    store.create(job)
    got = store.get(job.id)
    assert got == job
    assert got is not job


def test_store_create_refuses_duplicate_id(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    with pytest.raises(StoreError):
        store.create(job)


def test_store_get_unknown_is_none(store: JobStore) -> None:
    assert store.get(new_job_id()) is None


def test_store_returned_records_are_copies(store: JobStore) -> None:
    job = make_job(meta={"a": 1})
    store.create(job)
    got = store.get(job.id)
    got.meta["a"] = 2
    got.status = JobStatus.FAILED
    again = store.get(job.id)
    assert again.meta == {"a": 1}
    assert again.status is JobStatus.PENDING


def test_store_update_bumps_version_and_keeps_fields(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    updated = store.update(job.id, {"progress": JobProgress(40, "half")})
    assert updated.progress == JobProgress(40, "half")
    assert updated.version == job.version + 1
    assert store.get(job.id).progress == JobProgress(40, "half")


def test_store_update_only_if_is_compare_and_set(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    assert store.update(job.id, {"status": JobStatus.RUNNING}, only_if=[JobStatus.PENDING])
    assert store.update(job.id, {"status": JobStatus.RUNNING}, only_if=[JobStatus.PENDING]) is None
    assert store.get(job.id).status is JobStatus.RUNNING


def test_store_update_unknown_is_none(store: JobStore) -> None:
    assert store.update(new_job_id(), {"attempts": 1}) is None


def test_store_final_status_sets_finished_and_expiry(store: JobStore) -> None:
    job = make_job(result_ttl=60)
    store.create(job)
    before = time.time()
    done = store.update(
        job.id,
        {"status": JobStatus.FAILED, "error": JobError("ValueError", "bad")},
        result=StoredResponse(500, [("Content-Type", "text/plain")], b"boom"),
    )
    assert done.finished_at >= before
    assert done.expires_at == pytest.approx(done.finished_at + 60)
    assert done.error == JobError("ValueError", "bad")
    assert store.get_result(job.id) == StoredResponse(500, [("Content-Type", "text/plain")], b"boom")


def test_store_result_is_binary_safe(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    body = bytes(range(256)) * 10
    headers = [("Content-Type", "application/octet-stream"), ("X-A", "1"), ("X-A", "2")]
    store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=StoredResponse(200, headers, body))
    assert store.get_result(job.id) == StoredResponse(200, headers, body)


def test_store_expired_jobs_vanish_and_are_purged(store: JobStore) -> None:
    job = make_job(result_ttl=0.05)
    store.create(job)
    store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=StoredResponse(200, [], b"x"))
    keep = make_job()
    store.create(keep)
    assert store.purge_expired(now=time.time() + 10) == 1
    assert store.get(job.id) is None
    assert store.get_result(job.id) is None
    assert store.get(keep.id) is not None


def test_store_get_hides_expired_before_purge(store: JobStore) -> None:
    job = make_job(result_ttl=0.0)
    store.create(job)
    store.update(job.id, {"status": JobStatus.SUCCEEDED})
    assert store.get(job.id) is None
    assert store.update(job.id, {"attempts": 3}) is None


def test_store_delete(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    assert store.delete(job.id) is True
    assert store.delete(job.id) is False
    assert store.get(job.id) is None


def test_store_list_newest_first_with_filters_and_cursor(store: JobStore) -> None:
    base = time.time()
    jobs = [
        make_job(created_at=base + i, operation="a" if i % 2 else "b", owner="o%d" % (i % 3))
        for i in range(7)
    ]
    for job in jobs:
        store.create(job)
    store.update(jobs[0].id, {"status": JobStatus.SUCCEEDED})
    listed = store.list(limit=3)
    assert [j.id for j in listed] == [jobs[6].id, jobs[5].id, jobs[4].id]
    page2 = store.list(limit=3, after=(listed[-1].created_at, listed[-1].id))
    assert [j.id for j in page2] == [jobs[3].id, jobs[2].id, jobs[1].id]
    page3 = store.list(limit=3, after=(page2[-1].created_at, page2[-1].id))
    assert [j.id for j in page3] == [jobs[0].id]
    assert [j.id for j in store.list(operation="a")] == [jobs[5].id, jobs[3].id, jobs[1].id]
    assert [j.id for j in store.list(status=JobStatus.SUCCEEDED)] == [jobs[0].id]
    assert [j.id for j in store.list(owner="o1")] == [jobs[4].id, jobs[1].id]


def test_store_wait_returns_on_change(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    changer = threading.Timer(0.1, store.update, args=(job.id, {"progress": JobProgress(5)}))
    changer.start()
    got = store.wait(job.id, job.version, timeout=10)
    changer.join()
    assert got.progress == JobProgress(5)
    assert got.version == job.version + 1


def test_store_wait_times_out_unchanged(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    got = store.wait(job.id, job.version, timeout=0.05)
    assert got.version == job.version


def test_store_wait_returns_at_once_when_version_differs(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    store.update(job.id, {"attempts": 1})
    done = threading.Event()
    result = []

    def waiter():
        result.append(store.wait(job.id, job.version, timeout=30))
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    assert done.wait(5), "wait() blocked although the version had changed"
    assert result[0].attempts == 1


def test_store_wait_on_deleted_job_is_none(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    threading.Timer(0.05, store.delete, args=(job.id,)).start()
    assert store.wait(job.id, job.version, timeout=10) is None


def test_store_concurrent_compare_and_set_has_one_winner(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    winners = []
    barrier = threading.Barrier(8)

    def race(n):
        barrier.wait()
        if store.update(job.id, {"status": JobStatus.RUNNING, "attempts": n}, only_if=[JobStatus.PENDING]):
            winners.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.get(job.id).attempts == winners[0]


def test_store_concurrent_updates_lose_nothing(store: JobStore) -> None:
    jobs = [make_job() for _ in range(8)]
    for job in jobs:
        store.create(job)

    def bump(job):
        for n in range(25):
            store.update(job.id, {"progress": JobProgress(n)})

    threads = [threading.Thread(target=bump, args=(job,)) for job in jobs for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for job in jobs:
        assert store.get(job.id).version == job.version + 50


def test_store_from_url_rejects_unknown_scheme() -> None:
    with pytest.raises(StoreError, match="memory://"):
        store_from_url("mongodb://x")
