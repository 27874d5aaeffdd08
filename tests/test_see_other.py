"""``303 See Other`` from a succeeded job's status to its result
(``JOBIFY_SEE_OTHER``, ``@jobify.job(see_other=...)``)."""
from __future__ import annotations

import typing as t

import pytest
import requests
from flask import Flask
from servers import serve_app

from flask_jobify import Jobify
from flask_jobify.client import JobSession


def make_app(**config: t.Any) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", **config)
    jobify = Jobify(app)

    @app.post("/report")
    @jobify.job
    def report() -> dict[str, int]:
        return {"rows": 3}

    @app.post("/plain")
    @jobify.job(see_other=False)
    def plain() -> dict[str, int]:
        return {"rows": 1}

    @app.post("/opted")
    @jobify.job(see_other=True)
    def opted() -> dict[str, int]:
        return {"rows": 2}

    @app.post("/fails")
    @jobify.job(see_other=True)
    def fails() -> t.NoReturn:
        raise RuntimeError("no")

    return app, jobify


def final(client: t.Any, url: str) -> t.Any:
    for _ in range(100):
        response = client.get(url + "?wait=1")
        if response.get_json()["status"] not in ("pending", "running"):
            return response
    raise AssertionError("the job did not end")


@pytest.fixture
def app() -> t.Iterator[Flask]:
    app, jobify = make_app(JOBIFY_SEE_OTHER=True)
    yield app
    jobify.shutdown(app, grace=1)


def test_see_other_succeeded_job_answers_303_with_the_record(app):
    client = app.test_client()
    url = client.post("/report", headers={"X-Job-Flag": "ON"}).headers["Location"]
    response = final(client, url)
    assert response.status_code == 303
    record = response.get_json()
    assert record["status"] == "succeeded"
    assert response.headers["Location"] == record["resultUrl"]
    assert client.get(response.headers["Location"]).get_json() == {"rows": 3}


def test_see_other_per_operation_wins(app):
    client = app.test_client()
    url = client.post("/plain", headers={"X-Job-Flag": "ON"}).headers["Location"]
    assert final(client, url).status_code == 200


def test_see_other_off_by_default():
    app, jobify = make_app()
    client = app.test_client()
    try:
        url = client.post("/report", headers={"X-Job-Flag": "ON"}).headers["Location"]
        assert final(client, url).status_code == 200
        url = client.post("/opted", headers={"X-Job-Flag": "ON"}).headers["Location"]
        assert final(client, url).status_code == 303
    finally:
        jobify.shutdown(app, grace=1)


def test_see_other_only_for_success(app):
    client = app.test_client()
    url = client.post("/fails", headers={"X-Job-Flag": "ON"}).headers["Location"]
    response = final(client, url)
    assert response.status_code == 200
    assert response.get_json()["status"] == "failed"


def test_see_other_both_clients_get_the_result(app):
    with serve_app(app) as base:
        # Flask-Jobify's client reads the 303's record, then fetches the result.
        r = JobSession(timeout=30).post(f"{base}/report")
        assert r.status_code == 200 and r.json() == {"rows": 3}
        # A plain HTTP client that follows redirects lands on the result.
        accepted = requests.post(f"{base}/report", headers={"X-Job-Flag": "ON"}, timeout=10)
        status_url = base + accepted.headers["Location"]
        for _ in range(100):
            r = requests.get(status_url + "?wait=1", timeout=10)
            if r.history:
                break
        assert r.history[0].status_code == 303
        assert r.json() == {"rows": 3}
