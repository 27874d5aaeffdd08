"""Job options set by the client (``Prefer: job-timeout, job-ttl``,
``X-Job-Callback``), clamped by the server and reported back."""
from __future__ import annotations

import threading
import time
import typing as t

import pytest
from flask import Flask

from flask_jobify import Jobify, current_job
from flask_jobify.options import JobOptions
from flask_jobify.preferences import (
    MIN_RESULT_TTL,
    MIN_TIMEOUT,
    AskedOptions,
    apply_options,
)


def clamp(asked: AskedOptions, options: JobOptions, default_timeout: float | None = None,
          default_ttl: float = 3600.0) -> tuple[float | None, float]:
    applied = apply_options(asked, options, default_timeout=default_timeout,
                            default_result_ttl=default_ttl)
    return applied.timeout, applied.result_ttl


@pytest.mark.parametrize(("asked", "operation", "default", "expected"), [
    (30, 600.0, None, 30.0),        # shorter: taken
    (9999, 600.0, None, 600.0),     # longer: never lengthened
    (0, 600.0, None, MIN_TIMEOUT),  # too short: raised to the minimum
    (0, 0.5, None, 0.5),            # ...but never past the operation's own
    (30, None, 120.0, 30.0),        # the app's default is the bound
    (9999, None, 120.0, 120.0),
    (45, None, None, 45.0),         # no limit at all: the client may set one
])
def test_client_options_timeout_is_clamped(asked, operation, default, expected):
    timeout, _ = clamp(AskedOptions(timeout=asked), JobOptions(timeout=operation), default)
    assert timeout == expected


@pytest.mark.parametrize(("asked", "operation", "expected"), [
    (600, 3600.0, 600.0),
    (10**9, 3600.0, 3600.0),
    (1, 3600.0, MIN_RESULT_TTL),
    (1, 30.0, 30.0),   # an operation keeping jobs shorter than the minimum keeps its own
    (600, None, 600.0),
])
def test_client_options_ttl_is_clamped(asked, operation, expected):
    _, ttl = clamp(AskedOptions(result_ttl=asked), JobOptions(result_ttl=operation))
    assert ttl == expected


def test_client_options_nothing_asked_keeps_the_operation():
    options = JobOptions(timeout=60.0)
    applied = apply_options(AskedOptions(), options, default_timeout=None,
                            default_result_ttl=100.0)
    assert applied.options is options
    assert applied.record() == {"timeout": 60.0, "resultTtl": 100.0, "fromClient": []}
    assert applied.preferences_applied() == []


@pytest.fixture
def app() -> t.Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_WEBHOOK_SECRET="s",
                      JOBIFY_WEBHOOK_ALLOWED_HOSTS=["127.0.0.1"])
    jobify = Jobify(app)
    app.extensions["gate"] = gate = threading.Event()

    @app.post("/slow")
    @jobify.job(timeout=100, result_ttl=500)
    def slow() -> dict[str, int]:
        while not gate.is_set():
            current_job.progress(None)  # stops the view once timed out
            time.sleep(0.02)
        return {"ok": 1}

    yield app
    gate.set()
    jobify.shutdown(app, grace=1)


def wait_final(client: t.Any, url: str) -> dict[str, t.Any]:
    for _ in range(200):
        record = client.get(url + "?wait=1").get_json()
        if record["status"] not in ("pending", "running"):
            return t.cast("dict[str, t.Any]", record)
    raise AssertionError("the job did not end")


def test_client_options_applied_are_reported_and_recorded(app):
    client = app.test_client()
    r = client.post("/slow", headers={
        "Prefer": "respond-async, job-timeout=9999, job-ttl=120",
        "X-Job-Callback": "http://127.0.0.1:9/hook"})
    assert r.status_code == 202
    # RFC 7240 section 3: what was honoured, with the values applied.
    assert r.headers["Preference-Applied"] == "respond-async, job-timeout=100, job-ttl=120"
    record = client.get(r.headers["Location"]).get_json()
    assert record["options"] == {"timeout": 100.0, "resultTtl": 120.0,
                                 "fromClient": ["timeout", "resultTtl", "callback"]}
    app.extensions["gate"].set()
    record = wait_final(client, r.headers["Location"])
    assert record["status"] == "succeeded"
    expires = record["expiresAt"], record["finishedAt"]
    from datetime import datetime
    kept = (datetime.fromisoformat(expires[0].replace("Z", "+00:00"))
            - datetime.fromisoformat(expires[1].replace("Z", "+00:00"))).total_seconds()
    assert kept == pytest.approx(120.0, abs=0.01)


def test_client_options_shorter_timeout_ends_the_job(app):
    client = app.test_client()
    r = client.post("/slow", headers={"X-Job-Flag": "ON", "Prefer": "job-timeout=1"})
    assert r.headers["Preference-Applied"] == "job-timeout=1"
    record = wait_final(client, r.headers["Location"])
    assert record["status"] == "timed_out"
    assert record["options"]["timeout"] == 1.0


def test_client_options_operation_defaults_recorded(app):
    client = app.test_client()
    r = client.post("/slow", headers={"X-Job-Flag": "ON"})
    assert "Preference-Applied" not in r.headers
    record = client.get(r.headers["Location"]).get_json()
    assert record["options"] == {"timeout": 100.0, "resultTtl": 500.0, "fromClient": []}


@pytest.mark.parametrize("prefer", [
    "respond-async, job-timeout=abc", "respond-async, job-timeout=1.5", "respond-async, job-ttl=",
    "respond-async, job-ttl=-1",
])
def test_client_options_bad_preference_is_a_json_400(app, prefer):
    r = app.test_client().post("/slow", headers={"Prefer": prefer.encode().decode("latin-1")})
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_job_preference"


def test_client_options_unreadable_preference_is_ignored(app):
    # Not visible ASCII: not a preference at all (RFC 7240 asks to ignore
    # those), so neither applied nor reported.
    r = app.test_client().post("/slow", headers={
        "Prefer": "respond-async, job-timeout=\u00b2".encode().decode("latin-1")})
    assert r.status_code == 202
    assert r.headers["Preference-Applied"] == "respond-async"


def test_client_options_huge_value_is_clamped_not_an_error(app):
    r = app.test_client().post("/slow", headers={
        "Prefer": "respond-async, job-timeout=" + "9" * 5000})
    assert r.status_code == 202
    assert r.headers["Preference-Applied"] == "respond-async, job-timeout=100"


@pytest.fixture
def unbounded_app() -> t.Iterator[Flask]:
    """No time limit anywhere, jobs kept long: a client's value is the bound."""
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_RESULT_TTL=10_000_000,
                      SECRET_KEY="k")
    jobify = Jobify(app)

    @app.post("/free")
    @jobify.job
    def free() -> dict[str, int]:
        return {"ok": 1}

    @app.post("/odd")
    @jobify.job(timeout=2.5, result_ttl=1234567.5)
    def odd() -> dict[str, int]:
        return {"ok": 1}

    yield app
    jobify.shutdown(app, grace=1)


def test_client_options_huge_timeout_without_operation_limit_is_clamped(unbounded_app):
    from flask_jobify.rules import MAX_SECONDS

    r = unbounded_app.test_client().post("/free", headers={
        "Prefer": "respond-async, job-timeout=" + "9" * 30})
    assert r.status_code == 202, r.get_data(as_text=True)
    assert r.headers["Preference-Applied"] == f"respond-async, job-timeout={MAX_SECONDS:.0f}"


@pytest.mark.parametrize(("path", "prefer", "applied", "recorded"), [
    ("/free", "job-timeout=1234567, job-ttl=7654321",
     "respond-async, job-timeout=1234567, job-ttl=7654321", (1234567.0, 7654321.0)),
    ("/odd", "job-timeout=60, job-ttl=99999999",
     "respond-async, job-timeout=2.5, job-ttl=1234567.5", (2.5, 1234567.5)),
])
def test_client_options_applied_values_are_the_exact_seconds(unbounded_app, path, prefer,
                                                             applied, recorded):
    """Never 1.23457e+06: the very value applied, in plain digits."""
    client = unbounded_app.test_client()
    r = client.post(path, headers={"Prefer": "respond-async, " + prefer})
    assert r.headers["Preference-Applied"] == applied
    options = client.get(r.headers["Location"]).get_json()["options"]
    assert (options["timeout"], options["resultTtl"]) == recorded


def test_client_options_replayed_job_reports_what_it_runs_with(unbounded_app):
    """A request replaying an Idempotency-Key gets the first request's job:
    its Preference-Applied says the options that job runs with, not the
    ones this request asked for."""
    client = unbounded_app.test_client()
    first = client.post("/free", headers={"Prefer": "respond-async, job-timeout=10",
                                          "Idempotency-Key": "k1"})
    assert first.headers["Preference-Applied"] == "respond-async, job-timeout=10"
    again = client.post("/free", headers={"Prefer": "respond-async, job-timeout=50, job-ttl=100",
                                          "Idempotency-Key": "k1"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Preference-Applied"] == "respond-async, job-timeout=10"
    options = client.get(again.headers["Location"]).get_json()["options"]
    assert options == {"timeout": 10.0, "resultTtl": 10_000_000.0, "fromClient": ["timeout"]}
    plain = client.post("/free", headers={"X-Job-Flag": "ON", "Idempotency-Key": "k1"})
    assert plain.headers["Preference-Applied"] == "job-timeout=10"
