"""The client's follow-up requests against real servers: auth applied
afresh to each (a per-request HMAC signature), and long-polls cut by a
gateway in front of a werkzeug server."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import typing as t
from urllib.parse import urlsplit

import pytest
import requests
from client_app import create_app
from flask import Flask, request
from gateway import gateway
from servers import serve_app

from flask_jobify import Jobify, current_job
from flask_jobify.client import JobAdapter, JobClientError, JobSession, PollPolicy

SECRET = b"shared secret"
#: The client does not depend on the store: its server app runs on memory.
pytestmark = pytest.mark.stores("memory")
#: The full protocol (202, status long-polls, the result), quick: no
#: inline answer, no long-poll on the result (their tests ask for them).
FAST = PollPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0,
                  inline_wait=0, long_poll_result=False)


# -- auth that signs each request ----------------------------------------------------
def signature(method: str, target: str, stamp: str, nonce: str) -> str:
    message = f"{method}\n{target}\n{stamp}\n{nonce}".encode()
    return hmac.new(SECRET, message, hashlib.sha256).hexdigest()


class HmacAuth(requests.auth.AuthBase):
    """Signs method, path and query with a timestamp and a one-time nonce,
    as HMAC schemes (and OAuth 1, AWS SigV4, Hawk) do."""

    def __init__(self) -> None:
        self.signed: list[str] = []

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(t.cast(str, r.url))
        target = url.path + (f"?{url.query}" if url.query else "")
        stamp, nonce = f"{time.time():.3f}", secrets.token_hex(8)
        sig = signature(t.cast(str, r.method), target, stamp, nonce)
        r.headers["Authorization"] = f"HMAC ts={stamp},nonce={nonce},sig={sig}"
        self.signed.append(f"{r.method} {url.path}")
        return r


def signed_app(*, queue_full: int = 0) -> Flask:
    """An app that checks the signature of every request, jobs API
    included, and refuses a nonce seen before (a replayed request). The
    job itself runs the accepted request again, whose nonce was seen: it
    was checked when the job was accepted.

    :param queue_full: submissions answered ``503 queue_full`` first, as a
        full queue answers them.
    """
    app = Flask(__name__)
    jobify = Jobify(app)
    seen: set[str] = set()
    lock = threading.Lock()
    app.extensions["refused"] = refused = []

    @app.before_request
    def check_signature() -> t.Any:
        parts = request.headers.get("Authorization", "HMAC ").split(" ", 1)[1].split(",")
        fields = dict(part.split("=", 1) for part in parts if "=" in part)
        query = request.query_string.decode()
        target = request.path + (f"?{query}" if query else "")
        expected = signature(request.method, target, fields.get("ts", ""), fields.get("nonce", ""))
        with lock:
            fresh = fields.get("nonce") not in seen or current_job.is_job
            seen.add(fields.get("nonce", ""))
        if not (fresh and hmac.compare_digest(expected, fields.get("sig", ""))):
            refused.append(f"{request.method} {request.path}")
            return {"error": {"code": "unauthorized", "message": "bad signature"}}, 401
        return None

    full = [queue_full]

    @app.before_request
    def full_queue() -> t.Any:
        if request.method == "POST" and not current_job.is_job and full[0] > 0:
            full[0] -= 1
            return ({"error": {"code": "queue_full", "message": "try again"}}, 503,
                    {"Retry-After": "0"})
        return None

    @app.post("/report")
    @jobify.job
    def report() -> t.Any:
        return {"rows": request.get_json()["rows"]}

    return app


@pytest.mark.parametrize("where", ["session", "call", "adapter"])
def test_follow_ups_are_signed_afresh(where: str) -> None:
    app, auth = signed_app(), HmacAuth()
    with serve_app(app) as url:
        assert requests.post(url + "/report", json={"rows": 1}, auth=HmacAuth(),
                             timeout=10).status_code == 200  # synchronously
        if where == "adapter":  # a plain Session: the adapter is told the auth
            s: requests.Session = requests.Session()
            s.mount(url, JobAdapter(poll=FAST, auth=auth))
            s.auth = auth
        else:
            s = JobSession(poll=FAST)
            if where == "session":
                s.auth = auth
        call_auth = auth if where == "call" else None
        response = s.post(url + "/report", json={"rows": 3}, auth=call_auth, timeout=10)
    assert response.status_code == 200 and response.json() == {"rows": 3}
    assert response.history[0].status_code == 202
    assert app.extensions["refused"] == []
    follow_ups = [line for line in auth.signed if "/jobs/" in line]
    assert any(line.endswith("/result") for line in follow_ups) and len(follow_ups) >= 2


@pytest.mark.parametrize("where", ["session", "adapter", "submit"])
def test_retried_submissions_are_signed_afresh(where: str) -> None:
    """A submission refused for a full queue is sent again with a fresh
    signature, not the one the server already saw."""
    app, auth = signed_app(queue_full=2), HmacAuth()
    with serve_app(app) as url:
        if where == "adapter":
            s: requests.Session = requests.Session()
            s.mount(url, JobAdapter(poll=FAST, auth=auth))
        else:
            s = JobSession(poll=FAST)
        s.auth = auth
        if where == "submit":
            response = t.cast(JobSession, s).submit("POST", url + "/report", json={"rows": 2}
                                                    ).result(timeout=10)
        else:
            response = s.post(url + "/report", json={"rows": 2}, timeout=10)
    assert response.status_code == 200 and response.json() == {"rows": 2}
    assert app.extensions["refused"] == []
    assert [line for line in auth.signed if line.startswith("POST")] == ["POST /report"] * 3


def test_job_handle_follow_ups_are_signed_afresh() -> None:
    app, auth = signed_app(), HmacAuth()
    with serve_app(app) as url:
        s = JobSession(poll=FAST)
        s.auth = auth
        job = s.submit("POST", url + "/report", json={"rows": 5})
        assert job.result(timeout=10).json() == {"rows": 5}
        again = s.resume(job.status_url)
        assert again.result(timeout=10).json() == {"rows": 5}
        assert job.delete() is False
    assert app.extensions["refused"] == []


def test_without_the_auth_a_plain_session_resends_a_stale_signature() -> None:
    """What the adapter's ``auth=`` is for: without it, the follow-ups of a
    plain Session resend the submission's signature, and the server
    refuses the replayed nonce."""
    app = signed_app()
    with serve_app(app) as url:
        s = requests.Session()
        s.mount(url, JobAdapter(poll=FAST))
        with pytest.raises(JobClientError, match="401"):
            s.post(url + "/report", json={"rows": 1}, auth=HmacAuth(), timeout=10)


# -- gateways that cut long requests ---------------------------------------------------
@pytest.mark.parametrize("mode", ["504", "reset"])
def test_long_polls_cut_by_a_gateway_are_shortened(apps, mode: str) -> None:
    """The issue's case: a gateway ending requests at 1.5 s, long-polls of
    2 s, a job with no progress (4 s here). The client shortens its
    long-polls to 0.8 s and the job's answer comes through."""
    app = apps(create_app)
    with serve_app(app) as upstream, gateway(upstream, limit=1.5, mode=mode) as gw:
        s = requests.Session()
        s.mount(gw.url, JobAdapter(poll=PollPolicy(wait=2, retries=3, long_poll_result=False)))
        response = s.post(gw.url + "/sleep", params={"seconds": 4}, timeout=30)
    assert response.json() == {"slept": 4.0}
    assert gw.cuts == 1
    polls = gw.lines("GET /jobs/")
    assert sum("wait=2&" in p or p.endswith("wait=2") for p in polls) == 1
    assert sum("wait=0.8" in p for p in polls) >= 2


def test_long_polls_cut_again_fall_back_to_polling(apps) -> None:
    """A gateway cutting at 0.6 s, long-polls of 1 s: half of the cut is
    under ``min_wait``, so the client polls, spaced by ``Retry-After``."""
    app = apps(create_app, JOBIFY_RETRY_AFTER=1)
    with serve_app(app) as upstream, gateway(upstream, limit=0.6) as gw:
        s = requests.Session()
        s.mount(gw.url, JobAdapter(poll=PollPolicy(wait=1, retries=2, inline_wait=0,
                                                        long_poll_result=False)))
        started = time.monotonic()
        response = s.post(gw.url + "/sleep", params={"seconds": 3}, timeout=30)
        took = time.monotonic() - started
    assert response.json() == {"slept": 3.0}
    assert gw.cuts == 1
    polls = gw.lines("GET /jobs/")
    plain = [p for p in polls if "wait=0" in p and "wait=0." not in p]
    assert len(plain) >= 2 and len(plain) <= 5, polls  # about one a second: Retry-After
    assert took < 6


def test_plain_polling_through_the_gateway_needs_no_fallback(apps) -> None:
    app = apps(create_app, JOBIFY_RETRY_AFTER=1)
    with serve_app(app) as upstream, gateway(upstream, limit=1.5) as gw:
        s = requests.Session()
        s.mount(gw.url, JobAdapter(poll=PollPolicy(wait=0, retries=3)))
        assert s.post(gw.url + "/sleep", params={"seconds": 2}, timeout=30).json() == {"slept": 2.0}
    assert gw.cuts == 0


def test_a_server_error_on_a_long_poll_is_not_a_cut(
    apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 the server gives at once is retried and counted, not taken for
    a gateway's cut: the wait stays as asked."""
    app = apps(create_app)
    app.extensions["requests"].fail_polls = 0
    with serve_app(app) as upstream, gateway(upstream, limit=5) as gw:
        s = JobSession(poll=PollPolicy(wait=2, backoff_factor=0.01))
        job = s.submit("POST", gw.url + "/sleep", params={"seconds": 2.5})
        job.status()
        app.extensions["requests"].fail_polls = 2
        assert job.result(timeout=20).json() == {"slept": 2.5}
    assert gw.cuts == 0
    assert not [p for p in gw.lines("GET /jobs/") if "wait=1" in p or "wait=0" in p]
