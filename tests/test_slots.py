"""The slots of execution queues in every store (see the ``store`` fixture):
``acquire_slot``, ``release_slot``, ``slot_holders`` and ``count_active``."""
from __future__ import annotations

import threading
import time

from flask_jobify.models import Job, JobStatus, new_job_id
from flask_jobify.stores.base import JobStore
from flask_jobify.stores.slots import WAITER_TTL, grant, holds, waits


def make_job(store: JobStore, created_at: float, **fields) -> Job:
    job = Job(id=new_job_id(), operation="report", method="POST", path="/r",
              created_at=created_at, **fields)
    store.create(job)
    return job


def test_slots_rules_read_the_job() -> None:
    now = 100.0
    assert holds("running", 101.0, None, now) and not holds("running", 99.0, None, now)
    assert holds("pending", None, None, now) and holds("pending", None, 101.0, now)
    assert not holds("pending", None, 99.0, now) and not holds("succeeded", 200.0, 99.0, now)
    assert not holds(None, None, 99.0, now)
    # A job that ended before its run returned (timed out): the row's bound.
    assert holds("timed_out", None, 101.0, now) and holds(None, None, None, now)
    assert waits("pending", 101.0, None, now) and not waits("pending", 99.0, 200.0, now)
    assert waits("pending", None, 101.0, now) and not waits("pending", None, 99.0, now)
    assert not waits("running", 101.0, 101.0, now)


def test_slots_grant_goes_to_the_oldest_waiter() -> None:
    from flask_jobify.stores.slots import Slot

    def waiter(job_id: str, created_at: float) -> Slot:
        return Slot(job_id, created_at, 200.0, "pending", None)

    line = [waiter("a", 1.0), Slot("gone", 1.5, None, None, None), waiter("b", 2.0)]
    assert grant("b", 1, [], line, 100.0) == (False, [])  # "a" takes the one slot
    assert grant("b", 2, [], line, 100.0) == (True, ["gone"])
    holder = Slot("h", 0.0, None, "running", 150.0)
    assert grant("a", 1, [holder], line, 100.0) == (False, [])
    assert grant("a", 1, [holder], line, 160.0) == (True, ["h"])  # its lease ran out


def test_slots_one_at_a_time_in_creation_order(store: JobStore) -> None:
    first, second, third, fourth = (make_job(store, 10.0 + n) for n in range(4))
    # A free slot goes to whoever asks while nobody waits, however young.
    assert store.acquire_slot("q", fourth.id, 1, 1, until=None)
    assert store.slot_holders("q") == (fourth.id,)
    # The others wait in line, in creation order, whatever order they ask in.
    assert not store.acquire_slot("q", third.id, 1, 1, until=None)
    assert not store.acquire_slot("q", second.id, 1, 1, until=None)
    assert not store.acquire_slot("q", first.id, 1, 1, until=None)
    assert store.acquire_slot("q", fourth.id, 1, 1, until=None)  # asking again: held already
    store.release_slot("q", fourth.id, 1)
    assert not store.acquire_slot("q", third.id, 1, 1, until=None)  # the first is ahead
    assert not store.acquire_slot("q", second.id, 1, 1, until=None)
    assert store.acquire_slot("q", first.id, 1, 1, until=None)
    assert store.slot_holders("q") == (first.id,)
    store.release_slot("q", first.id, 1)
    assert store.acquire_slot("q", second.id, 1, 1, until=None)
    assert store.slot_holders("q") == (second.id,)
    assert store.slot_holders("other") == ()


def test_slots_the_first_waiter_takes_a_free_slot(store: JobStore) -> None:
    job = make_job(store, 1.0)
    assert store.acquire_slot("q", job.id, 1, 1, until=None)
    assert store.slot_holders("q") == (job.id,)


def test_slots_of_an_ended_job_free_at_release_or_bound(store: JobStore) -> None:
    """A job may end (timed out) before its run returns: its slot is held
    until the run gives it back, or until the row's bound passes (a
    process that died before giving it back)."""
    first, second, third = make_job(store, 1.0), make_job(store, 2.0), make_job(store, 3.0)
    assert store.acquire_slot("q", first.id, 1, 1, until=None)
    store.update(first.id, {"status": JobStatus.RUNNING, "attempts": 1})
    assert not store.acquire_slot("q", second.id, 1, 1, until=None)
    store.update(first.id, {"status": JobStatus.TIMED_OUT})  # its run goes on
    assert store.slot_holders("q") == (first.id,)
    assert not store.acquire_slot("q", second.id, 1, 1, until=None)
    store.release_slot("q", first.id, 1)  # the run returned
    assert store.acquire_slot("q", second.id, 1, 1, until=time.time() - 1)
    store.update(second.id, {"status": JobStatus.RUNNING, "attempts": 1})
    store.update(second.id, {"status": JobStatus.SUCCEEDED})  # no release: a crash
    assert store.slot_holders("q") == ()  # past its bound
    assert store.acquire_slot("q", third.id, 1, 1, until=None)


def test_slots_free_themselves_when_the_lease_runs_out(store: JobStore) -> None:
    """A process that died holding a slot: its job's lease ran out."""
    now = time.time()
    first = make_job(store, 1.0, lease_until=now + 60)
    second = make_job(store, 2.0, lease_until=now + 60)
    assert store.acquire_slot("q", first.id, 1, 1, until=now + 60)
    assert not store.acquire_slot("q", second.id, 1, 1, until=now + 60)
    store.update(first.id, {"status": JobStatus.RUNNING, "attempts": 1,
                            "lease_until": now - 1})
    assert store.slot_holders("q") == ()
    assert store.acquire_slot("q", second.id, 1, 1, until=now + 60)


def test_slots_a_bound_limits_a_slot_without_a_lease(store: JobStore) -> None:
    first, second = make_job(store, 1.0), make_job(store, 2.0)
    assert store.acquire_slot("q", first.id, 1, 1, until=time.time() - 1)
    assert store.acquire_slot("q", second.id, 1, 1, until=None)


def test_slots_a_dead_waiter_loses_its_place(store: JobStore) -> None:
    now = time.time()
    holder = make_job(store, 0.0)
    gone = make_job(store, 1.0, lease_until=now + 60)  # leased: keeps its place...
    waiting = make_job(store, 2.0)
    assert store.acquire_slot("q", holder.id, 1, 1, until=None)
    assert not store.acquire_slot("q", gone.id, 1, 1, until=None)
    assert not store.acquire_slot("q", waiting.id, 1, 1, until=None)
    store.update(holder.id, {"status": JobStatus.FAILED})
    store.release_slot("q", holder.id, 1)
    assert not store.acquire_slot("q", waiting.id, 1, 1, until=None)
    store.update(gone.id, {"lease_until": now - 1})  # ...until its process dies
    assert store.acquire_slot("q", waiting.id, 1, 1, until=None)
    assert WAITER_TTL > 1


def test_slots_let_a_job_that_is_not_waiting_go_on(store: JobStore) -> None:
    """Cancelled, or another run's: the run finds out as it starts."""
    holder, job = make_job(store, 0.0), make_job(store, 1.0)
    assert store.acquire_slot("q", holder.id, 1, 1, until=None)
    assert store.acquire_slot("q", job.id, 2, 1, until=None)  # not the next run
    assert store.acquire_slot("q", new_job_id(), 1, 1, until=None)  # gone
    store.update(job.id, {"status": JobStatus.CANCELLED})
    assert store.acquire_slot("q", job.id, 1, 1, until=None)
    assert store.slot_holders("q") == (holder.id,)


def test_slots_a_retry_takes_over_its_slot(store: JobStore) -> None:
    job, other = make_job(store, 1.0), make_job(store, 2.0)
    assert store.acquire_slot("q", job.id, 1, 1, until=None)
    store.update(job.id, {"attempts": 1})  # run 1 failed; run 2 waits
    assert store.acquire_slot("q", job.id, 2, 1, until=None)
    store.release_slot("q", job.id, 1)  # run 1's late release frees nothing
    assert store.slot_holders("q") == (job.id,)
    assert not store.acquire_slot("q", other.id, 1, 1, until=None)
    store.release_slot("q", job.id, 2)
    assert store.acquire_slot("q", other.id, 1, 1, until=None)


def test_slots_limit_concurrent_takers(store: JobStore) -> None:
    """Threads racing for 2 slots: never more than 2 holders."""
    jobs = [make_job(store, float(n)) for n in range(8)]
    granted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(jobs))

    def take(job: Job) -> None:
        start.wait()
        if store.acquire_slot("q", job.id, 1, 2, until=None):
            with lock:
                granted.append(job.id)

    threads = [threading.Thread(target=take, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert 1 <= len(granted) <= 2
    assert sorted(store.slot_holders("q")) == sorted(granted)


def test_slots_count_active_counts_the_owners_active_jobs(store: JobStore) -> None:
    for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED):
        make_job(store, 1.0, owner="alice", status=status, app="a")
    make_job(store, 1.0, owner="alice", app="b")
    make_job(store, 1.0, owner="bob")
    assert store.count_active("alice", limit=10, app="a") == 2
    assert store.count_active("alice", limit=10) == 3
    assert store.count_active("alice", limit=1) == 1
    assert store.count_active("carol", limit=10) == 0


def test_slots_a_holder_known_alive_keeps_its_slot_past_its_lease(store: JobStore) -> None:
    """A process that stalled past its own lease still holds its slot for
    the jobs it names alive (its other jobs ask with their ids)."""
    now = time.time()
    first = make_job(store, 1.0, lease_until=now + 60)
    second = make_job(store, 2.0, lease_until=now + 60)
    assert store.acquire_slot("q", first.id, 1, 1, until=None)
    store.update(first.id, {"status": JobStatus.RUNNING, "attempts": 1, "lease_until": now - 1})
    assert not store.acquire_slot("q", second.id, 1, 1, until=None, alive=[first.id])
    store.update(first.id, {"status": JobStatus.TIMED_OUT})  # its run still executes
    assert not store.acquire_slot("q", second.id, 1, 1, until=None, alive=[first.id])
    store.release_slot("q", first.id, 1)
    assert store.acquire_slot("q", second.id, 1, 1, until=None)
