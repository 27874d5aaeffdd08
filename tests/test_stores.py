"""The store contract, run against every backend (see the ``store`` fixture)."""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import typing as t

import pytest

from flask_jobify.errors import DuplicateJobId, StoreError
from flask_jobify.models import Job, JobError, JobProgress, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import NO_OWNER, JobStore


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
    with pytest.raises(DuplicateJobId):  # its own exception, a StoreError
        store.create(job)
    assert issubclass(DuplicateJobId, StoreError)


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
    assert store.update(job.id, {"status": JobStatus.RUNNING}, if_status=[JobStatus.PENDING])
    running = {"status": JobStatus.RUNNING}
    assert store.update(job.id, running, if_status=[JobStatus.PENDING]) is None
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
    expected = StoredResponse(500, [("Content-Type", "text/plain")], b"boom")
    assert store.get_result(job.id) == expected


def test_store_result_is_binary_safe(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    body = bytes(range(256)) * 10
    headers = [("Content-Type", "application/octet-stream"), ("X-A", "1"), ("X-A", "2")]
    store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=StoredResponse(200, headers, body))
    assert store.get_result(job.id) == StoredResponse(200, headers, body)


def test_store_get_with_result_reads_both(store: JobStore) -> None:
    assert store.get_with_result(new_job_id()) == (None, None)
    job = make_job()
    store.create(job)
    assert store.get_with_result(job.id) == (store.get(job.id), None)
    response = StoredResponse(201, [("X-A", "1")], b"\x00made")
    done = store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=response)
    assert store.get_with_result(job.id) == (done, response)
    bare = make_job()
    store.create(bare)
    cancelled = store.update(bare.id, {"status": JobStatus.CANCELLED})
    assert store.get_with_result(bare.id) == (cancelled, None)
    store.update(job.id, {"expires_at": time.time() - 1})
    assert store.get_with_result(job.id) == (None, None)


def test_store_watching_sees_a_change_made_after_the_read(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    with store.watching(job.id) as wait:
        seen = store.get(job.id)
        store.update(job.id, {"status": JobStatus.RUNNING})
        changed = wait(seen.version, 30)  # returns once it sees the change
    assert changed.status is JobStatus.RUNNING and changed.version == seen.version + 1
    with store.watching(new_job_id()) as wait:
        assert wait(0, 0.01) is None


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
        make_job(created_at=base + i, operation="a" if i % 2 else "b", owner=f"o{i % 3}")
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


def test_store_list_no_owner_keeps_jobs_without_one(store: JobStore) -> None:
    base = time.time()
    jobs = [make_job(created_at=base + i, owner=None if i % 3 == 0 else f"o{i}",
                     operation="a" if i % 2 else "b") for i in range(12)]
    for job in jobs:
        store.create(job)
    ownerless = [job.id for job in reversed(jobs) if job.owner is None]  # 9, 6, 3, 0
    assert [j.id for j in store.list(owner=NO_OWNER)] == ownerless
    page = store.list(owner=NO_OWNER, limit=3)
    assert [j.id for j in page] == ownerless[:3]
    rest = store.list(owner=NO_OWNER, limit=3, after=(page[-1].created_at, page[-1].id))
    assert [j.id for j in rest] == ownerless[3:]
    assert [j.id for j in store.list(owner=NO_OWNER, operation="b")] == [jobs[6].id, jobs[0].id]
    store.update(jobs[3].id, {"status": JobStatus.SUCCEEDED})
    assert [j.id for j in store.list(owner=NO_OWNER, status=JobStatus.SUCCEEDED)] == [jobs[3].id]
    store.update(jobs[9].id, {"owner": "o9"})  # given an owner: leaves the listing
    store.update(jobs[4].id, {"owner": None})  # owner dropped: joins it
    store.delete(jobs[6].id)
    assert [j.id for j in store.list(owner=NO_OWNER)] == [jobs[4].id, jobs[3].id, jobs[0].id]
    assert [j.id for j in store.list(owner="o9")] == [jobs[9].id]
    assert store.list(owner="o4") == []
    store.update(jobs[0].id, {"status": JobStatus.CANCELLED, "result_ttl": 0.0})
    assert [j.id for j in store.list(owner=NO_OWNER)] == [jobs[4].id, jobs[3].id]  # expired
    assert store.purge_expired(now=time.time() + 1) == 1
    assert [j.id for j in store.list(owner=NO_OWNER)] == [jobs[4].id, jobs[3].id]
    assert len(store.list(limit=100)) == 10


@contextlib.contextmanager
def counting_reads(store: JobStore) -> t.Iterator[list[int]]:
    """Count what ``store`` reads meanwhile, in its own unit: memory, the
    jobs whose expiry it checks; SQLite, its virtual machine's instructions
    (by tens); Redis, the index members and records it fetches."""
    count = [0]
    kind = type(store).__name__
    if kind == "MemoryStore":
        from flask_jobify.stores import memory

        real = memory.is_expired

        def is_expired(job: Job, now: float | None = None) -> bool:
            count[0] += 1
            return real(job, now)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(memory, "is_expired", is_expired)
            yield count
    elif kind == "SQLiteStore":
        db = store._connection()  # type: ignore[attr-defined]

        def step() -> int:
            count[0] += 1
            return 0

        db.set_progress_handler(step, 10)
        try:
            yield count
        finally:
            db.set_progress_handler(None, 10)
    else:
        client = store._db  # type: ignore[attr-defined]

        class Counted:
            def __getattr__(self, name: str) -> t.Any:
                return getattr(client, name)

            def zrevrangebyscore(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
                entries = client.zrevrangebyscore(*args, **kwargs)
                count[0] += len(entries)
                return entries

            def mget(self, keys: t.Any, *args: t.Any) -> t.Any:
                count[0] += len(keys)
                return client.mget(keys, *args)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store, "_db", Counted())
            yield count


def test_store_list_reads_only_the_owner_filtered(store: JobStore) -> None:
    """A page of ownerless jobs, or of one owner's, costs the same next to
    2,000 jobs of other owners as next to 100: the store reads its index of
    that owner, not every job (the anonymous ``GET /jobs`` used to)."""
    base = time.time() - 10_000
    for i in range(5):  # the oldest jobs: a scan would meet every other job first
        store.create(make_job(created_at=base + i))
        store.create(make_job(created_at=base + i, owner="rare"))
    costs: dict[str, list[int]] = {"none": [], "rare": []}
    created = 0
    for total in (100, 2000):
        for i in range(created, total):
            store.create(make_job(created_at=base + 10 + i, owner=f"user{i % 10}"))
        created = total
        for name, owner in (("none", NO_OWNER), ("rare", "rare")):
            with counting_reads(store) as count:
                page = store.list(owner=owner, limit=3)
            assert len(page) == 3 and all(job.owner == (None if name == "none" else "rare")
                                          for job in page)
            costs[name].append(count[0])
    for small, large in costs.values():
        # An index seek grows with log(n); a scan would be 20 times the cost.
        assert large <= small * 1.5 + 5, costs


def test_store_wait_returns_on_change(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    changer = threading.Timer(0.1, store.update, args=(job.id, {"progress": JobProgress(5)}))
    changer.start()
    started = time.monotonic()
    got = store.wait(job.id, job.version, timeout=10)
    waited = time.monotonic() - started
    changer.join()
    assert waited < 5  # woken by the change, not by the timeout
    assert got.progress == JobProgress(5)
    assert got.version == job.version + 1


def test_store_wait_times_out_unchanged(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    started = time.monotonic()
    got = store.wait(job.id, job.version, timeout=0.05)
    assert time.monotonic() - started >= 0.05 - 0.01  # waited out its timeout
    assert got == job  # and returned the job, unchanged


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
        if store.update(job.id, {"status": JobStatus.RUNNING, "attempts": n},
                        if_status=[JobStatus.PENDING]):
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


# -- if_fields=, leases and saved requests ------------------------------------------------
def test_store_update_expect_is_a_condition(store: JobStore) -> None:
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    assert store.update(job.id, {"status": JobStatus.FAILED}, if_fields={"attempts": 2}) is None
    assert store.update(job.id, {"status": JobStatus.FAILED}, if_status=[JobStatus.PENDING],
                        if_fields={"attempts": 1}) is None
    assert store.get(job.id) == job  # unchanged: same status, same version
    done = store.update(job.id, {"status": JobStatus.SUCCEEDED}, if_status=[JobStatus.RUNNING],
                        if_fields={"attempts": 1, "cancel_requested": False})
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert store.get(job.id).version == job.version + 1


def test_store_renew_lease_keeps_the_version(store: JobStore) -> None:
    job = make_job(status=JobStatus.RUNNING, attempts=2, lease_until=time.time() + 5)
    store.create(job)
    until = time.time() + 30.123456789  # every digit must survive
    assert store.renew_lease(job.id, 2, until) is True
    renewed = store.get(job.id)
    assert renewed.lease_until == until
    assert renewed.version == job.version
    assert renewed == dataclasses.replace(job, lease_until=until)  # nothing else moved
    assert store.renew_lease(job.id, 1, until + 10) is False  # a stale run
    assert store.renew_lease(job.id, 3, until + 10) is False
    assert store.get(job.id).lease_until == until
    assert store.renew_lease(new_job_id(), 2, until) is False
    pending = make_job(meta={}, attempts=0)
    store.create(pending)
    assert store.renew_lease(pending.id, 0, until) is True
    assert store.get(pending.id).meta == {}


def test_store_renew_lease_refuses_final_jobs(store: JobStore) -> None:
    job = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=time.time() + 5)
    store.create(job)
    done = store.update(job.id, {"status": JobStatus.CANCELLED, "lease_until": None})
    assert store.renew_lease(job.id, 1, time.time() + 60) is False
    assert store.get(job.id) == done
    assert store.get(job.id).lease_until is None


def test_store_renew_lease_does_not_wake_waiters(store: JobStore) -> None:
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    until = time.time() + 60
    renewer = threading.Timer(0.02, store.renew_lease, args=(job.id, 1, until))
    renewer.start()
    started = time.monotonic()
    got = store.wait(job.id, job.version, timeout=0.3)
    waited = time.monotonic() - started
    renewer.join()
    # A renewal is no change: the wait ran to its timeout and saw it done.
    assert waited >= 0.3 - 0.01
    assert got.version == job.version
    assert store.get(job.id).lease_until == until


def test_store_renew_lease_publishes_nothing_on_redis(store: JobStore) -> None:
    from flask_jobify.stores.redis import RedisStore

    if not isinstance(store, RedisStore):
        pytest.skip("Redis publishes changes; the other stores have no channel")
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    pubsub = store.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{store.prefix}:changed")
    try:
        assert pubsub.get_message(timeout=1.0) is None  # the subscription notice
        assert store.renew_lease(job.id, 1, time.time() + 60)
        assert pubsub.get_message(timeout=0.2) is None
        store.update(job.id, {"attempts": 2})
        assert pubsub.get_message(timeout=5.0)["data"] == job.id.encode()  # the probe works
    finally:
        pubsub.close()


def test_store_expired_leases(store: JobStore) -> None:
    now = 1000.0
    a = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now - 10)
    b = make_job(lease_until=now - 50)  # pending, queued by a live process
    c = make_job(status=JobStatus.RUNNING, attempts=1)  # gets its lease by update
    d = make_job(status=JobStatus.RUNNING, attempts=1)  # no lease: a Celery job
    e = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now - 90)  # ends
    f = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now + 10)  # not yet
    g = make_job(status=JobStatus.FAILED, lease_until=now - 70, finished_at=now,
                 expires_at=time.time() + 3600)  # created final
    for job in (a, b, c, d, e, f, g):
        store.create(job)
    store.update(c.id, {"lease_until": now})  # <= now counts
    store.update(e.id, {"status": JobStatus.SUCCEEDED})

    def lost(**kwargs) -> list[str]:
        return [job.id for job in store.expired_leases(now=now, **kwargs)]

    assert lost() == [b.id, a.id, c.id]
    assert lost(limit=2) == [b.id, a.id]
    assert store.expired_leases(now=now)[0] == store.get(b.id)
    assert store.renew_lease(b.id, 0, now + 5)  # renewed: no longer lost
    assert lost() == [a.id, c.id]
    store.update(a.id, {"status": JobStatus.FAILED})
    store.update(c.id, {"lease_until": None})
    assert lost() == []
    assert [job.id for job in store.expired_leases(now=now + 10)] == [b.id, f.id]


def test_store_app_filter_keeps_one_apps_jobs(store: JobStore) -> None:
    """``app=`` keeps that app's jobs and those naming no app, in listing
    and in lost-job recovery, past any number of another app's lost jobs."""
    now = 1000.0
    others = [make_job(app="b", lease_until=now - 100 + n, created_at=now + n)
              for n in range(12)]
    mine = make_job(app="a", lease_until=now - 1, created_at=now + 50)
    unnamed = make_job(lease_until=now - 2, created_at=now + 40)
    for job in (*others, mine, unnamed):
        store.create(job)
    assert [job.id for job in store.expired_leases(now=now, limit=5, app="a")] == [
        unnamed.id, mine.id]
    assert [job.id for job in store.expired_leases(now=now, limit=1, app="a")] == [unnamed.id]
    assert len(store.expired_leases(now=now, limit=100)) == 14
    assert [job.id for job in store.list(app="a")] == [mine.id, unnamed.id]
    assert [job.id for job in store.list(app="a", limit=1)] == [mine.id]
    assert len(store.list(app="b")) == 14 - 2 + 1
    assert store.get(mine.id).app == "a"


def test_store_expired_leases_defaults_to_now(store: JobStore) -> None:
    past = make_job(lease_until=time.time() - 1)
    future = make_job(lease_until=time.time() + 3600)
    store.create(past)
    store.create(future)
    assert [job.id for job in store.expired_leases()] == [past.id]


def test_store_saved_request_roundtrip_and_forgotten_when_final(store: JobStore) -> None:
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    store.create(job)
    data = bytes(range(256)) * 8
    assert store.load_request(job.id) is None
    store.save_request(job.id, data)
    assert store.load_request(job.id) == data
    store.save_request(job.id, b"\x00second")
    assert store.load_request(job.id) == b"\x00second"
    store.update(job.id, {"progress": JobProgress(50)})  # still active: kept
    assert store.load_request(job.id) == b"\x00second"
    assert store.update(job.id, {"status": JobStatus.SUCCEEDED},
                        result=StoredResponse(200, [], b"ok"))
    assert store.load_request(job.id) is None
    store.save_request(job.id, data)  # final: nothing happens
    assert store.load_request(job.id) is None
    unknown = new_job_id()
    store.save_request(unknown, data)
    assert store.load_request(unknown) is None


def test_store_saved_request_forgotten_on_delete_and_purge(store: JobStore) -> None:
    deleted, purged, kept = make_job(), make_job(result_ttl=0.05), make_job()
    for job in (deleted, purged, kept):
        store.create(job)
        store.save_request(job.id, job.id.encode())
    assert store.delete(deleted.id)
    assert store.load_request(deleted.id) is None
    store.create(make_job(id=deleted.id))  # the id reused: no request of the old job
    assert store.load_request(deleted.id) is None
    store.update(purged.id, {"status": JobStatus.CANCELLED})
    assert store.purge_expired(now=time.time() + 10) == 1
    assert store.load_request(purged.id) is None
    assert store.load_request(kept.id) == kept.id.encode()


def test_store_renew_leases_renews_many_in_one_call(store: JobStore) -> None:
    now = time.time()
    running = [make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now + 1)
               for _ in range(1205)]  # more than the Redis store's batch of 1,000
    for job in running:
        store.create(job)
    stale = make_job(status=JobStatus.RUNNING, attempts=2, lease_until=now + 1)
    ended = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now + 1)
    for job in (stale, ended):
        store.create(job)
    store.update(ended.id, {"status": JobStatus.FAILED, "lease_until": None})
    asked = {job.id: 1 for job in running}
    asked.update({stale.id: 1, ended.id: 1, new_job_id(): 0})
    until = now + 60.25
    assert store.renew_leases(asked, until) == {job.id for job in running}
    assert {store.get(job.id).lease_until for job in running} == {until}
    assert {store.get(job.id).version for job in running} == {running[0].version}
    assert store.get(stale.id).lease_until == now + 1
    assert store.get(ended.id).lease_until is None
    assert store.renew_leases({}, until) == set()
    assert store.expired_leases(now=now + 2) == [store.get(stale.id)]


def test_store_renew_leases_keeps_every_concurrent_update(store: JobStore) -> None:
    """Renewals racing with progress writes lose neither: a record changed
    between a renewal's read and its write is read again."""
    now = time.time()
    jobs = [make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now) for _ in range(20)]
    for job in jobs:
        store.create(job)
    stop = threading.Event()
    renewed: list[set[str]] = []

    def renew() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            renewed.append(store.renew_leases({job.id: 1 for job in jobs}, now + n))

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        for percent in range(1, 41):
            for job in jobs:
                store.update(job.id, {"progress": JobProgress(percent=percent)})
    finally:
        stop.set()
        renewer.join()
    assert renewed and all(ids == {job.id for job in jobs} for ids in renewed)
    for job in jobs:
        final = store.get(job.id)
        assert final.progress.percent == 40
        assert final.version == job.version + 40
        assert final.lease_until == now + len(renewed)


def test_store_renewals_never_revive_a_job_ended_meanwhile(store: JobStore) -> None:
    now = time.time()
    job = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now + 30)
    witness = make_job(status=JobStatus.RUNNING, attempts=1, lease_until=now + 500)
    store.create(job)
    store.create(witness)
    store.save_request(job.id, b"request")
    barrier = threading.Barrier(9)
    renewed = threading.Event()
    outcomes: list[bool] = []
    ended: list[Job | None] = []

    def renew(n: int) -> None:
        barrier.wait()
        for i in range(50):
            ok = store.renew_lease(job.id, 1, now + 60 + n + i / 100)
            outcomes.append(ok)
            if ok:
                renewed.set()

    def end() -> None:
        barrier.wait()
        renewed.wait(10)  # end it while the renewals go on
        ended.append(store.update(job.id, {"status": JobStatus.TIMED_OUT, "lease_until": None},
                                  if_status=[JobStatus.RUNNING], if_fields={"attempts": 1}))

    threads = [threading.Thread(target=renew, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=end))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ended[0] is not None and ended[0].status is JobStatus.TIMED_OUT
    assert True in outcomes and len(outcomes) == 400
    final = store.get(job.id)
    assert final.status is JobStatus.TIMED_OUT and final.lease_until is None
    assert final.version == ended[0].version  # renewals after the end changed nothing
    assert store.load_request(job.id) is None
    # A lease left behind would come first; limit=1 shows it crowding out the witness.
    assert [j.id for j in store.expired_leases(now=now + 1000, limit=1)] == [witness.id]


def test_store_final_jobs_leave_the_lease_index(store: JobStore) -> None:
    """What :meth:`expired_leases` walks holds active jobs only, so its cost
    does not grow with the finished jobs kept."""
    import sqlite3

    from flask_jobify.stores.redis import RedisStore
    from flask_jobify.stores.sqlite import SQLiteStore

    def indexed() -> int:
        if isinstance(store, SQLiteStore):
            with contextlib.closing(sqlite3.connect(store.path)) as db:
                return db.execute("SELECT count(*) FROM jobs WHERE lease_until IS NOT NULL"
                                  ).fetchone()[0]
        if isinstance(store, RedisStore):
            return store.client.zcard(f"{store.prefix}:leases")
        pytest.skip("the memory store has no index")

    jobs = [make_job(status=JobStatus.RUNNING, attempts=1, lease_until=time.time() + 60)
            for _ in range(3)]
    for job in jobs:
        store.create(job)
    assert indexed() == 3
    store.update(jobs[0].id, {"status": JobStatus.SUCCEEDED})  # its record keeps the lease
    store.update(jobs[1].id, {"lease_until": None})
    store.delete(jobs[2].id)
    assert indexed() == 0
    store.create(make_job(status=JobStatus.FAILED, lease_until=1.0, finished_at=1.0,
                          expires_at=time.time() + 60))
    assert indexed() == 0


# -- SQLite: a version-1 file is migrated --------------------------------------------------
_V1_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, operation TEXT NOT NULL, owner TEXT,
    created_at REAL NOT NULL, expires_at REAL, version INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_owner ON jobs (owner, created_at, id);
CREATE INDEX jobs_expires ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE results (
    job_id TEXT PRIMARY KEY, status INTEGER NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL
);
PRAGMA user_version = 1;
"""


def test_sqlite_store_migrates_a_version_1_file(tmp_path) -> None:
    import json
    import sqlite3

    from flask_jobify.stores.sqlite import SCHEMA_VERSION, SQLiteStore

    path = str(tmp_path / "v1.db")
    job = make_job(status=JobStatus.RUNNING, attempts=1)
    record = job.to_dict()
    del record["lease_until"], record["max_attempts"]  # a version-1 record
    with sqlite3.connect(path) as db:
        db.executescript(_V1_SCHEMA)
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (job.id, "running", job.operation, None, job.created_at, None, 0,
                    json.dumps(record)))
    db.close()
    opened: list[SQLiteStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_store() -> None:
        barrier.wait()
        try:
            opened.append(SQLiteStore(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]  # all migrate at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 4
    store = opened[0]
    try:
        assert store.get(job.id) == job
        assert store.renew_lease(job.id, 1, 50.0)
        assert [j.id for j in store.expired_leases(now=100.0)] == [job.id]
        store.save_request(job.id, b"r")
        assert opened[1].load_request(job.id) == b"r"
        assert store.update(job.id, {"status": JobStatus.SUCCEEDED})
        assert store.expired_leases(now=100.0) == [] and store.load_request(job.id) is None
    finally:
        for each in opened:
            each.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        indexes = {row[1] for row in db.execute("PRAGMA index_list(jobs)")}
        assert "jobs_leases" in indexes
    db.close()


def test_store_keeps_a_failed_jobs_request_until_it_expires_when_asked(store: JobStore) -> None:
    store.keep_failed_requests = True
    failed, succeeded = (make_job(status=JobStatus.RUNNING, attempts=1, result_ttl=60)
                         for _ in range(2))
    for job in (failed, succeeded):
        store.create(job)
        store.save_request(job.id, job.id.encode())
    store.update(failed.id, {"status": JobStatus.FAILED})
    store.update(succeeded.id, {"status": JobStatus.SUCCEEDED})
    assert store.load_request(failed.id) == failed.id.encode()  # for a re-run
    assert store.load_request(succeeded.id) is None
    assert store.purge_expired(now=time.time() + 120) == 2
    assert store.load_request(failed.id) is None


def test_store_count_is_the_length_of_the_listing_up_to_its_limit(store: JobStore) -> None:
    jobs = [make_job(created_at=1000.0 + n, app="one") for n in range(7)]
    for job in jobs:
        store.create(job)
    store.update(jobs[3].id, {"status": JobStatus.RUNNING})
    newest = jobs[-1]
    for limit in (1, 3, 100):
        for after in (None, (newest.created_at, newest.id)):
            listed = store.list(status=JobStatus.PENDING, limit=limit, after=after)
            assert store.count(status=JobStatus.PENDING, limit=limit, after=after) == len(listed)
    assert store.count(status=JobStatus.PENDING, after=(newest.created_at, newest.id)) == 5
    assert store.count(status=JobStatus.PENDING, app="one") == 6
    assert store.count(status=JobStatus.PENDING, app="another app") == 0
