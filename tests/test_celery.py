"""The Celery executor end to end: gunicorn takes the requests, a real
Celery worker (prefork, two children) runs the views, Redis keeps the jobs
and carries the broker's messages.

The web process and the worker both import ``tests/celery_app.py``; they
share a fresh store prefix and the broker DB 14, both dropped afterwards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
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
from conftest import REDIS_HOST, REDIS_PORT, drop_redis_keys, require_redis
from servers import run_gunicorn, stop_process_group

from flask_jobify.client import JobSession

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FLAG = {"X-Job-Flag": "ON"}
FINAL = ("succeeded", "failed", "cancelled", "timed_out")
#: Headers of one connection or one moment, not of the view's response.
PER_CONNECTION = {"date", "server", "connection", "keep-alive", "transfer-encoding"}


@dataclasses.dataclass
class Stack:
    url: str
    prefix: str
    node: str
    worker: subprocess.Popen
    log_path: str
    markers: t.Any  # redis.Redis on the store's DB
    broker: t.Any  # redis.Redis on the broker's DB
    control: t.Any  # a Celery app of the test process, for inspect/ping

    def marker(self, token: str, name: str) -> str:
        return f"{self.prefix}:t:{token}:{name}"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def inspect(self) -> t.Any:
        return self.control.control.inspect(destination=[self.node], timeout=2.0)


def _wait_worker_ready(stack: Stack, deadline: float) -> None:
    while True:
        if stack.worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited early:\n{stack.log()}")
        if " ready." in stack.log():
            replies = stack.control.control.ping(destination=[stack.node], timeout=1.0)
            if any(stack.node in reply for reply in replies):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Celery worker did not start in time:\n{stack.log()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> t.Iterator[Stack]:
    require_redis()
    import redis
    from celery import Celery

    prefix = f"jobify-celery-test-{uuid.uuid4().hex[:12]}"
    broker_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/14"
    env = {
        "JOBIFY_TEST_CELERY_PREFIX": prefix,
        "JOBIFY_TEST_CELERY_BROKER": broker_url,
        "PYTHONPATH": os.pathsep.join(p for p in (HERE, ROOT, os.environ.get("PYTHONPATH")) if p),
    }
    node = f"{prefix}@localhost"
    log_path = str(tmp_path_factory.mktemp("celery") / "worker.log")
    markers = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)
    broker = redis.Redis.from_url(broker_url)
    control = Celery("jobify-test-control", broker=broker_url)
    control.conf.broker_connection_retry_on_startup = True
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app:celery_app", "worker",
             "--pool=prefork", "--concurrency=2", "--loglevel=INFO", "--hostname", node,
             "-Q", f"{prefix},{prefix}.serial",  # the default queue, and /serial's
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        stack = Stack("", prefix, node, worker, log_path, markers, broker, control)
        with run_gunicorn("celery_app:flask_app", workers=2, threads=8, env=env,
                          extra_args=["--pythonpath", f"{HERE},{ROOT}"]) as url:
            stack.url = url
            _wait_worker_ready(stack, time.monotonic() + 60)
            yield stack
    finally:
        stop_process_group(worker, signal.SIGQUIT)  # a cold shutdown
        control.close()
        broker.flushdb()
        broker.close()
        drop_redis_keys(prefix)
        markers.close()


# -- helpers ---------------------------------------------------------------
def token() -> str:
    return uuid.uuid4().hex[:10]


def submit(stack: Stack, method: str, path: str, **kwargs: t.Any) -> str:
    headers = {**FLAG, **kwargs.pop("headers", {})}
    accepted = requests.request(method, stack.url + path, headers=headers, timeout=30, **kwargs)
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["jobId"]


def record(stack: Stack, job_id: str, **params: t.Any) -> dict[str, t.Any]:
    answer = requests.get(f"{stack.url}/jobs/{job_id}", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_final(stack: Stack, job_id: str, within: float = 20.0) -> dict[str, t.Any]:
    deadline = time.monotonic() + within
    current = record(stack, job_id)
    while current["status"] not in FINAL:
        assert time.monotonic() < deadline, f"job still {current['status']}: {current}"
        current = record(stack, job_id, wait=2, version=current["version"])
    return current


def wait_until(what: str, check: t.Callable[[], t.Any], within: float = 15.0) -> t.Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def wait_running(stack: Stack, job_id: str, message: str = "waiting") -> dict[str, t.Any]:
    """Wait until the job runs and its view published ``message``."""
    def there() -> dict[str, t.Any] | None:
        current = record(stack, job_id, wait=1)
        assert current["status"] in ("pending", "running"), current
        ok = current["status"] == "running" and current["progress"]["message"] == message
        return current if ok else None
    return wait_until(f"job {job_id} to run", there)


def wait_worker_idle(stack: Stack) -> None:
    """Wait until the broker holds no task of ours and the worker runs,
    holds or schedules none."""
    def idle() -> bool:
        if stack.broker.llen(stack.prefix) or stack.broker.hlen("unacked"):
            return False
        inspect = stack.inspect()
        for ask in (inspect.active, inspect.reserved, inspect.scheduled):
            replies = ask() or {}
            if stack.node not in replies or replies[stack.node]:
                return False
        return True
    wait_until("the worker to be idle", idle, within=20)


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def run_info(stack: Stack, tok: str) -> dict[str, str]:
    markers = stack.markers.hgetall(stack.marker(tok, "run"))
    return {k.decode(): v.decode() for k, v in markers.items()}


def runs(stack: Stack, tok: str) -> int:
    return int(stack.markers.get(stack.marker(tok, "runs")) or 0)


# -- tests -----------------------------------------------------------------
def test_upload_runs_on_the_worker_reports_progress_and_replays_the_sync_response(stack):
    blob = hashlib.sha256(b"seed").digest() * 8000 + bytes(range(256))  # ~256 KB, binary
    data = {"field": "valeur é", "other": "x"}

    def files() -> dict[str, t.Any]:
        return {"file": ("données.bin", blob, "application/octet-stream")}

    sync_token, job_token = token(), token()
    sync = requests.post(f"{stack.url}/upload?t={sync_token}", files=files(), data=data,
                         timeout=30)
    assert sync.status_code == 201, sync.text
    assert sync.json()["sha256"] == hashlib.sha256(blob).hexdigest()

    seen: list[tuple[float | None, str | None]] = []

    def on_progress(progress: t.Any) -> None:
        seen.append((progress.percent, progress.message))
        if progress.message == "uploaded":  # lets the view go on: it waits for this
            stack.markers.set(stack.marker(job_token, "ack"), 1)

    with JobSession(on_progress=on_progress, timeout=60) as session:
        final = session.post(f"{stack.url}/upload?t={job_token}", files=files(), data=data,
                             headers=FLAG, timeout=30)
    assert [r.status_code for r in final.history][:1] == [202]
    assert (final.status_code, final.content) == (sync.status_code, sync.content)
    names = {n.lower() for n in sync.headers} - PER_CONNECTION
    assert names == {n.lower() for n in final.headers} - PER_CONNECTION
    for name in names:
        assert final.headers[name] == sync.headers[name], name
    assert (50, "uploaded") in seen

    # It ran as a job in a child of the Celery worker, not in gunicorn.
    sync_run, job_run = run_info(stack, sync_token), run_info(stack, job_token)
    assert sync_run["is_job"] == "0" and job_run["is_job"] == "1"
    assert job_run["acked"] == "1"  # the view saw that the client saw its progress
    assert job_run["pid"] != sync_run["pid"]
    assert parent_pid(int(job_run["pid"])) == stack.worker.pid
    assert parent_pid(int(sync_run["pid"])) != stack.worker.pid


def test_long_poll_answers_when_the_worker_changes_the_job(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/gate?t={tok}&twice=1")
    seen = wait_running(stack, job_id)
    answers: list[requests.Response] = []

    def long_poll() -> None:
        answers.append(requests.get(f"{stack.url}/jobs/{job_id}",
                                    params={"wait": 30, "version": seen["version"]}, timeout=60))

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    try:
        poller.join(0.5)
        assert poller.is_alive(), f"the long-poll answered before any change: {answers}"
        stack.markers.set(stack.marker(tok, "go"), 1)  # the worker's view moves on
        poller.join(15)  # far less than wait=30: only a change can have answered it
        assert not poller.is_alive(), "the long-poll did not answer the worker's change"
        changed = answers[0].json()
        assert changed["version"] > seen["version"]
        assert changed["status"] == "running"
        assert changed["progress"] == {"percent": 60.0, "message": "released"}
    finally:
        stack.markers.set(stack.marker(tok, "go2"), 1)
    assert wait_final(stack, job_id)["status"] == "succeeded"


def test_cancel_a_running_job_from_the_web_process(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/gate?t={tok}")
    try:
        wait_running(stack, job_id)
        answer = requests.delete(f"{stack.url}/jobs/{job_id}", timeout=30)
        assert answer.status_code == 202, answer.text
        final = wait_final(stack, job_id)
        assert final["status"] == "cancelled"
        assert final["error"]["type"] == "cancelled"
        assert stack.markers.get(stack.marker(tok, "saw_cancel")) == b"1"
    finally:
        stack.markers.set(stack.marker(tok, "go"), 1)


def test_cancel_a_pending_job_while_the_worker_is_busy(stack):
    blockers = [token(), token()]
    third = token()
    blocker_ids = [submit(stack, "POST", f"/gate?t={tok}") for tok in blockers]
    try:
        for job_id in blocker_ids:  # both pool children are now busy
            wait_running(stack, job_id)
        job_id = submit(stack, "POST", f"/gate?t={third}")
        assert record(stack, job_id)["status"] == "pending"
        answer = requests.delete(f"{stack.url}/jobs/{job_id}", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
    finally:
        for tok in [*blockers, third]:
            stack.markers.set(stack.marker(tok, "go"), 1)
    for blocker in blocker_ids:
        assert wait_final(stack, blocker)["status"] == "succeeded"
    wait_worker_idle(stack)  # the third's task was dropped or found the job cancelled
    final = record(stack, job_id)
    assert final["status"] == "cancelled"
    assert final["attempts"] == 0
    assert runs(stack, third) == 0, "the view of a job cancelled while pending ran"


def test_cancel_a_job_waiting_for_its_retry(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/flaky-slow?t={tok}")

    def waiting_for_retry() -> dict[str, t.Any] | None:
        current = record(stack, job_id, wait=1)
        assert current["status"] in ("pending", "running"), current
        return current if current["status"] == "pending" and current["attempts"] == 1 else None

    waiting = wait_until("the first run to fail", waiting_for_retry)
    assert waiting["error"]["type"] == "RuntimeError"
    answer = requests.delete(f"{stack.url}/jobs/{job_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    wait_worker_idle(stack)  # past the retry's countdown: its task was dropped
    final = record(stack, job_id)
    assert (final["status"], final["attempts"]) == ("cancelled", 1)
    assert runs(stack, tok) == 1, "a job cancelled while waiting for its retry ran again"


def test_timeout_of_a_view_that_ignores_cancellation(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/stubborn?t={tok}")
    final = wait_final(stack, job_id)
    assert final["status"] == "timed_out"
    assert final["error"]["type"] == "timeout"
    # Celery's soft time limit interrupted the view that did not listen.
    stopped = wait_until("the stubborn view to stop",
                         lambda: stack.markers.get(stack.marker(tok, "stopped")))
    assert stopped == b"SoftTimeLimitExceeded"
    assert record(stack, job_id)["status"] == "timed_out"  # its late end changed nothing
    assert requests.get(f"{stack.url}/jobs/{job_id}/result", timeout=30).status_code == 409

    # The worker (both children) still runs jobs.
    quick = [token(), token()]
    ids = [submit(stack, "GET", f"/quick?t={tok}") for tok in quick]
    for job_id in ids:
        assert wait_final(stack, job_id)["status"] == "succeeded"


def test_retries_on_celery_for_a_retryable_post(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/flaky?t={tok}")
    final = wait_final(stack, job_id)
    assert final["status"] == "succeeded", final
    assert (final["attempts"], final["maxAttempts"]) == (3, 3)
    assert runs(stack, tok) == 3
    result = requests.get(f"{stack.url}/jobs/{job_id}/result", timeout=30)
    assert result.json() == {"runs": 3, "attempt": 3}


def test_a_failed_post_without_retryable_runs_once(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/flaky-post?t={tok}")
    final = wait_final(stack, job_id)
    assert final["status"] == "failed", final
    assert (final["attempts"], final["maxAttempts"]) == (1, 1)
    assert final["httpStatus"] == 500
    assert final["error"]["type"] == "RuntimeError"
    wait_worker_idle(stack)  # a retry would have been sent within 0.1 s
    assert runs(stack, tok) == 1
    assert record(stack, job_id)["status"] == "failed"


def _kill_first_run(stack: Stack, path: str) -> tuple[str, str, int]:
    tok = token()
    job_id = submit(stack, "POST", f"{path}?t={tok}")
    pid = int(wait_until("the view to start",
                         lambda: stack.markers.get(stack.marker(tok, "pid"))))
    assert parent_pid(pid) == stack.worker.pid  # a pool child of our worker
    assert record(stack, job_id)["status"] == "running"
    os.kill(pid, signal.SIGKILL)
    return tok, job_id, pid


def test_kill_9_of_a_pool_child_fails_a_job_that_may_not_run_again(stack):
    tok, job_id, _ = _kill_first_run(stack, "/linger")
    final = wait_final(stack, job_id, within=30)
    assert final["status"] == "failed", final
    assert final["error"]["type"] == "lost"
    assert final["attempts"] == 1
    assert runs(stack, tok) == 1


def test_kill_9_of_a_pool_child_runs_a_retryable_job_again(stack):
    tok, job_id, killed = _kill_first_run(stack, "/linger-retry")
    final = wait_final(stack, job_id, within=30)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    assert runs(stack, tok) == 2
    assert run_info(stack, tok)["pid"] != str(killed)
    result = requests.get(f"{stack.url}/jobs/{job_id}/result", timeout=30)
    assert result.json() == {"runs": 2, "attempt": 2}


def test_a_hung_run_is_taken_over_and_its_late_end_changes_nothing(stack):
    tok = token()
    job_id = submit(stack, "POST", f"/hang-retry?t={tok}")
    pid = int(wait_until("the view to start",
                         lambda: stack.markers.get(stack.marker(tok, "pid"))))
    assert parent_pid(pid) == stack.worker.pid
    os.kill(pid, signal.SIGSTOP)  # hung: its lease is no longer renewed
    try:
        final = wait_final(stack, job_id, within=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    stack.markers.set(stack.marker(tok, "go"), 1)  # the first run wakes up and ends late
    saw_cancel = wait_until("the stale run to end",
                            lambda: stack.markers.get(stack.marker(tok, "stale_saw_cancel")))
    assert saw_cancel == b"1", "the stale run was not told that it had been taken over"
    wait_worker_idle(stack)
    after = record(stack, job_id)
    assert (after["status"], after["attempts"], after["version"]) == (
        "succeeded", 2, final["version"])
    result = requests.get(f"{stack.url}/jobs/{job_id}/result", timeout=30)
    assert result.json() == {"attempt": 2}


def test_secrets_stay_out_of_task_messages_logs_and_the_view(stack):
    tok = token()
    secret_auth, secret_key = f"s3cret-auth-{tok}", f"s3cret-key-{tok}"
    job_id = submit(stack, "POST", f"/gate?t={tok}",
                    headers={"Authorization": f"Bearer {secret_auth}", "X-Api-Key": secret_key})
    try:
        wait_running(stack, job_id)
        # What monitoring tools show of the running task: its argsrepr.
        active = stack.inspect().active(safe=True)[stack.node]
        task = next(task for task in active if task["id"].startswith(job_id))
        assert job_id in str(task["args"])
        assert "s3cret" not in json.dumps(active)
    finally:
        stack.markers.set(stack.marker(tok, "go"), 1)
    assert wait_final(stack, job_id)["status"] == "succeeded"
    seen = requests.get(f"{stack.url}/jobs/{job_id}/result", timeout=30).json()
    # JOBIFY_DROP_HEADERS kept Authorization away from the worker; another
    # header went through the broker (so the check above could have failed).
    assert seen == {"released": True, "authorization": None, "api_key": secret_key}
    log = stack.log()
    received = [line for line in log.splitlines() if "TASK RECEIVED" in line and job_id in line]
    assert received, "the worker's log does not show the task's argsrepr"
    assert "s3cret" not in log


def test_the_request_saved_for_a_retry_holds_no_dropped_header(stack):
    tok = token()
    secret_auth, secret_key = f"s3cret-auth-{tok}", f"s3cret-key-{tok}"
    job_id = submit(stack, "POST", f"/hang-retry?t={tok}",
                    headers={"Authorization": f"Bearer {secret_auth}", "X-Api-Key": secret_key})
    saved_key = f"{stack.prefix}:request:{job_id}"
    try:
        wait_until("the view to start", lambda: stack.markers.get(stack.marker(tok, "pid")))
        # Saved in the store so that another process could run it again.
        saved = stack.markers.get(saved_key)
        assert saved is not None
        request = json.loads(saved)["request"]
        assert request["environ"]["HTTP_X_API_KEY"] == secret_key
        assert "HTTP_AUTHORIZATION" not in request["environ"]
        assert secret_auth.encode() not in saved
    finally:
        stack.markers.set(stack.marker(tok, "go"), 1)
    assert wait_final(stack, job_id)["status"] == "succeeded"
    assert stack.markers.get(saved_key) is None  # forgotten once the job ended


def test_an_execution_queue_of_one_runs_one_job_at_a_time_on_celery(stack):
    """``@jobify.job(queue=..., concurrency=1)`` on a worker with two pool
    children: its jobs go to the Celery queue of that name, and never two
    run at once (a run that finds no slot is sent again with a countdown)."""
    ids = [submit(stack, "POST", "/serial") for _ in range(4)]
    runs = []
    for job_id in ids:
        assert wait_final(stack, job_id, within=60)["status"] == "succeeded"
        runs.append(requests.get(f"{stack.url}/jobs/{job_id}/result", timeout=30).json())
    spans = sorted((run["start"], run["end"]) for run in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    print(f"\n4 jobs of a queue of 1 on Celery: ran in {len({r['pid'] for r in runs})}"
          " pool children")
