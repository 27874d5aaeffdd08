"""The extension end to end: the same request, run synchronously and as a job.

The ``app``/``client``/``make_app`` fixtures (tests/conftest.py) build the
core app (tests/core_app.py) on each store: memory, sqlite and redis."""
from __future__ import annotations

import io
import json
import threading
import time
import typing as t

import pytest
import requests
from flask import Flask, abort, request
from helpers import finish
from servers import serve_app

from flask_jobify import Jobify, JobStatus, current_job
from flask_jobify.capture import capture_request
from flask_jobify.models import Job, new_job_id
from flask_jobify.options import JobOptions

FLAG = {"X-Job-Flag": "ON"}
COMPARED_HEADERS = ("Content-Type", "Content-Disposition", "X-Extra", "Location", "Vary")


def wait_until_idle(app: Flask) -> None:
    """Wait until no job thread of ``app`` is running any more."""
    executor = app.extensions["jobify"].executor
    idle = threading.Event()
    for _ in range(500):
        if executor.running == 0 and executor.queued == 0:
            return
        idle.wait(0.02)
    raise AssertionError("job threads still running")


@pytest.mark.parametrize(
    "method, path, kwargs, final",
    [
        ("post", "/json?q=1", {"json": {"a": [1, 2]}, "headers": {"X-Custom": "c"}}, "succeeded"),
        ("get", "/text", {}, "succeeded"),
        ("get", "/binary", {}, "succeeded"),
        ("get", "/redirect", {}, "succeeded"),
        ("get", "/missing", {}, "failed"),
        ("get", "/handled", {}, "failed"),
        ("get", "/crash", {}, "failed"),
    ],
)
def test_extension_job_result_equals_synchronous_response(client, method, path, kwargs, final):
    sync = getattr(client, method)(path, **kwargs)
    headers = {**kwargs.pop("headers", {}), **FLAG}
    accepted = getattr(client, method)(path, headers=headers, **kwargs)
    assert accepted.status_code == 202
    job_id = accepted.get_json()["jobId"]
    record = finish(client, job_id)
    assert record["status"] == final
    assert record["httpStatus"] == sync.status_code
    replayed = client.get(f"/jobs/{job_id}/result")
    assert replayed.status_code == sync.status_code
    assert replayed.data == sync.data
    for name in COMPARED_HEADERS:
        assert replayed.headers.get(name) == sync.headers.get(name), name


def test_extension_equivalence_over_real_http(app):
    with serve_app(app) as url:
        for path in ("/text", "/binary", "/missing", "/crash"):
            sync = requests.get(url + path, allow_redirects=False, timeout=10)
            accepted = requests.get(url + path, headers=FLAG, timeout=10)
            assert accepted.status_code == 202
            status_url = requests.compat.urljoin(url, accepted.headers["Location"])
            record = requests.get(status_url + "?wait=20", timeout=30).json()
            while record["status"] in ("pending", "running"):
                record = requests.get(status_url + "?wait=20", timeout=30).json()
            result = requests.get(url + accepted.json()["resultUrl"], timeout=10)
            assert (result.status_code, result.content) == (sync.status_code, sync.content)
            assert result.headers["Content-Type"] == sync.headers["Content-Type"]


def test_extension_accepted_answer_has_protocol_headers(client):
    accepted = client.post("/json", json={}, headers=FLAG)
    body = accepted.get_json()
    assert set(body) == {"jobId", "status", "statusUrl", "resultUrl"}
    assert accepted.headers["Location"] == body["statusUrl"] == f"/jobs/{body['jobId']}"
    assert accepted.headers["X-Job-Id"] == body["jobId"]
    assert accepted.headers["X-Job-Flag"] == "ON"
    assert int(accepted.headers["Retry-After"]) >= 1
    assert len(body["jobId"]) == 22


def test_extension_flag_off_or_absent_runs_synchronously(client):
    for headers in ({}, {"X-Job-Flag": "off"}, {"X-Job-Flag": "OFF", "Prefer": "respond-async"}):
        response = client.post("/json", json={"x": 1}, headers=headers)
        assert response.status_code == 200
        assert response.get_json()["echo"] == {"x": 1}
        assert {"Prefer", "X-Job-Flag"} <= set(response.vary)


def test_extension_flag_value_is_case_insensitive(client):
    assert client.post("/json", json={}, headers={"X-Job-Flag": "on"}).status_code == 202


def test_extension_invalid_flag_is_400_json(client):
    response = client.post("/json", json={}, headers={"X-Job-Flag": "maybe"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_job_flag"


def test_extension_plain_views_ignore_the_flag_and_do_not_vary(client):
    response = client.get("/plain", headers=FLAG)
    assert response.status_code == 200
    assert "X-Job-Flag" not in response.vary


def test_extension_prefer_respond_async_and_wait(client):
    accepted = client.post("/json", json={}, headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202
    assert accepted.headers["Preference-Applied"] == "respond-async"
    direct = client.post("/json", json={"n": 2}, headers={"Prefer": "respond-async, wait=10"})
    assert direct.status_code == 200
    assert direct.get_json()["echo"] == {"n": 2}


def test_extension_progress_is_published(client):
    job_id = client.post("/json", json={}, headers=FLAG).get_json()["jobId"]
    assert finish(client, job_id)["progress"] == {"percent": 50.0, "message": "half"}


def test_extension_current_job_outside_a_job_is_a_no_op(app):
    with app.test_request_context():
        assert current_job.is_job is False
        current_job.progress(10, "ignored")
        assert current_job.cancelled is False
        with pytest.raises(ValueError):
            current_job.progress(101)


def test_extension_job_request_is_rebuilt_without_g(app, client):
    @app.before_request
    def mark() -> None:
        from flask import g
        g.mark = g.get("mark", 0) + 1

    accepted = client.post("/json?q=7", json={"k": "v"}, headers={**FLAG, "X-Custom": "h"})
    job_id = accepted.get_json()["jobId"]
    finish(client, job_id)
    body = client.get(f"/jobs/{job_id}/result").get_json()
    # before_request ran again for the job's own request, with a fresh g
    assert body == {"echo": {"k": "v"}, "query": "7", "header": "h", "g": 1}


@pytest.mark.parametrize("parse_form_first", [False, True])
def test_extension_uploads_are_readable_inside_the_job(app, client, parse_form_first):
    if parse_form_first:
        @app.before_request
        def read_form() -> None:
            request.form.get("field")

    data = {"field": "f", "file": (io.BytesIO(b"name,species\nrex,dog\n"), "pets.csv")}
    accepted = client.post("/upload", data=data, headers=FLAG, content_type="multipart/form-data")
    job_id = accepted.get_json()["jobId"]
    assert finish(client, job_id)["status"] == "succeeded"
    assert client.get(f"/jobs/{job_id}/result").get_json() == {
        "name": "pets.csv", "content": "name,species\nrex,dog\n", "field": "f"}


def test_extension_guards_run_before_acceptance():
    app = Flask(__name__)
    app.config["JOBIFY_STORE"] = "memory://"
    jobify = Jobify(app)

    @app.before_request
    def auth() -> None:  # registered after Jobify: still runs before acceptance
        if request.path == "/hooked" and request.headers.get("Authorization") != "ok":
            abort(401)

    def login_required(view):
        def wrapped(*a, **kw):
            if request.headers.get("Authorization") != "ok":
                abort(403)
            return view(*a, **kw)
        return wrapped

    @app.post("/hooked", endpoint="hooked")
    @jobify.job
    def hooked() -> t.Any:
        return {}

    @app.post("/decorated", endpoint="decorated")
    @login_required
    @jobify.job
    def decorated() -> t.Any:
        return {}

    client = app.test_client()
    assert client.post("/hooked", headers=FLAG).status_code == 401
    assert client.post("/decorated", headers=FLAG).status_code == 403
    assert client.post("/hooked", headers={**FLAG, "Authorization": "ok"}).status_code == 202
    assert len(app.extensions["jobify"].store.list()) == 1


def test_extension_all_views_makes_undecorated_views_jobifiable():
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_ALL_VIEWS=True)
    Jobify(app)

    @app.get("/anything")
    def anything() -> t.Any:
        return {"ran": True}

    client = app.test_client()
    accepted = client.get("/anything", headers=FLAG)
    assert accepted.status_code == 202
    job_id = accepted.get_json()["jobId"]
    assert finish(client, job_id)["operation"] == "anything"
    assert client.get("/jobs", headers=FLAG).status_code == 200  # the jobs API is never a job


def test_extension_cancel_pending_with_one_worker(make_app):
    app = make_app(JOBIFY_MAX_WORKERS=1)
    client = app.test_client()
    gates = app.extensions["gates"]
    first = client.post("/blocking?n=first", headers=FLAG).get_json()["jobId"]
    assert gates.started.wait(10)
    second = client.post("/blocking?n=second", headers=FLAG).get_json()["jobId"]
    cancelled = client.delete(f"/jobs/{second}")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    gates.release.set()
    assert finish(client, first)["status"] == "succeeded"
    assert finish(client, second)["status"] == "cancelled"
    assert gates.ran == ["first"]  # the cancelled job never ran
    assert client.get(f"/jobs/{second}/result").get_json()["error"]["code"] == "no_result"


def test_extension_cancel_running_is_cooperative(app, client):
    gates = app.extensions["gates"]
    job_id = client.post("/blocking", headers=FLAG).get_json()["jobId"]
    assert gates.started.wait(10)
    asked = client.delete(f"/jobs/{job_id}")
    assert asked.status_code == 202
    assert asked.get_json()["cancelRequested"] is True
    assert gates.saw_cancel.wait(10)
    record = finish(client, job_id)
    assert record["status"] == "cancelled"
    assert record["error"]["type"] == "cancelled"
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.get(f"/jobs/{job_id}").status_code == 404


def test_extension_timeout_marks_timed_out_and_discards_late_result(app, client):
    gates = app.extensions["gates"]
    job_id = client.post("/slow", headers=FLAG).get_json()["jobId"]
    assert gates.started.wait(10)
    record = finish(client, job_id)  # while the view is still blocked
    assert record["status"] == "timed_out"
    assert record["error"]["type"] == "timeout"
    gates.release.set()
    wait_until_idle(app)  # the view has returned its late result by now
    store = app.extensions["jobify"].store
    assert store.get(job_id).status is JobStatus.TIMED_OUT
    assert client.get(f"/jobs/{job_id}/result").get_json()["error"]["code"] == "no_result"


@pytest.mark.stores("memory")  # reads the memory store's own dict: gone, not hidden
def test_extension_expired_jobs_are_404_and_reclaimed(app, client):
    job_id = client.post("/short-lived", headers=FLAG).get_json()["jobId"]
    record = finish(client, job_id)
    store = app.extensions["jobify"].store
    store.purge_expired(now=time.time() + 60)
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert job_id not in store._jobs  # type: ignore[attr-defined]
    assert record["expiresAt"] is not None


def test_extension_backpressure_answers_503_never_drops(make_app):
    app = make_app(JOBIFY_MAX_WORKERS=1, JOBIFY_MAX_QUEUED=1)
    client = app.test_client()
    gates = app.extensions["gates"]
    running = client.post("/blocking", headers=FLAG)
    assert gates.started.wait(10)
    queued = client.post("/blocking", headers=FLAG)
    refused = client.post("/blocking", headers=FLAG)
    assert (running.status_code, queued.status_code, refused.status_code) == (202, 202, 503)
    assert refused.get_json()["error"]["code"] == "queue_full"
    assert refused.headers["Retry-After"]
    assert len(app.extensions["jobify"].store.list()) == 2  # the refused one left no trace
    gates.release.set()
    for accepted in (running, queued):
        assert finish(client, accepted.get_json()["jobId"])["status"] == "succeeded"


def test_extension_long_poll_returns_on_completion(app, client):
    gates = app.extensions["gates"]
    job_id = client.post("/blocking", headers=FLAG).get_json()["jobId"]
    assert gates.started.wait(10)
    answers: list[dict] = []
    poller = threading.Thread(
        target=lambda: answers.append(client.get(f"/jobs/{job_id}?wait=30").get_json()))
    poller.start()
    gates.release.set()
    poller.join(25)  # well before the 30 s wait would have run out
    assert not poller.is_alive()
    assert answers[0]["version"] >= 2


def test_extension_shutdown_fails_unfinished_jobs_and_refuses_new_ones(app, client):
    gates = app.extensions["gates"]
    job_id = client.post("/blocking", headers=FLAG).get_json()["jobId"]  # 30 s timeout
    assert gates.started.wait(10)
    app.extensions["jobify"].shutdown(grace=0.1)
    record = client.get(f"/jobs/{job_id}").get_json()
    assert record["status"] == "failed"
    assert record["error"]["type"] == "shutdown"
    assert gates.saw_cancel.wait(10)  # the running view was told to stop
    wait_until_idle(app)
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "failed"
    refused = client.post("/json", json={}, headers=FLAG)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "shutting_down"


def test_extension_thousand_concurrent_submissions_lose_nothing(app):
    app.extensions["jobify"].executor.pool.max_queued = 2000
    with serve_app(app) as url:
        ids: list[str] = []
        lock = threading.Lock()

        def submit(count: int) -> None:
            session = requests.Session()
            for _ in range(count):
                answer = session.post(url + "/json", json={"n": 1}, headers=FLAG, timeout=30)
                assert answer.status_code == 202
                with lock:
                    ids.append(answer.json()["jobId"])

        threads = [threading.Thread(target=submit, args=(63 if n < 8 else 62,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert len(ids) == 1000 == len(set(ids))
    store = app.extensions["jobify"].store
    for job_id in ids:
        job = store.get(job_id)
        while not job.is_final:
            job = store.wait(job_id, job.version, 10)
        assert job.status is JobStatus.SUCCEEDED


def test_extension_init_app_twice_is_refused():
    app = Flask(__name__)
    app.config["JOBIFY_STORE"] = "memory://"
    jobify = Jobify(app)
    with pytest.raises(RuntimeError, match="already registered"):
        jobify.init_app(app)


def test_extension_one_instance_serves_two_apps_separately():
    jobify = Jobify()
    apps = []
    for name in ("a", "b"):
        app = Flask(name)
        app.config["JOBIFY_STORE"] = "memory://"
        jobify.init_app(app)

        @app.post("/work")
        @jobify.job
        def work() -> t.Any:
            return {"app": current_job.id is not None}

        apps.append(app)
    job_id = apps[0].test_client().post("/work", headers=FLAG).get_json()["jobId"]
    assert apps[1].test_client().get(f"/jobs/{job_id}").status_code == 404
    assert apps[0].test_client().get(f"/jobs/{job_id}").status_code == 200


# -- several apps on one store ---------------------------------------------------------
def create_named_app(store: str, name: str) -> Flask:
    """One factory for two apps, as under werkzeug's ``DispatcherMiddleware``:
    the same views and the same store, told apart by their name."""
    app = Flask(__name__)
    app.name = name
    app.config.update(JOBIFY_STORE=store, JOBIFY_LEASE_SECONDS=0.4, JOBIFY_SHUTDOWN_GRACE=0.5)
    jobify = Jobify(app)

    @app.put("/whoami")
    @jobify.job(retries=1)
    def whoami() -> t.Any:
        return {"app": app.name, "attempt": current_job.attempt}

    return app


def lost_job_of(app: Flask, name: str) -> str:
    """Store a job of the app named ``name`` as a process of that app that
    died while running it would leave it: running, its lease run out, its
    request saved."""
    store = app.extensions["jobify"].store
    job = Job(id=new_job_id(), operation="whoami", method="PUT", path="/whoami", app=name,
              status=JobStatus.RUNNING, attempts=1, max_attempts=2,
              started_at=time.time() - 5, lease_until=time.time() - 1)
    store.create(job)
    with app.test_request_context("/whoami", method="PUT"):
        captured = capture_request(request)
    data = {"request": captured.to_dict(), "options": JobOptions(retries=1).to_dict()}
    store.save_request(job.id, json.dumps(data).encode())
    return job.id


@pytest.mark.stores("sqlite", "redis")
def test_extension_apps_sharing_a_store_keep_their_jobs_apart(apps):
    """Two apps of one factory on one store: each lists and shows only its
    own jobs, and a job whose process died is recovered and run again by
    its own app, through its own views, never by the other."""
    named = {name: apps(create_named_app, name) for name in ("a", "b")}
    states = {name: app.extensions["jobify"] for name, app in named.items()}
    clients = {name: app.test_client() for name, app in named.items()}
    done = {}
    for name, client in clients.items():
        job_id = client.put("/whoami", headers=FLAG).get_json()["jobId"]
        assert finish(client, job_id)["status"] == "succeeded"
        assert client.get(f"/jobs/{job_id}/result").get_json()["app"] == name
        done[name] = job_id
    for name, client in clients.items():
        other = done["b" if name == "a" else "a"]
        assert [job["id"] for job in client.get("/jobs").get_json()["jobs"]] == [done[name]]
        assert client.get(f"/jobs/{other}").status_code == 404
        assert client.get(f"/jobs/{other}/result").status_code == 404
        assert client.delete(f"/jobs/{other}").status_code == 404
    lost = {name: lost_job_of(named[name], name) for name in named}
    assert [job.id for job in states["a"].store.expired_leases(app="a")] == [lost["a"]]
    assert states["a"].leases.reclaim_lost() == 1  # its own, not b's
    for name, client in clients.items():  # b's own monitor recovers b's
        record = finish(client, lost[name])
        assert (record["status"], record["attempts"]) == ("succeeded", 2)
        assert client.get(f"/jobs/{lost[name]}/result").get_json() == {
            "app": name, "attempt": 2}
