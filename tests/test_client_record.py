"""Job records and headers as the client takes them in: a malformed one is
a :class:`JobClientError`, never a plain Python exception, whatever a server
(or something posing as one) answers."""
from __future__ import annotations

import json
import math
import threading
import time
import typing as t
from urllib.parse import urljoin

import pytest
import requests
from flask import Flask, request
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import serve_app

from flask_jobify.client import (
    JobClientError,
    JobLost,
    JobSession,
    JobTimedOut,
    PollPolicy,
)
from flask_jobify.client.outcome import (
    client_timeout,
    failure_message,
    unexpected_answer,
)
from flask_jobify.client.policy import delay, retry_after
from flask_jobify.client.progress import progress_from_record
from flask_jobify.client.record import STATUSES, accepted_body, job_record
from flask_jobify.protocol import JobStatus

#: The full protocol (202, status long-polls, the result), quick: no
#: inline answer, no long-poll on the result (their tests ask for them).
FAST = PollPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0,
                  inline_wait=0, long_poll_result=False)
GOOD = {"id": "J1", "status": "running", "version": 1, "progress": {"percent": 5, "message": "x"},
        "resultUrl": "/jobs/J1/result", "httpStatus": None, "error": None, "method": "POST"}


def answer(body: t.Any, *, raw: bytes | None = None, status: int = 200,
           headers: t.Mapping[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = "http://api.example.com/jobs/J1"
    response._content = raw if raw is not None else json.dumps(body).encode()
    response.headers.update(headers or {})
    response.request = requests.Request("GET", response.url).prepare()
    return response


def test_record_intake_keeps_a_good_record() -> None:
    assert job_record(answer(GOOD)) == GOOD
    assert job_record(answer({"status": "succeeded"})) == {"status": "succeeded"}


@pytest.mark.parametrize(("change", "problem"), [
    ({"status": "bogus"}, "status 'bogus'"),
    ({"status": None}, "status None"),
    ({"version": None}, "version None"),
    ({"version": "1"}, "version '1'"),
    ({"version": -1}, "version -1"),
    ({"version": True}, "version True"),
    ({"id": 5}, "id is int"),
    ({"progress": "50%"}, "progress is str"),
    ({"progress": {"percent": "abc"}}, "progress.percent 'abc'"),
    ({"progress": {"percent": 10 ** 400}}, "progress.percent"),
    ({"progress": {"message": ["a"]}}, "progress.message is list"),
    ({"resultUrl": 5}, "resultUrl is int"),
    ({"httpStatus": "200"}, "httpStatus '200'"),
    ({"httpStatus": 1000}, "httpStatus 1000"),
    ({"error": "boom"}, "error is str"),
    ({"method": 1}, "method is int"),
])
def test_record_intake_refuses_a_malformed_record(change: dict[str, t.Any], problem: str) -> None:
    response = answer({**GOOD, **change})
    with pytest.raises(JobClientError, match="malformed job record") as caught:
        job_record(response)
    assert problem in str(caught.value)
    assert caught.value.response is response


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"id": "J1"}', b'"running"'])
def test_record_intake_refuses_what_is_no_record(raw: bytes) -> None:
    with pytest.raises(JobClientError, match="did not answer with a job record"):
        job_record(answer(None, raw=raw))


def test_record_intake_refuses_non_finite_percent() -> None:
    for value in (b"NaN", b"Infinity"):  # Python's json reads them
        raw = b'{"status": "running", "progress": {"percent": %s}}' % value
        with pytest.raises(JobClientError, match=r"progress\.percent"):
            job_record(answer(None, raw=raw))


def test_accepted_body_refuses_urls_that_are_not_strings() -> None:
    assert accepted_body(answer(None, raw=b"")) == {}
    with pytest.raises(JobClientError, match="statusUrl is int"):
        accepted_body(answer({"jobId": "J1", "statusUrl": 5}, status=202))


# -- fuzzing ---------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
RECORDS = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=5) | JSON,
    "status": st.sampled_from(sorted(STATUSES)) | JSON,
    "version": st.integers(min_value=-2) | JSON,
    "progress": st.fixed_dictionaries({}, optional={
        "percent": st.floats() | st.integers() | JSON, "message": st.text(max_size=5) | JSON,
    }) | JSON,
    "resultUrl": st.sampled_from(["/r", "http://x/r", "", "//evil/r"]) | JSON,
    "httpStatus": st.integers(min_value=0, max_value=1000) | JSON,
    "error": st.fixed_dictionaries({}, optional={"message": JSON}) | JSON,
    "method": st.sampled_from(["GET", "HEAD", "post"]) | JSON,
}) | JSON


@settings(max_examples=400, deadline=None)
@given(RECORDS)
def test_record_intake_fuzzed_raises_only_job_client_error(body: t.Any) -> None:
    """Whatever JSON comes in, the intake accepts it or raises
    JobClientError; and what it accepts, every part of the client that reads
    a record can read."""
    response = answer(None, raw=json.dumps(body).encode())
    try:
        record = job_record(response)
    except JobClientError:
        return
    status = JobStatus(record["status"])
    progress = progress_from_record(record)
    assert progress.percent is None or math.isfinite(progress.percent)
    assert record.get("version", 0) >= 0
    urljoin(response.url, record.get("resultUrl") or "")
    str(client_timeout(record, response.url, cancelled=False, last_status=response))
    str(unexpected_answer(record, answer({}, status=404)))
    if status is JobStatus.FAILED:
        assert failure_message(record)
    (record.get("method") or "GET").upper()


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=30) | st.from_regex(r"\A[0-9]{1,6000}\Z") | st.from_regex(
    r"\A(Mon|Fri), [0-9]{1,2} (Jan|Dec) [0-9]{1,7} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z"))
def test_retry_after_fuzzed_falls_back_to_the_backoff(value: str) -> None:
    """Any Retry-After header gives a delay within the cap, or none."""
    policy = PollPolicy(retry_after_max=60)
    response = answer({}, status=503, headers={"Retry-After": value})
    seconds = retry_after(policy.retry(), response, policy.retry_after_max)
    assert seconds is None or 0 <= seconds <= 60
    assert 0 <= delay(policy.retry(), response, policy.retry_after_max) <= 60


@pytest.mark.parametrize("value", ["9" * 5000, "Fri, 31 Dec 99999 23:59:59 GMT"])
def test_retry_after_past_pythons_limits_falls_back_to_the_backoff(value: str) -> None:
    policy = PollPolicy()
    unavailable = answer({}, status=503, headers={"Retry-After": value})
    assert retry_after(policy.retry(), unavailable) is None


# -- against a server that answers malformed records -----------------------------------
def hostile_app(records: list[t.Any], headers: dict[str, str] | None = None, *,
                result: tuple[t.Any, int] = ({"ok": 1}, 200), hold: float = 0.0) -> Flask:
    """A server posing as Flask-Jobify: it accepts a job, then answers its
    status polls with ``records`` in turn (the last one from then on),
    after holding each ``hold`` seconds, and its result with ``result``."""
    app = Flask(__name__)
    polls: list[str] = []
    app.extensions["polls"] = polls
    app.extensions["times"] = times = []

    @app.post("/work")
    def work() -> t.Any:
        return {"jobId": "J1"}, 202, {"Location": "/jobs/J1", "X-Job-Id": "J1"}

    @app.get("/jobs/J1")
    def status() -> t.Any:
        polls.append(request.full_path)
        times.append(time.monotonic())
        threading.Event().wait(hold)
        body = records[min(len(polls), len(records)) - 1]
        return app.response_class(json.dumps(body), 200, headers or {},
                                  mimetype="application/json")

    @app.get("/jobs/J1/result")
    def stored() -> t.Any:
        return result

    return app


@pytest.mark.parametrize("records", [
    [{"id": "J1", "status": "bogus", "version": 1}],
    [{"id": "J1", "status": "running", "version": None}],
    [{"id": "J1", "status": "running", "version": "1"},
     {"id": "J1", "status": "running", "version": 2}],
    [{"id": "J1", "status": "running", "version": 1, "progress": "50%"}],
    [{"id": "J1", "status": "running", "version": 1, "progress": {"percent": "abc"}}],
    [{"id": "J1", "status": "succeeded", "version": 1, "httpStatus": 200, "resultUrl": 5}],
], ids=["status", "version-null", "version-str", "progress-str", "percent-str", "result-url-int"])
def test_malformed_records_raise_job_client_error(records: list[t.Any]) -> None:
    with serve_app(hostile_app(records)) as url, pytest.raises(
        JobClientError, match="malformed job record"
    ) as caught:
        JobSession(poll=FAST, timeout=10).post(url + "/work", timeout=5)
    assert caught.value.response is not None and caught.value.response.status_code == 200


def test_records_without_version_are_polled_with_backoff() -> None:
    """A server whose records have no ``version`` cannot be long-polled: it
    is polled, with the policy's backoff between polls (it was polled
    without a pause, 68 times in 3 s)."""
    running = {"id": "J1", "status": "running"}
    app = hostile_app([running] * 5 + [{"id": "J1", "status": "succeeded", "httpStatus": 200}])
    policy = PollPolicy(backoff_factor=0.1, backoff_max=0.2, backoff_jitter=0,
                        long_poll_result=False)
    with serve_app(app) as url:
        response = JobSession(poll=policy, timeout=10).post(url + "/work", timeout=5)
    assert response.json() == {"ok": 1}
    polls, times = app.extensions["polls"], app.extensions["times"]
    assert len(polls) == 6 and not any("wait=" in poll for poll in polls)
    assert times[-1] - times[1] >= 0.75  # 0.2 s after each poll but the first


def test_a_result_is_taken_when_the_record_has_no_http_status() -> None:
    app = hostile_app([{"id": "J1", "status": "succeeded", "version": 2}])
    with serve_app(app) as url:
        response = JobSession(poll=FAST, timeout=10).post(url + "/work", timeout=5)
    assert response.status_code == 200 and response.json() == {"ok": 1}


def test_errors_name_the_job_when_records_lack_its_id() -> None:
    """The 202's X-Job-Id names the job when its records do not."""
    gone = ({"error": {"code": "job_not_found", "message": "gone"}}, 404)
    app = hostile_app([{"status": "succeeded", "version": 2, "httpStatus": 200}], result=gone)
    with serve_app(app) as url, pytest.raises(JobLost, match="no longer knows job J1:"):
        JobSession(poll=FAST, timeout=10).post(url + "/work", timeout=5)
    held = hostile_app([{"status": "running", "version": 1}], hold=5)
    no_status = r"^Job J1 did not end in time \(no status seen yet\)"
    with serve_app(held) as url, pytest.raises(JobTimedOut, match=no_status):
        JobSession(poll=FAST, timeout=0.5).post(url + "/work", timeout=5)  # no record in time
