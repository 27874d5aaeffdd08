"""gunicorn -w 4 (gthread) with the Redis store and the thread executor:
1,000 concurrent jobs, cancel and long-poll across workers, and recovery
of the jobs of a worker killed with SIGKILL.

One gunicorn serves the whole module (tests/scale_app.py, its own Redis
prefix, ``JOBIFY_LEASE_SECONDS=2``). Requests are pinned to a worker with a
keep-alive ``requests.Session``: every answer names its worker
(``X-Worker-Pid``). Deadlines are generous; nothing asserts a duration.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import threading
import time
import typing as t
import uuid

import pytest
import requests
from conftest import REDIS_URL, drop_redis_keys, require_redis
from servers import run_gunicorn

from flask_jobify.models import JobStatus
from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore

HERE = os.path.dirname(__file__)
FLAG = {"X-Job-Flag": "ON"}
WORKERS = 4
ACTIVE = ("pending", "running")


@dataclasses.dataclass
class Server:
    url: str
    store: JobStore
    #: Ids of every job the module submitted.
    jobs: list[str] = dataclasses.field(default_factory=list)

    def pinned(self, *, want: int = WORKERS, avoid: t.Iterable[int] = (),
               seconds: float = 20) -> dict[int, requests.Session]:
        """Keep-alive sessions, one per worker (up to ``want`` workers other
        than ``avoid``)."""
        found = self.spread(WORKERS, per_worker=1, avoid=avoid, seconds=seconds)
        return {pid: found[pid][0] for pid in list(found)[:want]}

    def spread(self, total: int, *, per_worker: int, avoid: t.Iterable[int] = (),
               seconds: float = 20) -> dict[int, list[requests.Session]]:
        """Up to ``total`` keep-alive sessions, at most ``per_worker`` on
        each worker (other than ``avoid``). A new connection goes to
        whichever worker accepts it first and stays there; an idle worker
        tends to win again, so probes are sent a dozen at a time, each held
        for a moment."""
        sessions: dict[int, list[requests.Session]] = collections.defaultdict(list)
        avoid = set(avoid)
        lock = threading.Lock()

        def count() -> int:
            return sum(map(len, sessions.values()))

        def probe() -> None:
            session = requests.Session()
            try:
                answer = session.get(self.url + "/pid?sleep=0.2", timeout=10)
            except requests.ConnectionError:  # a worker restarting
                session.close()
                return
            pid = int(answer.headers["X-Worker-Pid"])
            with lock:
                if pid in avoid or len(sessions[pid]) >= per_worker or count() >= total:
                    session.close()
                else:
                    sessions[pid].append(session)

        deadline = time.monotonic() + seconds
        while count() < total and time.monotonic() < deadline:
            probes = [threading.Thread(target=probe) for _ in range(12)]
            for thread in probes:
                thread.start()
            for thread in probes:
                thread.join(30)
        return {pid: found for pid, found in sessions.items() if found}

    def record(self, job_id: str, session: requests.Session | None = None,
               wait: float = 0, **params: t.Any) -> dict[str, t.Any]:
        getter = session or requests
        answer = getter.get(f"{self.url}/jobs/{job_id}", params={"wait": wait, **params},
                            timeout=wait + 30)
        answer.raise_for_status()
        return answer.json()

    def until_final(self, job_id: str, seconds: float = 30) -> dict[str, t.Any]:
        """Long-poll on fresh connections (any worker) until the job ends."""
        deadline = time.monotonic() + seconds
        record: dict[str, t.Any] = {}
        while time.monotonic() < deadline:
            try:
                record = self.record(job_id, wait=2)
            except requests.ConnectionError:  # the worker we reached was just killed
                continue
            if record["status"] not in ACTIVE:
                return record
        raise AssertionError(f"job {job_id} still active after {seconds} s: {record}")

    def runner_pid(self, job_id: str, session: requests.Session) -> int:
        """The pid the job's view published: the worker running it."""
        deadline = time.monotonic() + 30
        record: dict[str, t.Any] = {}
        while time.monotonic() < deadline:
            record = self.record(job_id, session, wait=2)
            message = record["progress"]["message"]
            if message:
                assert record["status"] == "running", record
                return int(message)
            if record["status"] not in ACTIVE:
                break  # ended before its view published anything
        raise AssertionError(f"job {job_id} never started: {record}")

    def submit(self, session: requests.Session, path: str, **kwargs: t.Any) -> str:
        answer = session.post(self.url + path, headers=FLAG, timeout=30, **kwargs)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["jobId"]
        self.jobs.append(job_id)
        return job_id


@contextlib.contextmanager
def serve(lease_seconds: float) -> t.Iterator[Server]:
    """gunicorn -w 4 on scale_app with a fresh Redis prefix; its keys are
    dropped afterwards."""
    require_redis()
    prefix = f"jobify-scale-{uuid.uuid4().hex}"
    store_url = f"{REDIS_URL}?prefix={prefix}"
    spec = (f"scale_app:create_app({store_url!r}, lease_seconds={lease_seconds},"
            " max_workers=4, max_queued=2000)")
    store = store_from_url(store_url)
    try:
        with run_gunicorn(spec, workers=WORKERS, threads=8,
                          extra_args=["--pythonpath", HERE, "--keep-alive", "30"]) as url:
            yield Server(url, store)
    finally:
        store.close()
        drop_redis_keys(prefix)


@pytest.fixture(scope="module")
def server() -> t.Iterator[Server]:
    """A 2 s lease: a killed worker's jobs are noticed within seconds."""
    with serve(2.0) as running:
        yield running


def kill_worker(pid: int) -> None:
    """SIGKILL one gunicorn worker of this module's server, and only that."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        command = cmdline.read().replace(b"\0", b" ")
    assert b"gunicorn" in command and b"scale_app" in command, command
    os.kill(pid, signal.SIGKILL)


def test_thousand_concurrent_jobs_over_four_workers(server):
    # With the 2 s lease, each worker renews the leases of its hundreds of
    # queued jobs every half second, while other workers look for lost ones.
    thousand_jobs(server)


def thousand_jobs(server: Server) -> None:
    total, clients = 1000, 16
    accepted: dict[int, str] = {}
    statuses: collections.Counter[int] = collections.Counter()
    results: dict[int, dict[str, t.Any]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    # Each client keeps one connection, so its jobs run on one worker: spread
    # the clients over the four (the kernel alone may give all to one).
    spread = server.spread(clients, per_worker=clients // WORKERS, seconds=30)
    assert len(spread) > 1, f"only reached workers {sorted(spread)}"
    sessions = [session for found in spread.values() for session in found]
    sessions += [requests.Session() for _ in range(clients - len(sessions))]

    def submit_all(first: int) -> None:
        session = sessions[first]
        try:
            for n in range(first, total, clients):
                answer = session.post(server.url + "/echo", json={"n": n, "tag": f"job-{n}"},
                                      headers=FLAG, timeout=60)
                with lock:
                    statuses[answer.status_code] += 1
                    if answer.status_code == 202:
                        accepted[n] = answer.json()["jobId"]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def collect(first: int) -> None:
        session = sessions[first]
        try:
            for n in range(first, total, clients):
                job_id = accepted[n]
                answer = session.get(f"{server.url}/jobs/{job_id}/result", timeout=30)
                deadline = time.monotonic() + 60
                while answer.status_code == 409 and time.monotonic() < deadline:
                    server.record(job_id, session, wait=10)  # long-poll, then ask again
                    answer = session.get(f"{server.url}/jobs/{job_id}/result", timeout=30)
                with lock:
                    results[n] = {"code": answer.status_code, "body": answer.json()}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for target in (submit_all, collect):
        threads = [threading.Thread(target=target, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not errors, errors
    server.jobs.extend(accepted.values())

    assert statuses == {202: total}
    assert len(set(accepted.values())) == total
    assert len(results) == total
    for n, job_id in accepted.items():
        job = server.store.get(job_id)
        results[n].update(status=job.status.value, attempts=job.attempts,
                          error=job.error and job.error.type)
    wrong = {n: r for n, r in results.items() if (r["status"], r["code"], r["attempts"]) != (
        "succeeded", 200, 1) or r["body"].get("echo") != {"n": n, "tag": f"job-{n}"}}
    assert not wrong, (len(wrong), collections.Counter(
        (r["status"], r["attempts"], r["error"]) for r in wrong.values()))
    per_worker = collections.Counter(r["body"]["pid"] for r in results.values())
    assert len(per_worker) > 1, per_worker  # the jobs ran in several workers
    assert sum(per_worker.values()) == total
    for status in (JobStatus.PENDING, JobStatus.RUNNING):
        assert server.store.list(status=status, limit=10) == []


def test_cancel_and_long_poll_from_other_workers(server):
    sessions = server.pinned(want=WORKERS)
    assert len(sessions) >= 3, f"only reached workers {sorted(sessions)}"
    submitter = next(iter(sessions))
    job_id = server.submit(sessions[submitter], "/hold")
    runner = server.runner_pid(job_id, sessions[submitter])
    assert runner == submitter  # the thread executor runs a job where it was accepted
    poller_pid, canceller_pid = [pid for pid in sessions if pid != runner][:2]

    seen = server.record(job_id, sessions[poller_pid])
    assert (seen["status"], seen["cancelRequested"]) == ("running", False)
    answers: list[requests.Response] = []

    def long_poll() -> None:
        answers.append(sessions[poller_pid].get(
            f"{server.url}/jobs/{job_id}", params={"wait": 20, "version": seen["version"]},
            timeout=60))

    poller = threading.Thread(target=long_poll)
    poller.start()
    cancelled = sessions[canceller_pid].delete(f"{server.url}/jobs/{job_id}", timeout=30)
    assert cancelled.status_code == 202  # running: asked to stop
    assert int(cancelled.headers["X-Worker-Pid"]) == canceller_pid != runner
    poller.join(60)
    (answer,) = answers
    assert int(answer.headers["X-Worker-Pid"]) == poller_pid != runner
    woken = answer.json()
    assert woken["version"] > seen["version"]
    assert woken["cancelRequested"] or woken["status"] == "cancelled"

    record = woken
    deadline = time.monotonic() + 30
    while record["status"] in ACTIVE and time.monotonic() < deadline:
        record = server.record(job_id, sessions[poller_pid], wait=10, version=record["version"])
    assert record["status"] == "cancelled"
    assert record["attempts"] == 1
    # Its view noticed and stopped: a cancelled job keeps no response.
    result = sessions[canceller_pid].get(f"{server.url}/jobs/{job_id}/result", timeout=30)
    assert result.status_code == 409
    assert result.json()["error"]["code"] == "no_result"


def _kill_runner(server: Server, path: str) -> tuple[str, int, dict[int, requests.Session]]:
    """Submit a holding job after every worker has served a request (a
    process looks for lost jobs from its first request on), and SIGKILL the
    worker that runs it."""
    sessions = server.pinned(want=WORKERS)
    assert len(sessions) == WORKERS, f"only reached workers {sorted(sessions)}"
    submitter = next(iter(sessions))
    job_id = server.submit(sessions[submitter], path)
    runner = server.runner_pid(job_id, sessions[submitter])
    kill_worker(runner)
    for pid, session in list(sessions.items()):  # more requests to the survivors
        if pid != runner:
            session.get(server.url + "/pid", timeout=10)
    return job_id, runner, sessions


def test_killed_worker_job_fails_as_lost(server):
    job_id, _, _ = _kill_runner(server, "/hold")  # a POST: never run twice
    record = server.until_final(job_id, seconds=20)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "lost"
    assert (record["attempts"], record["maxAttempts"]) == (1, 1)
    assert server.store.get(job_id).lease_until is None


def test_killed_worker_retryable_job_runs_again_elsewhere(server):
    job_id, runner, _ = _kill_runner(server, "/hold-retryable")
    record = server.until_final(job_id, seconds=20)
    assert record["status"] == "succeeded", record
    assert (record["attempts"], record["maxAttempts"]) == (2, 2)
    result = requests.get(f"{server.url}/jobs/{job_id}/result", timeout=30).json()
    assert result["attempt"] == 2
    assert result["pid"] != runner
    assert server.store.load_request(job_id) is None


def test_no_job_is_left_active(server):
    """Whatever ran, was cancelled or was lost above: every job ended."""
    for job_id in server.jobs:
        job = server.store.get(job_id)
        assert job is not None, job_id
        if not job.is_final:
            server.until_final(job_id, seconds=20)
    for status in (JobStatus.PENDING, JobStatus.RUNNING):
        assert server.store.list(status=status, limit=10) == []
    assert server.store.expired_leases() == []
