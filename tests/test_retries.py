"""Retries, leases and lost-job recovery with the thread executor, in process.

Every test drives a real app (the test client, or the store directly for
records a dead process would have left behind) and waits for jobs with
generous deadlines; nothing asserts how long anything took.
"""
from __future__ import annotations

import collections
import json
import threading
import time
import typing as t

import pytest
from flask import Flask, request

from flask_jobify import Jobify, JobStatus, current_job
from flask_jobify.capture import CapturedRequest, capture_request
from flask_jobify.models import Job, JobError, new_job_id
from flask_jobify.options import JobOptions

FLAG = {"X-Job-Flag": "ON"}
FAST = 0.01  # backoff, in seconds, of the retrying views


class Runs:
    """What the views of one or more apps saw: ``current_job.attempt`` of
    every run, per job id, and events to hold a run at a known point."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: dict[str, list[int]] = collections.defaultdict(list)
        self.started = threading.Event()
        self.release = threading.Event()
        self.saw_cancel = threading.Event()

    def record(self) -> int:
        with self.lock:
            self.attempts[t.cast(str, current_job.id)].append(current_job.attempt)
        return current_job.attempt

    def of(self, job_id: str) -> list[int]:
        with self.lock:
            return list(self.attempts.get(job_id, []))


def create_retry_app(store: str, runs: Runs, **config: t.Any) -> Flask:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, JOBIFY_SHUTDOWN_GRACE=0.5,
                      JOBIFY_EXPOSE_ERRORS=True, **config)
    jobify = Jobify(app)

    @app.put("/flaky")
    @jobify.job(retries=3, backoff=FAST)
    def flaky() -> t.Any:
        attempt = runs.record()
        if attempt <= int(request.args["fail"]):
            raise ValueError(f"run {attempt} failed")
        return {"attempt": attempt, "body": request.get_json()}

    @app.put("/answer")
    @jobify.job(retries=2, backoff=FAST)
    def answer() -> t.Any:
        attempt = runs.record()
        if attempt <= int(request.args.get("fail", "99")):
            return {"attempt": attempt}, int(request.args["code"])
        return {"attempt": attempt}

    @app.post("/create")
    @jobify.job(retries=3, backoff=FAST)
    def create() -> t.Any:
        runs.record()
        raise RuntimeError("POST failed")

    @app.post("/create-retryable")
    @jobify.job(retries=3, backoff=FAST, retryable=True)
    def create_retryable() -> t.Any:
        attempt = runs.record()
        if attempt <= int(request.args["fail"]):
            raise RuntimeError(f"run {attempt} failed")
        return {"attempt": attempt}

    @app.put("/always-fails")
    @jobify.job(retries=2, backoff=FAST)
    def always_fails() -> t.Any:
        raise ValueError(f"run {runs.record()} failed")

    @app.put("/slow-backoff")
    @jobify.job(retries=3, backoff=30)
    def slow_backoff() -> t.Any:
        raise ValueError(f"run {runs.record()} failed")

    @app.put("/times-out")
    @jobify.job(timeout=0.3, retries=3, backoff=FAST)
    def times_out() -> t.Any:
        attempt = runs.record()
        runs.started.set()
        runs.release.wait(30)  # ignores cancellation on purpose
        raise ValueError(f"run {attempt} failed after its deadline")

    @app.route("/hold", methods=["POST", "PUT"])
    @jobify.job(retries=1, backoff=FAST, retryable=True)
    def hold() -> t.Any:
        """Run 1 holds until released (or told to stop); later runs answer at once."""
        attempt = runs.record()
        if attempt == 1:
            runs.started.set()
            while not runs.release.wait(0.02):
                if current_job.cancelled:
                    runs.saw_cancel.set()
                    break
        return {"attempt": attempt, "body": request.get_json(silent=True)}

    @app.post("/hold-once")
    @jobify.job
    def hold_once() -> t.Any:
        """As ``/hold``, for an operation that may not run twice."""
        runs.record()
        while not runs.release.wait(0.02):
            if current_job.cancelled:
                break
        return {"attempt": current_job.attempt}

    @app.put("/fail-then-hold")
    @jobify.job(retries=1, backoff=FAST)
    def fail_then_hold() -> t.Any:
        """Run 1 fails; run 2, the last, holds until told to stop."""
        attempt = runs.record()
        if attempt == 1:
            raise ValueError("run 1 failed")
        while not runs.release.wait(0.02) and not current_job.cancelled:
            pass
        return {"attempt": attempt}

    @app.put("/fails-once")
    @jobify.job(retries=1, backoff=1)
    def fails_once() -> t.Any:
        attempt = runs.record()
        if attempt == 1:
            raise ValueError("run 1 failed")
        return {"attempt": attempt}

    @app.post("/once")
    @jobify.job
    def once() -> t.Any:
        return {"attempt": runs.record()}

    return app


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., Flask]:
    """Build retry apps on the test's store (``@pytest.mark.stores``); the
    apps of one test share it (two "processes"); stopped afterwards."""

    def make(runs: Runs | None = None, **config: t.Any) -> Flask:
        return t.cast(Flask, apps(create_retry_app, runs or Runs(), **config))

    return make


def finish(client: t.Any, job_id: str, seconds: float = 30) -> dict[str, t.Any]:
    """Long-poll until the job ends; return its record."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        record = client.get(f"/jobs/{job_id}?wait=5").get_json()
        if record["status"] not in ("pending", "running"):
            return record
    raise AssertionError(f"job {job_id} did not finish: {record}")


def wait_for(predicate: t.Callable[[], t.Any], seconds: float = 20, what: str = "") -> t.Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def wait_until_idle(app: Flask) -> None:
    executor = app.extensions["jobify"].executor
    wait_for(lambda: executor.running == 0 and executor.queued == 0, what="idle job threads")


def submit(client: t.Any, method: str, path: str, **kwargs: t.Any) -> str:
    accepted = client.open(path, method=method, headers=FLAG, **kwargs)
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    return accepted.get_json()["jobId"]


# -- retry rules ---------------------------------------------------------------

@pytest.mark.stores("memory", "sqlite", "redis")
def test_retries_put_fails_twice_then_succeeds(make_app):
    runs = Runs()
    app = make_app(runs)
    client = app.test_client()
    job_id = submit(client, "PUT", "/flaky?fail=2", json={"n": 7})
    record = finish(client, job_id)
    assert record["status"] == "succeeded"
    assert (record["attempts"], record["maxAttempts"]) == (3, 4)
    assert record["httpStatus"] == 200
    assert runs.of(job_id) == [1, 2, 3]
    result = client.get(f"/jobs/{job_id}/result").get_json()
    assert result == {"attempt": 3, "body": {"n": 7}}
    if app.extensions["jobify"].store.shared_across_processes:
        # The request kept for a takeover is forgotten once the job ended.
        assert app.extensions["jobify"].store.load_request(job_id) is None


@pytest.mark.stores("memory", "sqlite")
def test_retries_succeeded_after_retry_has_no_error(make_app):
    client = make_app().test_client()
    record = finish(client, submit(client, "PUT", "/flaky?fail=1", json={"n": 1}))
    assert (record["status"], record["attempts"]) == ("succeeded", 2)
    assert record["error"] is None


@pytest.mark.stores("memory", "sqlite")
def test_retries_5xx_answer_is_retried(make_app):
    runs = Runs()
    client = make_app(runs).test_client()
    job_id = submit(client, "PUT", "/answer?code=503&fail=1")
    record = finish(client, job_id)
    assert record["status"] == "succeeded"
    assert record["attempts"] == 2
    assert runs.of(job_id) == [1, 2]


@pytest.mark.stores("memory", "sqlite")
def test_retries_4xx_answer_is_final(make_app):
    runs = Runs()
    app = make_app(runs)
    client = app.test_client()
    job_id = submit(client, "PUT", "/answer?code=404")
    record = finish(client, job_id)
    assert record["status"] == "failed"
    assert (record["attempts"], record["maxAttempts"]) == (1, 3)
    assert record["httpStatus"] == 404
    assert record["error"]["type"] == "http_error"
    wait_until_idle(app)
    assert runs.of(job_id) == [1]
    replayed = client.get(f"/jobs/{job_id}/result")
    assert (replayed.status_code, replayed.get_json()) == (404, {"attempt": 1})


@pytest.mark.stores("memory")
def test_retries_5xx_every_time_fails_with_the_last_answer(make_app):
    runs = Runs()
    client = make_app(runs).test_client()
    job_id = submit(client, "PUT", "/answer?code=502")
    record = finish(client, job_id)
    assert record["status"] == "failed"
    assert record["attempts"] == 3 == record["maxAttempts"]
    assert record["httpStatus"] == 502
    assert record["error"]["type"] == "http_error"
    assert client.get(f"/jobs/{job_id}/result").get_json() == {"attempt": 3}


@pytest.mark.stores("memory", "sqlite")
def test_retries_post_is_not_retried_unless_retryable(make_app):
    runs = Runs()
    app = make_app(runs)
    client = app.test_client()
    job_id = submit(client, "POST", "/create")
    record = finish(client, job_id)
    assert record["status"] == "failed"
    assert (record["attempts"], record["maxAttempts"]) == (1, 1)
    assert record["error"]["type"] == "RuntimeError"
    wait_until_idle(app)
    assert runs.of(job_id) == [1]
    if app.extensions["jobify"].store.shared_across_processes:
        # Nothing may run it again: its request is not kept for a takeover.
        assert app.extensions["jobify"].store.load_request(job_id) is None

    job_id = submit(client, "POST", "/create-retryable?fail=1")
    record = finish(client, job_id)
    assert record["status"] == "succeeded"
    assert (record["attempts"], record["maxAttempts"]) == (2, 4)
    assert runs.of(job_id) == [1, 2]


@pytest.mark.stores("memory", "redis")
def test_retries_exhausted_fail_with_the_last_error(make_app):
    runs = Runs()
    app = make_app(runs)
    client = app.test_client()
    job_id = submit(client, "PUT", "/always-fails")
    record = finish(client, job_id)
    assert record["status"] == "failed"
    assert record["attempts"] == 1 + 2 == record["maxAttempts"]
    assert record["error"]["type"] == "ValueError"
    assert record["error"]["message"] == "run 3 failed"
    assert record["httpStatus"] == 500
    wait_until_idle(app)
    assert runs.of(job_id) == [1, 2, 3]
    assert client.get(f"/jobs/{job_id}/result").status_code == 500


@pytest.mark.stores("memory", "sqlite")
def test_retries_cancel_during_backoff(make_app):
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    client = app.test_client()
    job_id = submit(client, "PUT", "/slow-backoff")

    def waiting_for_retry() -> dict[str, t.Any] | None:
        record = client.get(f"/jobs/{job_id}?wait=1").get_json()
        return record if record["error"] is not None else None

    record = wait_for(waiting_for_retry, what="the first run to fail")
    assert record["status"] == "pending"  # waiting out a 15..30 s backoff
    assert record["attempts"] == 1
    assert record["error"]["type"] == "ValueError"
    assert record["error"]["message"] == "run 1 failed"

    cancelled = client.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    assert cancelled.get_json()["error"]["type"] == "cancelled"

    # Fire the scheduled retry now instead of in 15..30 s: it must not run.
    scheduled = state.scheduler._calls.get(("retry", job_id))
    assert scheduled is not None, "no retry was scheduled"
    state.scheduler.discard(("retry", job_id))
    scheduled[2]()
    wait_until_idle(app)
    assert runs.of(job_id) == [1]
    record = client.get(f"/jobs/{job_id}").get_json()
    assert (record["status"], record["attempts"]) == ("cancelled", 1)
    with state.leases.lock:
        assert job_id not in state.leases.held


@pytest.mark.stores("memory", "sqlite")
def test_retries_timed_out_job_is_not_retried(make_app):
    runs = Runs()
    app = make_app(runs)
    client = app.test_client()
    job_id = submit(client, "PUT", "/times-out")
    record = finish(client, job_id)
    assert record["status"] == "timed_out"
    assert record["error"]["type"] == "timeout"
    runs.release.set()  # the late run now raises: still no retry
    wait_until_idle(app)
    record = client.get(f"/jobs/{job_id}").get_json()
    assert (record["status"], record["attempts"], record["maxAttempts"]) == ("timed_out", 1, 4)
    assert runs.of(job_id) == [1]


# -- options, unit tests -----------------------------------------------------------

def test_retry_delay_doubles_with_jitter_and_a_cap():
    options = JobOptions(retries=5, backoff=0.2)
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (5, 1.0), (12, 1.0)]:
        delays = [options.retry_delay(attempt, 1.0) for _ in range(300)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jitter: jobs failed together do not retry together
    assert JobOptions(backoff=0).retry_delay(3, 300) == 0
    assert 0 <= JobOptions(backoff=1000).retry_delay(1, 0.5) <= 0.5


@pytest.mark.parametrize(
    "options, method, expected",
    [
        (JobOptions(retries=3), "PUT", 4),
        (JobOptions(retries=3), "get", 4),
        (JobOptions(retries=3), "DELETE", 4),
        (JobOptions(retries=3), "POST", 1),
        (JobOptions(retries=3), "PATCH", 1),
        (JobOptions(retries=3, retryable=True), "POST", 4),
        (JobOptions(retries=3, retryable=False), "PUT", 1),
        (JobOptions(), "PUT", 1),
    ],
)
def test_max_attempts_follows_method_and_retryable(options, method, expected):
    assert options.max_attempts(method) == expected


def test_job_options_round_trip_and_validation():
    options = JobOptions(timeout=5, result_ttl=60, retries=2, backoff=0.5, retryable=True)
    assert JobOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert JobOptions.from_dict({**options.to_dict(), "added_later": 1}) == options
    for name in ("retries", "backoff", "timeout"):
        with pytest.raises(ValueError):
            JobOptions(**{name: -1})


# -- leases --------------------------------------------------------------------------

@pytest.mark.stores("sqlite")
def test_lease_heartbeat_moves_lease_forward_without_new_versions(make_app):
    runs = Runs()
    app = make_app(runs, JOBIFY_LEASE_SECONDS=0.4)
    store = app.extensions["jobify"].store
    client = app.test_client()
    job_id = submit(client, "PUT", "/hold")
    assert runs.started.wait(10)
    first = wait_for(lambda: (job := store.get(job_id)) and job.status is JobStatus.RUNNING
                     and job, what="the job to run")
    leases, versions = [first.lease_until], {first.version}
    deadline = time.monotonic() + 20
    while len(set(leases)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        job = store.get(job_id)
        assert job.status is JobStatus.RUNNING
        leases.append(job.lease_until)
        versions.add(job.version)
    assert len(set(leases)) >= 5, leases
    assert leases == sorted(leases)  # only ever forward
    assert versions == {first.version}  # heartbeats are not changes
    runs.release.set()
    record = finish(client, job_id)
    assert (record["status"], record["attempts"]) == ("succeeded", 1)
    assert store.get(job_id).lease_until is None
    assert runs.of(job_id) == [1]


# -- lost jobs -----------------------------------------------------------------------

def lost_job(app: Flask, *, method: str = "PUT", status: JobStatus = JobStatus.RUNNING,
             attempts: int = 1, max_attempts: int = 1, save: bool = False,
             **fields: t.Any) -> Job:
    """Store a job as a process that died while holding it would leave it:
    active, with a lease that ran out a while ago."""
    store = app.extensions["jobify"].store
    job = Job(id=new_job_id(), operation="hold", method=method, path="/hold",
              status=status, attempts=attempts, max_attempts=max_attempts,
              started_at=time.time() - 5 if attempts else None,
              lease_until=time.time() - 1, **fields)
    store.create(job)
    if save:
        with app.test_request_context("/hold", method=method, json={"lost": job.id}):
            captured = capture_request(request)
        data = {"request": captured.to_dict(),
                "options": JobOptions(retries=max_attempts - 1, backoff=FAST,
                                      retryable=True).to_dict()}
        store.save_request(job.id, json.dumps(data).encode())
        assert CapturedRequest.from_dict(
            json.loads(store.load_request(job.id))["request"]) == captured
    return job


@pytest.mark.stores("sqlite", "redis")
@pytest.mark.parametrize("status, attempts", [(JobStatus.RUNNING, 1), (JobStatus.PENDING, 0)])
def test_reclaim_fails_a_lost_job_that_may_not_run_again(make_app, status, attempts):
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    job = lost_job(app, method="POST", status=status, attempts=attempts)
    assert [lost.id for lost in state.store.expired_leases()] == [job.id]
    assert state.leases.reclaim_lost() == 1
    record = app.test_client().get(f"/jobs/{job.id}").get_json()
    assert record["status"] == "failed"
    assert record["error"]["type"] == "lost"
    assert record["attempts"] == attempts
    assert state.store.get(job.id).lease_until is None
    assert state.store.expired_leases() == []
    assert state.leases.reclaim_lost() == 0
    wait_until_idle(app)
    assert runs.of(job.id) == []


@pytest.mark.stores("sqlite", "redis")
def test_reclaim_does_not_rerun_a_lost_job_whose_cancel_was_requested(make_app):
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    job = lost_job(app, max_attempts=2, save=True, cancel_requested=True)
    state.leases.reclaim_lost()
    record = state.store.get(job.id)
    assert record.is_final and record.status is not JobStatus.SUCCEEDED
    wait_until_idle(app)
    assert runs.of(job.id) == []


@pytest.mark.stores("sqlite", "redis")
def test_reclaim_queues_a_retryable_lost_job_again(make_app):
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    client = app.test_client()
    job = lost_job(app, max_attempts=2, save=True)
    assert state.leases.reclaim_lost() == 1
    record = finish(client, job.id)
    assert record["status"] == "succeeded"
    assert (record["attempts"], record["maxAttempts"]) == (2, 2)
    assert runs.of(job.id) == [2]
    assert client.get(f"/jobs/{job.id}/result").get_json() == {
        "attempt": 2, "body": {"lost": job.id}}
    assert state.store.load_request(job.id) is None


@pytest.mark.stores("sqlite", "redis")
def test_reclaim_runs_a_lost_job_that_never_started(make_app):
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    job = lost_job(app, status=JobStatus.PENDING, attempts=0, max_attempts=2, save=True)
    runs.release.set()
    assert state.leases.reclaim_lost() == 1
    record = finish(app.test_client(), job.id)
    assert (record["status"], record["attempts"]) == ("succeeded", 1)
    assert runs.of(job.id) == [1]


@pytest.mark.stores("sqlite", "redis")
def test_reclaim_runs_a_lost_job_that_waited_for_its_retry(make_app):
    """Its process died during the backoff: the next run happens elsewhere."""
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    job = lost_job(app, status=JobStatus.PENDING, attempts=1, max_attempts=3, save=True,
                   error=JobError("ValueError", "run 1 failed"))
    assert state.leases.reclaim_lost() == 1
    record = finish(app.test_client(), job.id)
    assert (record["status"], record["attempts"], record["maxAttempts"]) == ("succeeded", 2, 3)
    assert runs.of(job.id) == [2]


@pytest.mark.stores("sqlite", "redis")
def test_reclaim_retryable_lost_job_out_of_attempts_fails(make_app):
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    job = lost_job(app, attempts=2, max_attempts=2, save=True)
    state.leases.reclaim_lost()
    record = state.store.get(job.id)
    assert (record.status, record.error.type) == (JobStatus.FAILED, "lost")
    wait_until_idle(app)
    assert runs.of(job.id) == []


@pytest.mark.stores("sqlite", "redis")
def test_reclaim_concurrent_in_two_apps_requeues_once(make_app, tmp_path):
    """Two apps on one store stand for two processes: both find the same
    lost jobs at the same moment, and each job runs again exactly once."""
    runs = Runs()
    first = make_app(runs)
    second = make_app(runs)
    states = [first.extensions["jobify"], second.extensions["jobify"]]
    jobs = [lost_job(first, max_attempts=2, save=True) for _ in range(10)]
    for _ in range(10):
        lost_job(first, method="POST")  # not retryable: failed, once
    barrier = threading.Barrier(len(states))
    counts: list[int] = []
    errors: list[BaseException] = []

    def reclaim(state: t.Any) -> None:
        try:
            barrier.wait(10)
            counts.append(state.leases.reclaim_lost())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reclaim, args=(state,)) for state in states]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    client = first.test_client()
    for job in jobs:
        record = finish(client, job.id)
        assert (record["status"], record["attempts"]) == ("succeeded", 2)
    for app in (first, second):
        wait_until_idle(app)
    for job in jobs:
        assert runs.of(job.id) == [2], job.id
    assert states[0].store.expired_leases() == []
    failed = states[0].store.list(status=JobStatus.FAILED, limit=100)
    assert len(failed) == 10
    assert {job.error.type for job in failed} == {"lost"}


@pytest.mark.stores("sqlite", "redis")
def test_taken_over_run_is_fenced_off(make_app):
    """A run that stalled past its lease is taken over by another process;
    the stalled run is told to stop and can no longer change the job."""
    runs = Runs()
    first = make_app(runs)
    second = make_app(runs)
    client = first.test_client()
    job_id = submit(client, "PUT", "/hold", json={"n": 1})
    assert runs.started.wait(10)
    wait_for(lambda: first.extensions["jobify"].store.get(job_id).status is JobStatus.RUNNING)
    # The second "process" sees the lease as expired (its clock is ahead).
    assert second.extensions["jobify"].leases.reclaim_lost(now=time.time() + 3600) == 1
    record = finish(client, job_id)
    assert (record["status"], record["attempts"]) == ("succeeded", 2)
    assert runs.saw_cancel.wait(10), "the stalled run was not told to stop"
    wait_until_idle(first)
    wait_until_idle(second)
    assert runs.of(job_id) == [1, 2]
    record = client.get(f"/jobs/{job_id}").get_json()
    assert (record["status"], record["attempts"]) == ("succeeded", 2)
    assert client.get(f"/jobs/{job_id}/result").get_json() == {"attempt": 2, "body": {"n": 1}}


@pytest.mark.stores("sqlite", "redis")
def test_shutdown_releases_a_job_waiting_for_its_retry(make_app):
    """A process that stops while a job waits out its backoff releases the
    job to the other processes (its request is saved): the retry timer that
    fires during the shutdown grace must not fail it afterwards."""
    runs = Runs()
    first = make_app(runs)
    second = make_app(runs)
    store = second.extensions["jobify"].store
    client = first.test_client()
    submit(client, "POST", "/hold")  # keeps the shutdown grace busy
    assert runs.started.wait(10)
    job_id = submit(client, "PUT", "/fails-once")  # retried 0.5..1 s after run 1
    wait_for(lambda: (job := store.get(job_id)) and job.error is not None,
             what="run 1 to fail")
    first.extensions["jobify"].shutdown(grace=2.5)  # the retry timer fires meanwhile
    job = store.get(job_id)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1), job.error
    assert second.extensions["jobify"].leases.reclaim_lost() >= 1
    record = finish(second.test_client(), job_id)
    assert (record["status"], record["attempts"]) == ("succeeded", 2)
    assert runs.of(job_id) == [1, 2]


@pytest.mark.stores("sqlite", "redis")
def test_shutdown_releases_a_running_job_that_may_run_again(make_app):
    """A run still going when the shutdown grace ends is given up: a job
    that may run again (its request is saved, it has runs left) goes back
    to ``pending`` with its lease expired, and another process runs it to
    its end; the given-up run is told to stop and its end is refused. A
    job that may not run again is failed (``shutdown``), as before."""
    runs = Runs()
    first = make_app(runs)
    second = make_app(runs)
    store = second.extensions["jobify"].store
    client = first.test_client()
    job_id = submit(client, "PUT", "/hold", json={"n": 1})
    once_id = submit(client, "POST", "/hold-once")
    wait_for(lambda: runs.of(job_id) == [1] and runs.of(once_id) == [1], what="both runs")
    first.extensions["jobify"].shutdown(grace=0.2)
    job = store.get(job_id)
    assert (job.status, job.attempts, job.error.type) == (JobStatus.PENDING, 1, "shutdown")
    assert job.lease_until is not None and job.lease_until <= time.time()
    assert [lost.id for lost in store.expired_leases()] == [job_id]
    once = store.get(once_id)
    assert (once.status, once.error.type) == (JobStatus.FAILED, "shutdown")
    assert runs.saw_cancel.wait(10), "the given-up run was not told to stop"
    wait_until_idle(first)  # run 1 returned: its end must have been refused
    assert store.get(job_id).status is JobStatus.PENDING
    assert second.extensions["jobify"].leases.reclaim_lost() == 1
    record = finish(second.test_client(), job_id)
    assert (record["status"], record["attempts"]) == ("succeeded", 2)
    assert runs.of(job_id) == [1, 2]
    assert second.test_client().get(f"/jobs/{job_id}/result").get_json() == {
        "attempt": 2, "body": {"n": 1}}


@pytest.mark.stores("sqlite", "redis")
def test_shutdown_fails_a_running_job_out_of_runs(make_app):
    """A running job on its last run is not released: it is failed."""
    runs = Runs()
    first = make_app(runs)
    store = first.extensions["jobify"].store
    job_id = submit(first.test_client(), "PUT", "/fail-then-hold")
    wait_for(lambda: runs.of(job_id) == [1, 2], what="run 2")
    first.extensions["jobify"].shutdown(grace=0.2)
    record = store.get(job_id)
    assert (record.status, record.attempts, record.error.type) == (
        JobStatus.FAILED, 2, "shutdown")


@pytest.mark.stores("sqlite", "redis")
def test_busy_process_keeps_the_leases_of_its_queued_jobs(make_app):
    """A live process never loses the jobs queued in it, however many: here
    every lease renewal costs a 5 ms round trip (a store across a network),
    200 jobs wait behind a busy thread, a lease lasts 0.5 s ahead of each
    heartbeat, and another process looks for lost jobs all along. Seen
    before leases were renewed in one call: over gunicorn -w 4 + Redis with
    JOBIFY_LEASE_SECONDS=2, 70 to 170 of 1,000 jobs failed as lost."""
    runs = Runs()
    app = make_app(runs, JOBIFY_LEASE_SECONDS=1, JOBIFY_MAX_WORKERS=1,
                   JOBIFY_MAX_QUEUED=1000)
    other = make_app(runs, JOBIFY_LEASE_SECONDS=1)
    state = app.extensions["jobify"]
    for name in ("renew_lease", "renew_leases"):
        method = getattr(state.store, name)

        def over_network(*args: t.Any, _method: t.Any = method) -> t.Any:
            time.sleep(0.005)
            return _method(*args)

        setattr(state.store, name, over_network)
    client = app.test_client()
    holder = submit(client, "PUT", "/hold")
    assert runs.started.wait(10)
    queued = [submit(client, "POST", "/once") for _ in range(200)]
    other.extensions["jobify"].start()  # its reclaim rounds, every 0.25 s
    time.sleep(2)  # a few heartbeats and reclaim rounds while all of them wait
    runs.release.set()
    finals = collections.Counter(finish(client, job_id)["status"] for job_id in [holder, *queued])
    assert finals == {"succeeded": 201}


@pytest.mark.stores("sqlite", "redis")
def test_a_process_does_not_reclaim_the_jobs_it_holds(make_app):
    """A lease that ran out while its process is alive (a heartbeat came
    late) is the holder's to renew, not to fail."""
    runs = Runs()
    app = make_app(runs)
    state = app.extensions["jobify"]
    client = app.test_client()
    job_id = submit(client, "PUT", "/hold")
    assert runs.started.wait(10)
    assert state.leases.reclaim_lost(now=time.time() + 3600) == 0
    runs.release.set()
    record = finish(client, job_id)
    assert (record["status"], record["attempts"]) == ("succeeded", 1)
    assert runs.of(job_id) == [1]
