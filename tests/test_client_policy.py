"""Unit tests of the client's pure parts: poll policy, Retry-After, origins,
exceptions."""
from __future__ import annotations

import io
import random
import typing as t

import pytest
import requests

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
from flask_jobify.client.policy import parse_retry_after
from flask_jobify.client.transport import Transport, same_origin


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


@pytest.mark.parametrize("field", ["wait", "backoff", "max_backoff", "retries", "submit_retries"])
def test_policy_refuses_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PollPolicy(**{field: -1})


def test_policy_refuses_jitter_outside_unit_range() -> None:
    with pytest.raises(ValueError, match="jitter"):
        PollPolicy(jitter=1.5)


def test_adapter_normalises_poll_like_max_retries() -> None:
    assert JobAdapter(poll=3).poll == PollPolicy(wait=3.0)
    assert JobAdapter().poll == PollPolicy()


def test_policy_delay_grows_exponentially_up_to_the_cap() -> None:
    policy = PollPolicy(backoff=0.1, max_backoff=1.0, jitter=0)
    assert [policy.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(10_000) == 1.0


def test_policy_delay_jitter_stays_within_its_share() -> None:
    policy = PollPolicy(backoff=1.0, max_backoff=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(0, rng=rng) for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100


def test_policy_delay_never_undercuts_retry_after() -> None:
    policy = PollPolicy(backoff=0.1, max_backoff=1.0, max_retry_after=30)
    assert policy.delay(0, retry_after=3) == 3
    assert policy.delay(0, retry_after=3600) == 30
    assert PollPolicy(backoff=0.1, jitter=0, respect_retry_after=False).delay(0, 3) == 0.1


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), (" 0 ", 0.0), ("-2", 0.0), ("1.5", 1.5), (None, None), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_future() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://api.example.com/x", "http://api.example.com/jobs/1", True),
        ("http://api.example.com/x", "http://API.example.com:80/jobs/1", True),
        ("http://api.example.com/x", "https://api.example.com/jobs/1", True),  # upgrade
        ("https://api.example.com/x", "http://api.example.com/jobs/1", False),  # downgrade
        ("http://api.example.com/x", "http://evil.example.com/jobs/1", False),
        ("http://api.example.com/x", "http://api.example.com:8080/jobs/1", False),
        ("http://127.0.0.1:5000/x", "http://localhost:5000/jobs/1", False),
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(a, b) is same


def test_transport_keeps_credentials_on_their_origin_only() -> None:
    headers = {"Authorization": "Bearer t", "Cookie": "s=1", "Proxy-Authorization": "p",
               "X-User": "alice", "X-Job-Flag": "ON", "Content-Type": "application/json"}
    transport = Transport(lambda *a, **k: None, "http://api.example.com/r", headers, PollPolicy())  # type: ignore[arg-type, return-value]
    same = transport.headers_for("http://api.example.com/jobs/1")
    assert {k.lower() for k in same} == {"authorization", "cookie", "proxy-authorization", "x-user"}
    other = transport.headers_for("http://jobs.example.net/jobs/1")
    assert dict(other) == {"X-User": "alice"}


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
