"""What the memory store does to keep many finished jobs cheaply (issue 20):
shared parts of records and responses, and memory given back after a purge."""
from __future__ import annotations

import platform
import sys
import time

import pytest

from flask_jobify.models import Job, JobProgress, JobStatus, StoredResponse, new_job_id
from flask_jobify.stores import compact
from flask_jobify.stores.compact import Compactor, give_back_memory
from flask_jobify.stores.memory import MemoryStore

HEADERS = [("Content-Type", "application/json"), ("Content-Length", "12")]


def _response(body: bytes = b'{"ok":true}\n') -> StoredResponse:
    # New strings each time, as a view's response has: "".join defeats constants.
    return StoredResponse(200, [("".join(name), "".join(value)) for name, value in HEADERS],
                          body)


def _finished(store: MemoryStore, **fields: object) -> Job:
    job = Job(id=new_job_id(), operation="op", method="POST", path="/p", **fields)  # type: ignore[arg-type]
    store.create(job)
    done = store.update(job.id, {"status": JobStatus.SUCCEEDED}, result=_response())
    assert done is not None
    return done


def test_compact_pack_shares_header_lines_and_lists_and_unpacks_equal() -> None:
    compactor = Compactor()
    first, second = compactor.pack(_response()), compactor.pack(_response())
    assert second[1] is first[1]  # the whole list of headers
    third = compactor.pack(StoredResponse(201, [*_response().headers, ("X", "1")], b""))
    assert third[1][0] is first[1][0]  # a line of another list
    assert Compactor.unpack(first) == _response()
    assert isinstance(Compactor.unpack(first).headers, list)


def test_compact_table_stops_growing_at_its_bound(monkeypatch) -> None:
    monkeypatch.setattr(compact, "SHARED_HEADERS", 3)
    compactor = Compactor()
    for n in range(10):
        packed = compactor.pack(StoredResponse(200, [("ETag", str(n))], b""))
        assert Compactor.unpack(packed).headers == [("ETag", str(n))]
    assert len(compactor._table) == 3


def test_compact_memory_store_records_share_their_empty_parts_not_with_callers() -> None:
    store = MemoryStore()
    job = _finished(store)
    held = store._jobs[job.id]
    assert held.meta is store._compact.no_meta and held.progress is store._compact.no_progress
    out = store.get(job.id)
    assert out is not None and out.meta == {} and out.meta is not held.meta
    out.meta["mine"] = 1  # a caller's copy: the store (and other jobs) never see it
    assert store.get(job.id).meta == {} and store._compact.no_meta == {}
    assert _finished(store, meta={"a": 1}).meta == {"a": 1}
    moved = store.update(job.id, {"progress": JobProgress(50, "half")})
    assert moved is not None and moved.progress == JobProgress(50, "half")


def test_compact_memory_store_result_comes_back_equal_and_apart() -> None:
    store = MemoryStore()
    job = _finished(store)
    result = store.get_result(job.id)
    assert result == _response()
    result.headers.append(("X-Mine", "1"))
    assert store.get_result(job.id) == _response()


@pytest.mark.skipif(sys.version_info < (3, 10), reason="dataclass slots need Python 3.10")
def test_compact_job_record_has_slots() -> None:
    assert not hasattr(Job(id=new_job_id(), operation="o", method="GET", path="/"), "__dict__")


def test_compact_big_purge_forgets_every_job_and_gives_memory_back() -> None:
    store = MemoryStore()
    jobs = [_finished(store, result_ttl=0.0) for _ in range(compact.GIVE_BACK_AFTER)]
    kept = _finished(store)
    assert store.purge_expired(now=time.time() + 1) == len(jobs)
    assert list(store._jobs) == [kept.id] and list(store._results) == [kept.id]
    assert store.get(kept.id) == kept and store.get_result(kept.id) == _response()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_compact_give_back_memory_calls_malloc_trim_on_glibc() -> None:
    assert give_back_memory() is True
