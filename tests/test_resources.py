"""What one request may consume: bodies spooled to disk, size limits, bounded waits."""
from __future__ import annotations

import gc
import hashlib
import threading
import time
import typing as t
import weakref

import pytest
from conftest import drop_redis_keys, store_url
from flask import Flask, request
from helpers import finish

from flask_jobify import Jobify
from flask_jobify.capture import CapturedBody

FLAG = {"X-Job-Flag": "ON"}


def build(store: str = "memory://", **config: t.Any) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, JOBIFY_SHUTDOWN_GRACE=0.5, **config)
    jobify = Jobify(app)

    @app.put("/digest")
    @jobify.job(retries=2)
    def digest() -> t.Any:
        data = request.get_data()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    @app.post("/upload")
    @jobify.job
    def upload() -> t.Any:
        file = request.files["file"]
        return {"name": file.filename, "sha256": hashlib.sha256(file.read()).hexdigest()}

    return app, jobify


#: Bodies and limits do not depend on the store: memory, but where a test
#: needs a shared store (SQLite) or each of them.
pytestmark = pytest.mark.stores("memory")


def test_a_large_body_is_spooled_to_disk_and_replayed_whole(apps):
    app, _ = apps(build, JOBIFY_SPOOL_THRESHOLD=64 * 1024)
    body = bytes(range(256)) * 20_000  # 5 MB
    seen: list[CapturedBody] = []
    app.extensions["jobify"].request_filters.append(
        lambda captured: seen.append(captured.body) or captured)
    client = app.test_client()
    answer = client.put("/digest", data=body, headers=FLAG)
    assert answer.status_code == 202
    record = finish(client, answer.headers["X-Job-Id"])
    assert record["status"] == "succeeded"
    assert client.get(f"/jobs/{record['id']}/result").get_json() == {
        "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert seen and not seen[0].in_memory
    assert seen[0].size == len(body)


def test_a_spool_threshold_of_zero_keeps_every_body_on_disk(apps):
    app, _ = apps(build, JOBIFY_SPOOL_THRESHOLD=0)
    seen: list[CapturedBody] = []
    app.extensions["jobify"].request_filters.append(
        lambda captured: seen.append(captured.body) or captured)
    client = app.test_client()
    answer = client.put("/digest", data=b"x" * 5000, headers=FLAG)
    assert finish(client, answer.headers["X-Job-Id"])["status"] == "succeeded"
    assert not seen[0].in_memory


def test_a_small_body_stays_in_memory(apps):
    app, _ = apps(build)
    seen: list[CapturedBody] = []
    app.extensions["jobify"].request_filters.append(
        lambda captured: seen.append(captured.body) or captured)
    client = app.test_client()
    answer = client.put("/digest", data=b"small", headers=FLAG)
    assert finish(client, answer.headers["X-Job-Id"])["status"] == "succeeded"
    assert seen[0].in_memory


def test_spooled_uploads_parse_in_the_job(apps):
    app, _ = apps(build, JOBIFY_SPOOL_THRESHOLD=1024)
    import io
    content = b"\x00\x01" * 100_000
    client = app.test_client()
    answer = client.post("/upload", headers=FLAG,
                         data={"file": (io.BytesIO(content), "blob.bin")})
    record = finish(client, answer.headers["X-Job-Id"])
    assert record["status"] == "succeeded"
    assert client.get(f"/jobs/{record['id']}/result").get_json() == {
        "name": "blob.bin", "sha256": hashlib.sha256(content).hexdigest()}


def test_readers_of_one_body_are_independent():
    import io
    body = CapturedBody.spool(io.BytesIO(bytes(range(256)) * 1000), threshold=1000)
    assert not body.in_memory
    results: list[bytes] = []

    def read_all() -> None:
        reader = body.reader()
        chunks = []
        while chunk := reader.read(777):
            chunks.append(chunk)
        results.append(b"".join(chunks))

    threads = [threading.Thread(target=read_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [bytes(range(256)) * 1000] * 8
    assert body.sha256().hexdigest() == hashlib.sha256(bytes(range(256)) * 1000).hexdigest()


@pytest.mark.parametrize("chunked", [False, True])
def test_max_content_length_is_a_413_json_and_nothing_is_stored(apps, chunked):
    app, _ = apps(build, MAX_CONTENT_LENGTH=1000)
    client = app.test_client()
    kwargs: dict[str, t.Any] = {"data": b"x" * 5000, "headers": dict(FLAG)}
    if chunked:  # no Content-Length: the server says the stream ends by itself
        import io
        kwargs = {"input_stream": io.BytesIO(b"x" * 5000),
                  "headers": {**FLAG, "Transfer-Encoding": "chunked"},
                  "environ_overrides": {"wsgi.input_terminated": True}}
    answer = client.put("/digest", **kwargs)
    assert answer.status_code == 413
    assert answer.get_json()["error"]["code"] == "content_too_large"
    assert app.extensions["jobify"].store.list() == []


@pytest.mark.stores("sqlite")
def test_a_body_that_would_leave_the_process_is_limited(apps):
    # PUT with retries on a shared store: the request is saved for crash recovery.
    app, _ = apps(build, JOBIFY_MAX_SAVED_BODY=1000)
    client = app.test_client()
    answer = client.put("/digest", data=b"x" * 1001, headers=FLAG)
    assert answer.status_code == 413
    assert "JOBIFY_MAX_SAVED_BODY" in answer.get_json()["error"]["message"]
    assert app.extensions["jobify"].store.list() == []
    accepted = client.put("/digest", data=b"x" * 1000, headers=FLAG)
    assert accepted.status_code == 202
    # A job whose request stays in the process is not limited by it.
    local, _ = build(JOBIFY_MAX_SAVED_BODY=1000)
    apps.add(local)
    assert local.test_client().put("/digest", data=b"x" * 5000, headers=FLAG).status_code == 202


def test_a_long_poll_never_outlives_its_wait_when_redis_is_unreachable(apps):
    import socket
    import time

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    app, _ = build(f"redis://127.0.0.1:{port}/0?prefix=unreachable")
    apps.add(app)
    client = app.test_client()
    for wait in (0.5, 1, 2):
        began = time.monotonic()
        answer = client.get(f"/jobs/{'A' * 22}?wait={wait}")
        took = time.monotonic() - began
        assert answer.status_code == 503
        assert answer.get_json()["error"]["code"] == "store_unavailable"
        assert took < wait + 1.0, (wait, took)  # it was wait + 5 s


@pytest.mark.stores("sqlite")
def test_expired_jobs_are_swept_before_the_first_request(apps):
    import time

    from flask_jobify.models import Job, JobStatus
    from flask_jobify.stores import store_from_url

    old = store_from_url(apps.url)
    gone = Job(id="G" * 22, operation="x", method="GET", path="/x",
               status=JobStatus.SUCCEEDED, finished_at=1.0, expires_at=2.0)
    old.create(gone)
    apps(build, JOBIFY_CLEANUP_INTERVAL=0.05)  # no request is ever served
    deadline = time.monotonic() + 5
    while old.list(limit=5) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert old.list(limit=5) == []
    old.close()


@pytest.mark.stores("sqlite")
def test_a_forked_child_holds_none_of_its_parents_jobs(apps):
    import os

    from flask_jobify.leases import Held

    app, jobify = apps(build)
    state = jobify.get_state(app)
    state.start()
    state.leases.held["P" * 22] = Held(attempts=1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: started at its boot, as a server hook would
        try:
            jobify.start(app)
            os.write(write, str(len(state.leases.held)).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"0"
    assert "P" * 22 in state.leases.held  # the parent still holds it


@pytest.mark.stores("memory", "sqlite", "redis")
def test_dropped_apps_are_collected_and_their_threads_end(store_backend, tmp_path):
    """A suite that builds an app per test and never shuts them down: each
    dropped app's state is collected, and its threads (job workers, the
    monitor, the Redis listener) end, without ``jobify.shutdown(app)``."""
    gc.collect()
    baseline = threading.active_count()
    states: list[weakref.ref[t.Any]] = []
    prefixes = []
    for n in range(20):
        app, _ = build(store_url(store_backend, tmp_path / str(n)))
        client = app.test_client()
        accepted = client.put("/digest", data=b"x" * n, headers=FLAG)
        assert finish(client, accepted.get_json()["jobId"])["status"] == "succeeded"
        state = app.extensions["jobify"]
        assert state.executor.pool._threads and state.scheduler._thread is not None  # they ran
        states.append(weakref.ref(state))
        prefixes.append(getattr(state.store, "prefix", None))
        del app, client, accepted, state
    assert threading.active_count() > baseline + 20
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gc.collect()
        if all(ref() is None for ref in states) and threading.active_count() <= baseline + 2:
            break
        time.sleep(0.05)
    assert [ref for ref in states if ref() is not None] == []
    assert threading.active_count() <= baseline + 2, [
        thread.name for thread in threading.enumerate()]
    for prefix in prefixes:
        if prefix is not None:
            drop_redis_keys(prefix)
