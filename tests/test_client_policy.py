"""Unit tests of the client's pure parts: poll policy, Retry-After, origins,
exceptions."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import typing as t

import pytest
import requests
from urllib3 import HTTPResponse
from urllib3.exceptions import MaxRetryError
from urllib3.util import Retry

from flask_jobify import JobifyError, JobProgress
from flask_jobify.client import (
    JobAdapter,
    JobClientError,
    JobConnectionError,
    JobTimedOut,
    JobWasCancelled,
    PollPolicy,
    ProgressBar,
)
from flask_jobify.client.policy import count, delay, retry_after
from flask_jobify.client.transport import Transport

#: ``strftime`` of the three HTTP-date forms of RFC 9110 section 5.6.7.
DATE_FORMS = {
    "imf": "%a, %d %b %Y %H:%M:%S GMT",
    "rfc850": "%A, %d-%b-%y %H:%M:%S GMT",
    "asctime": "%a %b %d %H:%M:%S %Y",
}


def test_policy_from_number_is_the_long_poll_wait() -> None:
    assert PollPolicy.from_value(5) == PollPolicy(wait=5.0)
    assert PollPolicy.from_value(0.5).wait == 0.5
    assert PollPolicy.from_value(None) == PollPolicy()
    policy = PollPolicy(retries=2)
    assert PollPolicy.from_value(policy) is policy


@pytest.mark.parametrize("value", [True, "5", [5]])
def test_policy_from_other_values_refused(value: t.Any) -> None:
    with pytest.raises(TypeError):
        PollPolicy.from_value(value)


@pytest.mark.parametrize(
    "field", ["wait", "min_wait", "backoff_factor", "backoff_max", "backoff_jitter", "retries",
              "submit_retries", "retry_after_max"])
def test_policy_refuses_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PollPolicy(**{field: -1})


@pytest.mark.parametrize(("value", "error"), [
    (float("nan"), ValueError), (float("inf"), ValueError), (1e12, ValueError),
    (True, TypeError), ("5", TypeError), (None, TypeError)])
@pytest.mark.parametrize("field", ["wait", "backoff_max", "retry_after_max", "read_timeout"])
def test_policy_refuses_times_that_are_not_finite_seconds(
    field: str, value: t.Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=field):
        PollPolicy(**{field: value})


@pytest.mark.parametrize("value", [1.5, True, float("nan")])
def test_policy_refuses_counts_that_are_not_integers(value: t.Any) -> None:
    with pytest.raises(TypeError, match="retries"):
        PollPolicy(retries=value)


def test_poll_like_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="wait"):
        JobAdapter(poll=float("nan"))


def test_adapter_normalises_poll_like_max_retries() -> None:
    assert JobAdapter(poll=3).poll == PollPolicy(wait=3.0)
    assert JobAdapter().poll == PollPolicy()


def failures(retry: Retry, n: int) -> Retry:
    for _ in range(n):
        retry = count(retry, "GET", "http://x/jobs/1", error=requests.ConnectionError("reset"))
    return retry


def test_policy_builds_urllib3_retry_with_its_backoff() -> None:
    policy = PollPolicy(backoff_factor=0.1, backoff_max=1.0, backoff_jitter=0)
    retry = policy.retry(total=3)
    assert isinstance(retry, Retry)
    # urllib3's rule: the first retry at once, then backoff_factor * 2 ** (n - 1), capped.
    assert [delay(failures(retry, n)) for n in range(1, 4)] == pytest.approx([0, 0.2, 0.4])
    assert delay(failures(policy.retry(), 40)) == 1.0
    with pytest.raises(MaxRetryError):
        failures(retry, 4)


def test_policy_backoff_jitter_adds_up_to_its_seconds() -> None:
    retry = failures(PollPolicy(backoff_factor=0.1, backoff_max=9, backoff_jitter=0.5).retry(), 2)
    delays = [delay(retry) for _ in range(200)]
    assert all(0.2 <= d <= 0.7 for d in delays)
    assert len(set(delays)) > 100


def answer(status: int, **headers: str) -> requests.Response:
    """A real ``requests.Response`` as the adapter builds it, from a urllib3 one."""
    raw = HTTPResponse(body=b"", headers=headers, status=status, preload_content=False)
    return requests.adapters.HTTPAdapter().build_response(
        requests.Request("GET", "http://x/jobs/1").prepare(), raw)


def test_policy_retry_after_replaces_the_backoff_up_to_its_cap() -> None:
    policy = PollPolicy(backoff_factor=0.1, backoff_max=1.0, retry_after_max=30)
    assert delay(policy.retry(), answer(503, **{"Retry-After": "3"}), 30) == 3
    assert delay(policy.retry(), answer(503, **{"Retry-After": "3600"}), 30) == 30
    assert delay(policy.retry(), answer(503, **{"Retry-After": "soon"})) == 0  # unreadable
    ignoring = PollPolicy(respect_retry_after_header=False).retry()
    assert delay(ignoring, answer(503, **{"Retry-After": "3"})) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 0 ", 0.0), ("-2", None), ("1.5", None), (None, None), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_reads_delay_seconds_and_dates(
    value: str | None, expected: float | None
) -> None:
    """RFC 9110 section 10.2.3: ``delay-seconds`` is digits only."""
    headers = {} if value is None else {"Retry-After": value}
    assert retry_after(PollPolicy().retry(), answer(503, **headers)) == expected


@pytest.mark.parametrize("form", ["imf", "rfc850", "asctime"])
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York", "UTC"])
def test_retry_after_http_date_is_utc_in_every_local_zone(form: str, zone: str) -> None:
    """RFC 9110 section 5.6.7: all three date forms are UTC, the asctime one
    without saying so. Run in a child process with ``TZ`` set, as a client
    in that zone would."""
    code = f"""
import time
from flask_jobify.client.policy import PollPolicy, retry_after
import requests, urllib3
moment = time.gmtime(time.time() + 20)
value = time.strftime({DATE_FORMS[form]!r}, moment)
raw = urllib3.HTTPResponse(body=b"", headers={{"Retry-After": value}}, status=503)
response = requests.adapters.HTTPAdapter().build_response(
    requests.Request("GET", "http://x/").prepare(), raw)
print(retry_after(PollPolicy().retry(), response))
"""
    env = {**os.environ, "TZ": zone, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert 17 <= float(out) <= 20


def test_policy_tells_an_ignored_long_poll() -> None:
    policy = PollPolicy()
    assert policy.long_poll_ignored(asked=30, elapsed=0.01)
    assert not policy.long_poll_ignored(asked=30, elapsed=5)  # a server capping the wait
    assert not policy.long_poll_ignored(asked=0.2, elapsed=0.15)
    assert not policy.long_poll_ignored(asked=0, elapsed=0.0)
    # Measured against a plain status request's round trip when known:
    assert policy.long_poll_ignored(asked=30, elapsed=0.4, round_trip=0.3)  # a slow link
    assert not policy.long_poll_ignored(asked=30, elapsed=0.5, round_trip=0.002)  # capped at 0.5 s


def test_progress_bar_shows_percent_and_message() -> None:
    out = io.StringIO()
    bar = ProgressBar("job-1", file=out, disable=False, ncols=80)
    bar(JobProgress(40.0, "halfway there"))
    bar(JobProgress(None, "still going"))
    bar.close()
    text = out.getvalue()
    assert "job-1" in text and "40%" in text and "halfway there" in text and "still going" in text


def test_policy_tells_a_cut_long_poll() -> None:
    policy = PollPolicy(min_wait=0.5)
    assert policy.long_poll_cut(asked=2, elapsed=1.5)  # a gateway's limit
    assert policy.long_poll_cut(asked=30, elapsed=1.5, round_trip=0.01)
    assert not policy.long_poll_cut(asked=30, elapsed=0.01, round_trip=0.005)  # refused at once
    assert not policy.long_poll_cut(asked=0, elapsed=5)  # not a long-poll
    assert policy.shortened_wait(1.5) == 0.8
    assert policy.shortened_wait(0.8) == 0  # under min_wait: poll instead


def test_transport_prepares_follow_ups_without_body_job_headers_or_foreign_credentials() -> None:
    submission = requests.Session().prepare_request(requests.Request(
        "POST", "http://api.example.com/r", json={"a": 1}, headers={
            "Authorization": "Bearer t", "Cookie": "s=1", "Proxy-Authorization": "p",
            "X-User": "alice", "X-Job-Flag": "ON"}))
    transport = Transport(requests.Session().send, submission, PollPolicy())
    same = transport.prepare("GET", "http://api.example.com/jobs/1")
    assert same.method == "GET" and same.body is None
    assert {k.lower() for k in same.headers} >= {"authorization", "cookie", "proxy-authorization",
                                                 "x-user"}
    assert not {"x-job-flag", "content-type", "content-length"} & {k.lower() for k in same.headers}
    other = transport.prepare("GET", "http://jobs.example.net/jobs/1")
    sent = {k.lower() for k in other.headers}
    assert not {"authorization", "cookie", "proxy-authorization"} & sent
    assert other.headers["X-User"] == "alice"


@pytest.mark.parametrize("job_url", [
    "http://jobs.example.net/jobs/1",  # another host
    "https://api.example.com:8443/jobs/1",  # another port
    "http://api.example.com/jobs/1",  # a downgrade from https
])
def test_transport_sends_another_origin_only_cookies_scoped_to_its_host(job_url: str) -> None:
    session = requests.Session()
    session.cookies.set("hostless", "1")  # no domain: requests sends it everywhere
    session.cookies.set("net", "1", domain="jobs.example.net")
    session.cookies.set("api", "1", domain="api.example.com")
    session.cookies.set("api_secure", "1", domain="api.example.com", secure=True)
    submission = session.prepare_request(requests.Request(
        "POST", "https://api.example.com/r", cookies={"call": "1"}))
    transport = Transport(session.send, submission, PollPolicy())
    home = transport.prepare("GET", "https://api.example.com/jobs/1").headers["Cookie"]
    assert set(home.split("; ")) == {"hostless=1", "api=1", "api_secure=1", "call=1"}
    sent = transport.prepare("GET", job_url).headers.get("Cookie", "")
    expected = {"http://jobs.example.net/jobs/1": {"net=1"},
                "https://api.example.com:8443/jobs/1": {"api=1", "api_secure=1"},
                "http://api.example.com/jobs/1": {"api=1"}}[job_url]
    assert set(filter(None, sent.split("; "))) == expected


def test_transport_applies_auth_afresh_on_the_origin_only() -> None:
    calls: list[str] = []

    def sign(request: requests.PreparedRequest) -> requests.PreparedRequest:
        calls.append(f"{request.method} {request.url}")
        request.headers["Authorization"] = f"Sig {len(calls)}"
        return request

    submission = requests.Request("POST", "http://api.example.com/r", auth=sign).prepare()
    transport = Transport(requests.Session().send, submission, PollPolicy(), auth=sign)
    prepared = transport.prepare("GET", "http://api.example.com/jobs/1")
    assert prepared.headers["Authorization"] == "Sig 2"
    assert transport.prepare("HEAD", "http://api.example.com/jobs/1/result").headers[
        "Authorization"] == "Sig 3"
    assert "Authorization" not in transport.prepare("GET", "http://evil.example.com/jobs/1").headers
    assert calls[1:] == ["GET http://api.example.com/jobs/1", "HEAD http://api.example.com/jobs/1/result"]


def test_exceptions_are_jobify_and_requests_errors() -> None:
    record = {"id": "abc", "status": "timed_out"}
    response = requests.Response()
    response.request = requests.Request("GET", "http://x/jobs/abc").prepare()
    exc = JobTimedOut("late", job=record, response=response)
    assert isinstance(exc, JobifyError)
    assert isinstance(exc, requests.Timeout)
    assert isinstance(exc, JobClientError)
    assert exc.job == record and exc.job_id == "abc"
    assert exc.response is response and exc.request is response.request
    assert exc.on_server
    assert not JobTimedOut("late", job={"status": "running"}).on_server
    assert isinstance(JobConnectionError("down"), requests.ConnectionError)
    assert isinstance(JobWasCancelled("gone"), requests.RequestException)
    assert JobWasCancelled("gone").job is None
