"""Execution queues (``@jobify.job(queue=..., concurrency=N)``) and the
per-owner limit (``JOBIFY_MAX_RUNNING_PER_OWNER``), with real stores and
real concurrency: in this process (every store), across two gunicorn
workers (SQLite file, Redis), and past a process killed while it held a
slot. Runs say when they started and ended (``tests/queues_app.py``);
overlaps are looked for in those times, never in how long a test took.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
import uuid

import pytest
import requests
from conftest import REDIS_URL, drop_redis_keys, require_redis, store_url
from helpers import finish
from queues_app import create_app
from servers import run_gunicorn

from flask_jobify import ConfigError, Jobify, TooManyJobs
from flask_jobify.stores import store_from_url

HERE = os.path.dirname(os.path.abspath(__file__))
FLAG = {"X-Job-Flag": "ON"}


def most_at_once(runs: t.Iterable[dict[str, t.Any]]) -> int:
    """The most runs that were running at one moment (from their start and end)."""
    edges = sorted([(run["start"], 1) for run in runs] + [(run["end"], -1) for run in runs],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at a tie
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def wait_until(what: str, check: t.Callable[[], t.Any], within: float = 20.0) -> t.Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
    return value


@pytest.fixture
def app(store_backend, tmp_path):
    app = create_app(store_url(store_backend, tmp_path))
    yield app
    app.config["QUEUES_TEST_GATE"].set()
    state = app.extensions["jobify"]
    state.shutdown(grace=5)
    if store_backend == "redis":
        drop_redis_keys(state.store.prefix)
    state.store.close()


def submit(client: t.Any, path: str, **headers: str) -> str:
    answer = client.post(path, headers={**FLAG, **headers})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.get_json()["jobId"]


def result(client: t.Any, job_id: str) -> dict[str, t.Any]:
    record = finish(client, job_id)
    assert record["status"] == "succeeded", record
    return client.get(f"/jobs/{job_id}/result").get_json()


# -- one process -------------------------------------------------------------------
def test_queues_concurrency_one_runs_one_at_a_time_in_order(app) -> None:
    """Five jobs submitted at once, four threads: never two running; those
    that waited for the slot start in the order they were created."""
    client = app.test_client()
    ids = [submit(client, f"/serial?sleep=0.1&n={n}") for n in range(5)]
    runs = [result(client, job_id) for job_id in ids]
    assert most_at_once(runs) == 1, runs
    assert app.extensions["jobify"].store.slot_holders("serial") == ()
    # Behind a job that holds the slot, every one waits: oldest first.
    holder = submit(client, "/hold")
    wait_until("the holder to run",
               lambda: client.get(f"/jobs/{holder}").get_json()["status"] == "running")
    ids = [submit(client, f"/serial?sleep=0.05&n={n}") for n in range(5)]
    wait_until("all to wait", lambda: len(app.extensions["jobify"].queues.parked("serial")) == 5)
    app.config["QUEUES_TEST_GATE"].set()
    runs = [result(client, holder)] + [result(client, job_id) for job_id in ids]
    assert most_at_once(runs) == 1, runs
    assert [run.get("n") for run in sorted(runs, key=lambda run: run["start"])] == [
        None, *"01234"]


def test_queues_concurrency_two_runs_at_most_two(app) -> None:
    client = app.test_client()
    ids = [submit(client, f"/pair?sleep=0.1&n={n}") for n in range(6)]
    runs = [result(client, job_id) for job_id in ids]
    assert most_at_once(runs) <= 2, runs


def test_queues_waiting_job_is_pending_and_can_be_cancelled(app) -> None:
    client = app.test_client()
    state = app.extensions["jobify"]
    holder = submit(client, "/hold")
    wait_until("the holder to run",
               lambda: client.get(f"/jobs/{holder}").get_json()["status"] == "running")
    waiting = submit(client, "/serial")
    wait_until("the job to wait for a slot", lambda: state.queues.parked("serial") == [waiting])
    assert client.get(f"/jobs/{waiting}").get_json()["status"] == "pending"
    assert client.delete(f"/jobs/{waiting}").get_json()["status"] == "cancelled"
    wait_until("the parked run to let its job go", lambda: state.queues.parked("serial") == [])
    assert state.leases.get(waiting) is None  # nothing left held for it
    app.config["QUEUES_TEST_GATE"].set()
    assert finish(client, holder)["status"] == "succeeded"
    assert finish(client, waiting)["status"] == "cancelled"  # it never ran


def test_queues_a_job_in_another_queue_does_not_wait(app) -> None:
    client = app.test_client()
    holder = submit(client, "/hold")
    wait_until("the holder to run",
               lambda: client.get(f"/jobs/{holder}").get_json()["status"] == "running")
    other = submit(client, "/pair")
    assert finish(client, other)["status"] == "succeeded"
    assert client.get(f"/jobs/{holder}").get_json()["status"] == "running"


def test_queues_a_timed_out_run_holds_its_slot_until_it_returns(app) -> None:
    """A timed-out job ends at once, but its view goes on in its thread:
    the next job of the queue waits until that run really returns."""
    client = app.test_client()
    late = submit(client, "/overrun?sleep=1.0")
    wait_until("the job to run",
               lambda: client.get(f"/jobs/{late}").get_json()["status"] == "running")
    after = submit(client, "/serial?sleep=0.05")
    assert finish(client, late)["status"] == "timed_out"
    runs = [result(client, after)]
    runs += wait_until("the timed-out run to return", lambda: app.config["QUEUES_TEST_OVERRUNS"])
    assert most_at_once(runs) == 1, runs
    assert app.extensions["jobify"].store.slot_holders("serial") == ()


# -- options ----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"queue": "q", "concurrency": 0},
    {"queue": "q", "concurrency": -1},
    {"queue": "q", "concurrency": True},
    {"queue": "q", "concurrency": 1.5},
    {"concurrency": 2},
    {"queue": ""},
    {"queue": "a b"},
    {"queue": 3},
])
def test_queues_bad_options_are_refused_at_decoration(options) -> None:
    with pytest.raises(ValueError):
        Jobify().job(**options)


def test_queues_a_queue_has_one_concurrency() -> None:
    jobify = Jobify()
    jobify.job(queue="q", concurrency=2)
    jobify.job(queue="q", concurrency=2)
    with pytest.raises(ValueError, match="same concurrency"):
        jobify.job(queue="q", concurrency=3)
    with pytest.raises(ValueError, match="same concurrency"):
        jobify.job(queue="q")


@pytest.mark.parametrize("value", [0, -1, "many", True])
def test_queues_bad_owner_limit_is_a_config_error(value) -> None:
    with pytest.raises(ConfigError, match="JOBIFY_MAX_RUNNING_PER_OWNER"):
        create_app("memory://", JOBIFY_MAX_RUNNING_PER_OWNER=value)


# -- the per-owner limit ------------------------------------------------------------------
@pytest.mark.stores("memory", "sqlite")
def test_queues_owner_limit_answers_429_with_retry_after(store_backend, tmp_path) -> None:
    app = create_app(store_url(store_backend, tmp_path), JOBIFY_MAX_RUNNING_PER_OWNER=2,
                     JOBIFY_RETRY_AFTER=3)
    client = app.test_client()
    try:
        alice = [submit(client, "/free", **{"X-User": "alice"}) for _ in range(2)]
        refused = client.post("/free", headers={**FLAG, "X-User": "alice"})
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "3"
        assert refused.get_json()["error"]["code"] == TooManyJobs.error_code == "too_many_jobs"
        assert len(app.extensions["jobify"].store.list(owner="alice")) == 2  # nothing kept
        submit(client, "/free", **{"X-User": "bob"})  # another caller
        submit(client, "/free")  # no owner: not limited
        submit(client, "/free")
        app.config["QUEUES_TEST_GATE"].set()
        assert client.post("/free", headers={"X-User": "alice"}).status_code == 200  # no job
        client.environ_base["HTTP_X_USER"] = "alice"  # her jobs are hers to see
        for job_id in alice:
            assert finish(client, job_id)["status"] == "succeeded"
        submit(client, "/free", **{"X-User": "alice"})  # room again
    finally:
        app.config["QUEUES_TEST_GATE"].set()
        app.extensions["jobify"].shutdown(grace=5)


def test_queues_owner_limit_holds_under_concurrent_requests(tmp_path) -> None:
    """Sixteen requests of one caller at once, a limit of 3: never more than
    3 accepted (some may be refused together; none gets past)."""
    app = create_app(store_url("sqlite", tmp_path), JOBIFY_MAX_RUNNING_PER_OWNER=3)
    codes: list[int] = []
    start = threading.Barrier(16)

    def post() -> None:
        client = app.test_client()
        start.wait()
        codes.append(client.post("/free", headers={**FLAG, "X-User": "alice"}).status_code)

    threads = [threading.Thread(target=post) for _ in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert set(codes) <= {202, 429} and len(codes) == 16, codes
        assert 1 <= codes.count(202) <= 3, codes
        print(f"\n16 concurrent requests, limit 3: {codes.count(202)} accepted")
    finally:
        app.config["QUEUES_TEST_GATE"].set()
        app.extensions["jobify"].shutdown(grace=5)


# -- several processes ------------------------------------------------------------------------
def pinned(base: str, workers: int) -> list[requests.Session]:
    """Keep-alive sessions, one on each of ``workers`` gunicorn workers
    (a new connection goes to whichever worker accepts it: probe a few at once)."""
    found: dict[int, requests.Session] = {}
    lock = threading.Lock()

    def probe() -> None:
        session = requests.Session()
        pid = session.get(f"{base}/pid", timeout=30).json()["pid"]
        with lock:
            if found.setdefault(pid, session) is not session:
                session.close()

    deadline = time.monotonic() + 30
    while len(found) < workers:
        assert time.monotonic() < deadline, f"reached only {len(found)} workers"
        probes = [threading.Thread(target=probe) for _ in range(6)]
        for thread in probes:
            thread.start()
        for thread in probes:
            thread.join(30)
    return list(found.values())[:workers]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_queues_limit_holds_across_gunicorn_workers(backend, tmp_path) -> None:
    """Two gunicorn workers sharing the store, jobs submitted to both at
    once: never two runs of the queue at the same time, in any process."""
    url = store_url(backend, tmp_path)
    env = {"JOBIFY_STORE": url, "JOBIFY_LEASE_SECONDS": "10"}  # no stall past a lease
    try:
        with run_gunicorn("queues_app:create_app()", workers=2, threads=8, env=env,
                          extra_args=["--pythonpath", HERE, "--keep-alive", "30"]) as base:
            sessions = pinned(base, 2)
            ids: list[str] = []

            def post(session: requests.Session, n: int) -> None:
                answer = session.post(f"{base}/serial?sleep=0.2&n={n}", headers=FLAG,
                                      timeout=30)
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["jobId"])

            posts = [threading.Thread(target=post, args=(sessions[n % 2], n)) for n in range(8)]
            for thread in posts:
                thread.start()
            for thread in posts:
                thread.join(30)
            runs = []
            for job_id in ids:
                record = requests.get(f"{base}/jobs/{job_id}", timeout=30).json()
                deadline = time.monotonic() + 30
                while record["status"] in ("pending", "running"):
                    assert time.monotonic() < deadline, record
                    record = requests.get(f"{base}/jobs/{job_id}?wait=5", timeout=30).json()
                assert record["status"] == "succeeded", record
                runs.append(requests.get(f"{base}/jobs/{job_id}/result", timeout=30).json())
    finally:
        if backend == "redis":
            drop_redis_keys(url.rpartition("prefix=")[2])
    assert len(runs) == 8 and most_at_once(runs) == 1, runs
    assert len({run["pid"] for run in runs}) == 2  # each worker ran the jobs it took


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_queues_slot_of_a_killed_process_frees_after_its_lease(backend, tmp_path) -> None:
    """A process killed (SIGKILL) while its job held the queue's one slot:
    a job waiting in another process runs once the lease runs out, and the
    killed one ends failed (lost)."""
    if backend == "redis":
        require_redis()
    url = (f"sqlite:///{tmp_path / 'jobs.db'}" if backend == "sqlite"
           else f"{REDIS_URL}?prefix=jobify-queues-{uuid.uuid4().hex}")
    holder = subprocess.Popen([sys.executable, os.path.join(HERE, "queues_app.py"), url],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    app = create_app(url, lease_seconds=1.0)
    client = app.test_client()
    try:
        held = t.cast(t.IO[str], holder.stdout).readline().strip()
        store = app.extensions["jobify"].store
        wait_until("the other process to run its job",
                   lambda: store.slot_holders("serial") == (held,))
        waiting = submit(client, "/serial")
        time.sleep(0.3)  # a moment in line: it waits, pending (not a timing assertion)
        assert client.get(f"/jobs/{waiting}").get_json()["status"] == "pending"
        killed_at = time.time()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        run = result(client, waiting)
        assert run["start"] > killed_at
        lost = finish(client, held)
        assert lost["status"] == "failed" and lost["error"]["type"] == "lost", lost
    finally:
        if holder.poll() is None:
            holder.kill()
        app.extensions["jobify"].shutdown(grace=5)
        if backend == "redis":
            drop_redis_keys(url.rpartition("prefix=")[2])


def test_queues_store_counts_owner_jobs_without_finished_ones(tmp_path) -> None:
    """The SQLite count walks the partial index of active jobs."""
    store = store_from_url(store_url("sqlite", tmp_path))
    try:
        plan = store._fetch(  # type: ignore[attr-defined]
            "EXPLAIN QUERY PLAN SELECT 1 FROM jobs WHERE owner = ?"
            " AND status IN ('pending', 'running')", "alice")
        assert "jobs_owner_active" in " ".join(str(row) for row in plan), plan
    finally:
        store.close()
