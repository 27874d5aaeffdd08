"""What a job keeps of its request (drop lists, request filters), and the
JSON answers when the store or the Celery broker cannot be reached."""
from __future__ import annotations

import functools
import typing as t

import pytest
from flask import Flask, g, request
from helpers import finish
from servers import free_port as free_tcp_port

from flask_jobify import CapturedRequest, Jobify, current_job

FLAG = {"X-Job-Flag": "ON"}


#: What a job keeps of its request does not depend on the store: memory,
#: or the store a test names.
pytestmark = pytest.mark.stores("memory")


def create_app(store: str, **config: t.Any) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update({"JOBIFY_STORE": store, **config})
    jobify = Jobify(app)

    @app.get("/headers")
    @jobify.job
    def headers() -> dict[str, t.Any]:
        return {"headers": dict(request.headers), "is_job": current_job.is_job}

    return app, jobify


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., tuple[Flask, Jobify]]:
    """Builds the app with extra config; stopped afterwards."""
    return functools.partial(apps, create_app)


def test_drop_headers_hide_credentials_from_the_job(make_app) -> None:
    app, _ = make_app(JOBIFY_DROP_HEADERS=("Authorization", "cookie"))
    client = app.test_client()
    sent = {"Authorization": "Bearer s3cret", "Cookie": "session=abc", "X-Trace": "t1"}

    synchronous = client.get("/headers", headers=sent).get_json()["headers"]
    assert synchronous["Authorization"] == "Bearer s3cret"  # only jobs lose them

    job_id = client.get("/headers", headers={**sent, **FLAG}).get_json()["jobId"]
    assert finish(client, job_id)["status"] == "succeeded"
    seen = client.get(f"/jobs/{job_id}/result").get_json()
    assert seen["is_job"] is True
    assert "Authorization" not in seen["headers"] and "Cookie" not in seen["headers"]
    assert seen["headers"]["X-Trace"] == "t1"


def test_request_filter_rederives_a_credential_in_the_submitting_request(make_app) -> None:
    app, jobify = make_app()

    @app.before_request
    def who() -> None:
        g.user = request.headers.get("X-User")

    @jobify.request_filter
    def job_token(captured: CapturedRequest) -> CapturedRequest:
        # Runs in the submitting request: g is the caller's.
        return captured.with_headers(Authorization=f"Job {g.user}", X_User=None)

    client = app.test_client()
    job_id = client.get("/headers", headers={"X-User": "ada", "Authorization": "Bearer long-lived",
                                              **FLAG}).get_json()["jobId"]
    assert finish(client, job_id)["status"] == "succeeded"
    seen = client.get(f"/jobs/{job_id}/result").get_json()["headers"]
    assert seen["Authorization"] == "Job ada"
    assert "X-User" not in seen
    # Without the flag the filter does not apply: the view sees the request as sent.
    plain = client.get("/headers", headers={"X-User": "ada"}).get_json()["headers"]
    assert plain["X-User"] == "ada" and "Authorization" not in plain


def test_with_headers_sets_and_removes() -> None:
    captured = CapturedRequest({"HTTP_X_A": "1", "CONTENT_TYPE": "text/plain"}, b"")
    changed = captured.with_headers(X_A=None, X_B="2", Content_Type="application/json")
    assert changed.environ == {"HTTP_X_B": "2", "CONTENT_TYPE": "application/json"}
    assert captured.environ == {"HTTP_X_A": "1", "CONTENT_TYPE": "text/plain"}  # a copy


def test_unreachable_store_is_a_503_json_error_not_a_500(make_app) -> None:
    pytest.importorskip("redis")
    port = free_tcp_port()  # nothing listens there
    app, _ = make_app(JOBIFY_STORE=f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.5")
    client = app.test_client()

    submitted = client.get("/headers", headers=FLAG)
    assert submitted.status_code == 503
    assert submitted.get_json()["error"]["code"] == "store_unavailable"
    assert submitted.headers["Retry-After"]

    status = client.get("/jobs/" + "A" * 22)
    assert status.status_code == 503
    assert status.get_json()["error"]["code"] == "store_unavailable"
    listing = client.get("/jobs")
    assert listing.status_code == 503
    # The view itself still answers without the flag.
    assert client.get("/headers").status_code == 200


@pytest.mark.stores("sqlite")  # a store Celery workers could see
def test_unreachable_celery_broker_is_a_503_and_nothing_is_stored(make_app) -> None:
    celery = pytest.importorskip("celery")
    port = free_tcp_port()
    app, jobify = make_app(JOBIFY_EXECUTOR="celery")
    celery_app = celery.Celery("handoff", broker=f"redis://127.0.0.1:{port}/0")
    celery_app.conf.broker_connection_timeout = 0.5
    celery_app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0,
                                                 "interval_step": 0.1, "interval_max": 0.1}
    jobify.init_celery(celery_app, app)
    client = app.test_client()

    submitted = client.get("/headers", headers=FLAG)
    assert submitted.status_code == 503
    assert submitted.get_json()["error"]["code"] == "executor_unavailable"
    assert client.get("/jobs").get_json()["jobs"] == []  # not left pending forever


def test_init_celery_refuses_a_store_workers_cannot_see(make_app) -> None:
    celery = pytest.importorskip("celery")
    app, jobify = make_app(JOBIFY_EXECUTOR="celery")  # memory://
    with pytest.raises(RuntimeError, match="Celery workers cannot see this store"):
        jobify.init_celery(celery.Celery("x"), app)
    app2, jobify2 = make_app()
    with pytest.raises(RuntimeError, match="JOBIFY_EXECUTOR"):
        jobify2.init_celery(celery.Celery("y"), app2)


def test_unknown_executor_is_refused_at_init(make_app) -> None:
    with pytest.raises(ValueError, match="JOBIFY_EXECUTOR"):
        make_app(JOBIFY_EXECUTOR="processes")
