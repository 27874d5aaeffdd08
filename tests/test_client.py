"""The requests client against real servers: werkzeug in a thread, and gunicorn."""
from __future__ import annotations

import concurrent.futures
import os
import threading
import time
import typing as t

import pytest
import requests
from client_app import BINARY, create_app
from flask import Flask, request
from servers import run_gunicorn, serve_app
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from flask_jobify import JobifyError, JobProgress
from flask_jobify.client import (
    JobAdapter,
    JobConnectionError,
    JobFailed,
    JobLost,
    JobNotAccepted,
    JobSession,
    JobTimedOut,
    JobWasCancelled,
    PollPolicy,
)
from flask_jobify.client import job as job_module

#: Headers that depend on the connection or the moment, not on the view.
VOLATILE = {"date", "server", "connection", "keep-alive"}
#: The full protocol (202, status long-polls, the result), quick: no
#: inline answer, no long-poll on the result (their tests ask for them).
FAST = PollPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0,
                  inline_wait=0, long_poll_result=False)


#: The client does not depend on the store: its server app runs on memory
#: (a SpyStore by default), but for the gunicorn test, on SQLite.
pytestmark = pytest.mark.stores("memory")


@pytest.fixture
def app(apps: t.Any) -> Flask:
    """The client app on a :class:`client_app.SpyStore`; stopped afterwards."""
    return t.cast(Flask, apps(create_app, spy=True))


@pytest.fixture
def base(app: Flask) -> t.Iterator[str]:
    with serve_app(app) as url:
        yield url


@pytest.fixture
def session(base: str) -> t.Iterator[requests.Session]:
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST))
    yield s
    s.close()


@pytest.fixture
def jobs() -> t.Iterator[JobSession]:
    s = JobSession(poll=FAST)
    yield s
    s.close()


def stable_headers(response: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}


def newest_job(base: str, operation: str) -> dict[str, t.Any]:
    page = requests.get(base + "/jobs", params={"operation": operation}, timeout=10).json()
    return page["jobs"][0]


# -- the returned Response -----------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/echo", {"json": {"a": [1, 2]}, "params": {"q": "x"}}),
        ("GET", "/binary", {}),
        ("POST", "/teapot", {"json": {}}),
        ("POST", "/boom", {"data": b"x"}),
        ("GET", "/missing", {}),
    ],
    ids=["json", "binary", "4xx", "exception", "abort-404"],
)
def test_adapter_response_equals_the_synchronous_one(
    base: str, session: requests.Session, method: str, path: str, kwargs: dict[str, t.Any]
) -> None:
    sync = requests.request(method, base + path, timeout=10, **kwargs)
    job = session.request(method, base + path, timeout=10, **kwargs)
    assert job.history[0].status_code == 202, "the call did not run as a job"
    assert job.status_code == sync.status_code
    assert job.content == sync.content
    assert stable_headers(job) == stable_headers(sync)
    assert job.url == sync.url
    assert job.request.method == method and job.request.url == sync.url
    record = job.history[-1].json()
    assert record["status"] == ("succeeded" if sync.ok else "failed")
    assert record["httpStatus"] == sync.status_code


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/echo", {"json": {"a": [1, 2]}, "params": {"q": "x"}}),
        ("GET", "/binary", {}),
        ("POST", "/teapot", {"json": {}}),
        ("POST", "/boom", {"data": b"x"}),
        ("HEAD", "/binary", {}),
    ],
    ids=["json", "binary", "4xx", "exception", "head"],
)
def test_a_fast_job_is_answered_inline_in_one_request(
    app: Flask, base: str, method: str, path: str, kwargs: dict[str, t.Any]
) -> None:
    """By default the submission asks ``Prefer: wait=1``: a job that ends
    within it is answered by that one request, as the synchronous call."""
    sync = requests.request(method, base + path, timeout=10, **kwargs)
    seen = app.extensions["requests"]
    before = len(seen.log)
    with JobSession() as s:
        job = s.request(method, base + path, timeout=10, **kwargs)
    assert (job.status_code, job.content) == (sync.status_code, sync.content)
    assert stable_headers(job) == stable_headers(sync)
    assert job.history == []
    sent = seen.log[before:]  # the submission, and the job's own run of the view
    assert [(m, p) for m, p, _ in sent] == [(method, path)] * 2
    assert sent[0][2]["X-Job-Flag"] == "ON" and sent[0][2]["Prefer"] == "wait=1"
    assert newest_job(base, path.strip("/").split("/")[0])["status"] in ("succeeded", "failed")


@pytest.mark.parametrize("inline", [0, 1], ids=["202-at-once", "202-after-1s"])
def test_a_slow_job_takes_two_requests_the_result_long_polled(
    app: Flask, base: str, inline: int
) -> None:
    """A job still running when the submission is answered: one long-poll
    on its result (``?wait=``) brings its response; no status request."""
    seen = app.extensions["requests"]
    before = len(seen.log)
    threading.Timer(inline + 0.3, app.extensions["gates"].open, ["slow"]).start()
    with JobSession(poll=PollPolicy(inline_wait=inline)) as s:
        response = s.post(base + "/gate/slow", timeout=10)
    assert response.json() == {"gate": "slow"}
    assert response.history[0].status_code == 202
    jobs_api = [(m, p.rsplit("/", 1)[-1]) for m, p, _ in seen.log[before:]
                if p.startswith("/jobs")]
    assert jobs_api == [("GET", "result")]


def test_the_result_long_poll_falls_back_to_the_status_for_a_cancelled_job(
    app: Flask, base: str
) -> None:
    """A job that ends without a response: the result answers 409, which
    could be the view's; the client asks the status and raises."""
    s = JobSession(poll=PollPolicy(inline_wait=0))
    job = s.submit("POST", base + "/gate/cancelled-fast")
    assert app.extensions["gates"].started["cancelled-fast"].wait(5)
    threading.Timer(0.2, job.cancel).start()
    with pytest.raises(JobWasCancelled):
        job.result(timeout=10)


def test_raise_on_failure_asks_for_no_inline_answer(app: Flask, base: str) -> None:
    seen = app.extensions["requests"]
    before = len(seen.log)
    with JobSession(raise_on_failure=True) as s, pytest.raises(JobFailed):
        s.post(base + "/boom", data=b"x", timeout=10)
    first = seen.log[before][2]
    assert "Prefer" not in first and first["X-Job-Flag"] == "ON"


def test_adapter_head_has_the_headers_and_no_body(session: requests.Session, base: str) -> None:
    """A HEAD job's final response is the synchronous HEAD's: the stored
    headers, Content-Length included, and no body (RFC 9110 section 9.3.2)."""
    sync = requests.head(base + "/binary", timeout=10)
    job = session.head(base + "/binary", timeout=10)
    assert job.history[0].status_code == 202, "the call did not run as a job"
    assert job.request.method == "HEAD"
    assert job.status_code == sync.status_code == 200
    assert job.content == sync.content == b""
    assert job.headers["Content-Length"] == sync.headers["Content-Length"] == str(len(BINARY))
    assert stable_headers(job) == stable_headers(sync)


def test_adapter_binary_body_is_byte_exact(session: requests.Session, base: str) -> None:
    response = session.get(base + "/binary", timeout=10)
    assert response.content == BINARY
    assert response.headers["X-Digest"] == "sha256"


def test_adapter_streams_the_result(session: requests.Session, base: str) -> None:
    with session.get(base + "/binary", stream=True, timeout=10) as response:
        assert response.history[0].status_code == 202
        assert b"".join(response.iter_content(4096)) == BINARY


def test_adapter_failed_job_behaves_like_a_failed_call(
    session: requests.Session, base: str
) -> None:
    response = session.post(base + "/teapot", timeout=10)
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    assert caught.value.response.status_code == 418


def test_adapter_raise_on_failure(base: str) -> None:
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST, raise_on_failure=True))
    with pytest.raises(JobFailed) as caught:
        s.post(base + "/boom", timeout=10)
    exc = caught.value
    assert isinstance(exc, JobifyError) and isinstance(exc, requests.RequestException)
    assert exc.response is not None and exc.response.status_code == 500
    assert exc.job is not None and exc.job["status"] == "failed"
    assert exc.job["error"]["type"] == "RuntimeError"


def test_adapter_follows_a_location_under_a_path_prefix(app: Flask) -> None:
    prefixed = DispatcherMiddleware(Flask("root"), {"/api": app})
    with serve_app(prefixed) as url:
        s = requests.Session()
        s.mount(url, JobAdapter(poll=FAST))
        response = s.post(url + "/api/echo", json={"n": 1}, timeout=10)
    assert response.json()["json"] == {"n": 1}
    assert response.history[0].headers["Location"].startswith("/api/jobs/")
    assert response.url == url + "/api/echo"


def test_adapter_prefer_respond_async(base: str) -> None:
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST, prefer=True))
    response = s.post(base + "/echo", json={"p": 1}, timeout=10)
    assert response.json()["json"] == {"p": 1}
    assert response.history[0].headers["Preference-Applied"] == "respond-async"
    assert "X-Job-Flag" not in response.history[0].request.headers


def test_adapter_prefer_wait_gets_the_answer_directly(base: str, app: Flask) -> None:
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST, prefer=True, prefer_wait=10))
    response = s.post(base + "/echo", json={"p": 2}, timeout=20)
    assert response.json()["json"] == {"p": 2}
    assert response.history == []
    assert app.extensions["requests"].count("GET", "/jobs/") == 0


def test_adapter_leaves_a_request_with_the_flag_off_alone(
    session: requests.Session, base: str
) -> None:
    response = session.post(base + "/echo", json={}, headers={"X-Job-Flag": "OFF"}, timeout=10)
    assert response.status_code == 200 and response.history == []


def test_adapter_returns_non_job_answers_unchanged(session: requests.Session, base: str) -> None:
    response = session.post(base + "/plain", timeout=10)
    assert response.json() == {"plain": True}
    assert response.history == []
    assert response.request.headers["X-Job-Flag"] == "ON"


def test_adapter_passes_a_plain_flask_server_through() -> None:
    plain = Flask("plain")

    @plain.post("/thing")
    def thing() -> t.Any:
        return {"flag": request.headers.get("X-Job-Flag")}, 201, {"X-Thing": "1"}

    @plain.post("/accepted")
    def accepted() -> t.Any:  # a 202 of the app's own, without X-Job-Id
        return {"queued": True}, 202, {"Location": "/elsewhere"}

    with serve_app(plain) as url:
        s = requests.Session()
        s.mount(url, JobAdapter(poll=FAST))
        sync = requests.post(url + "/thing", timeout=10)
        response = s.post(url + "/thing", timeout=10)
        own_202 = s.post(url + "/accepted", timeout=10)
    assert response.status_code == 201 and response.history == []
    assert response.json() == {"flag": "ON"}
    assert stable_headers(response) == stable_headers(sync)
    assert own_202.status_code == 202 and own_202.json() == {"queued": True}
    assert own_202.history == []


# -- progress --------------------------------------------------------------------
def test_adapter_calls_on_progress_on_every_change_in_order(base: str) -> None:
    seen: list[JobProgress] = []
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST, on_progress=seen.append))
    response = s.post(base + "/steps", params={"n": 5}, timeout=10)
    assert response.json() == {"steps": 5}
    assert seen == [JobProgress(20.0 * n, f"step {n}") for n in range(5)]


def test_job_handle_progress_and_progress_bar(base: str) -> None:
    s = JobSession(poll=FAST, progress_bar=True)
    job = s.submit("POST", base + "/steps", params={"n": 3})
    assert job.wait(timeout=10)
    assert job.progress == JobProgress(pytest.approx(200 / 3), "step 2")
    assert job.result().json() == {"steps": 3}


def test_a_change_between_two_polls_is_not_missed(base: str, app: Flask) -> None:
    """The client long-polls from the version it holds: a change made while
    no poll was waiting is answered at once, not at the next change."""
    gates = app.extensions["gates"]

    def on_progress(progress: JobProgress) -> None:
        if progress.message == "poked":
            gates.open("between")  # the only way the job can end

    job = JobSession(poll=FAST, on_progress=on_progress).submit("POST", base + "/gate/between")
    assert gates.started["between"].wait(10)
    job.status()  # holds the current version; no poll is waiting now
    app.extensions["jobify"].store.update(job.id, {"progress": JobProgress(50.0, "poked")})
    assert job.wait(timeout=10)
    assert job.result().json() == {"gate": "between"}


def test_threads_waiting_on_one_job_see_each_change_once(base: str, app: Flask) -> None:
    seen: list[JobProgress] = []
    s = JobSession(poll=FAST, on_progress=seen.append)
    job = s.submit("POST", base + "/gate/shared")
    assert app.extensions["gates"].started["shared"].wait(10)
    waiters = [threading.Thread(target=job.wait, args=(10,)) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    app.extensions["gates"].open("shared")
    for waiter in waiters:
        waiter.join(10)
    assert job.done and job.result().json() == {"gate": "shared"}
    assert seen == [JobProgress(0.0, "waiting")]


# -- timeouts and cancellation ------------------------------------------------------
def test_adapter_timeout_leaves_the_job_running(base: str, app: Flask, jobs: JobSession) -> None:
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST, timeout=0.3))
    with pytest.raises(JobTimedOut) as caught:
        s.post(base + "/gate/late", timeout=10)
    exc = caught.value
    assert isinstance(exc, requests.Timeout) and not exc.on_server
    assert exc.job is not None and exc.job["status"] in ("pending", "running")
    job = jobs.resume(requests.compat.urljoin(base, exc.job["statusUrl"]))
    app.extensions["gates"].open("late")
    assert job.result(timeout=10).json() == {"gate": "late"}


@pytest.mark.parametrize(("hangs", "message"), [
    ("submission", "was not answered within the adapter's timeout"),
    ("long-poll", r"did not end in time \(running on the server\): it goes on"),
    ("result", r"ended \(succeeded\) but its result did not arrive in time"),
])
def test_adapter_timeout_bounds_every_request(app: Flask, hangs: str, message: str) -> None:
    """A server that holds a request past the adapter's ``timeout`` (the
    submission, a long-poll, the result) does not hold the call."""
    release = threading.Event()

    @app.before_request
    def hang() -> None:
        if {"submission": request.method == "POST" and "X-Job-Flag" in request.headers
                and "gate" not in request.path,
            "long-poll": "wait" in request.args,
            "result": request.path.endswith("/result")}[hangs]:
            release.wait(30)

    path = "/gate/held" if hangs == "long-poll" else "/echo"
    try:
        with serve_app(app) as url:
            s = requests.Session()
            s.mount(url, JobAdapter(poll=PollPolicy(wait=15, read_timeout=10, inline_wait=0,
                                                        long_poll_result=False), timeout=1.5))
            started = time.monotonic()
            with pytest.raises(JobTimedOut, match=message):
                s.post(url + path, json={}, timeout=20)
            assert time.monotonic() - started < 2.5
    finally:
        release.set()
        app.extensions["gates"].open("held")


def test_adapter_cancel_on_timeout(base: str, jobs: JobSession) -> None:
    s = requests.Session()
    s.mount(base, JobAdapter(poll=FAST, timeout=0.3, cancel_on_timeout=True))
    with pytest.raises(JobTimedOut) as caught:
        s.post(base + "/gate/never", timeout=10)
    assert caught.value.job is not None
    assert caught.value.job["cancelRequested"] is True
    job = jobs.resume(base + caught.value.job["statusUrl"])
    assert job.wait(timeout=10)
    assert job.record["status"] == "cancelled"
    with pytest.raises(JobWasCancelled):
        job.result()


def test_server_side_timeout_raises_job_timed_out(session: requests.Session, base: str) -> None:
    with pytest.raises(JobTimedOut) as caught:
        session.post(base + "/overtime", timeout=10)
    assert caught.value.on_server
    assert caught.value.job is not None and caught.value.job["error"]["type"] == "timeout"


def test_job_cancel_running(base: str, app: Flask, jobs: JobSession) -> None:
    job = jobs.submit("POST", base + "/gate/stopme")
    assert app.extensions["gates"].started["stopme"].wait(10)
    assert job.cancel() is True
    assert job.record["cancelRequested"] is True
    with pytest.raises(JobWasCancelled) as caught:
        job.result(timeout=10)
    assert caught.value.job is not None and caught.value.job["status"] == "cancelled"


def test_job_cancel_pending(apps: t.Any, jobs: JobSession) -> None:
    app = apps(create_app, JOBIFY_MAX_WORKERS=1)
    with serve_app(app) as url:
        blocker = jobs.submit("POST", url + "/gate/blocker")
        assert app.extensions["gates"].started["blocker"].wait(10)
        pending = jobs.submit("POST", url + "/echo", json={})
        assert pending.status().value == "pending"
        assert pending.cancel() is True
        assert pending.record["status"] == "cancelled"
        with pytest.raises(JobWasCancelled):
            pending.result()
        app.extensions["gates"].open("blocker")
        assert blocker.result(timeout=10).json() == {"gate": "blocker"}


def test_job_cancel_finished_keeps_its_result(base: str, jobs: JobSession, app: Flask) -> None:
    job = jobs.submit("POST", base + "/echo", json={"keep": 1})
    assert job.result(timeout=10).ok
    assert job.cancel() is False
    assert app.extensions["requests"].count("DELETE", "/jobs/") == 0
    assert job.result(timeout=10).json()["json"] == {"keep": 1}  # still there


def test_job_delete_finished_forgets_it(base: str, jobs: JobSession) -> None:
    job = jobs.submit("POST", base + "/echo", json={})
    assert job.result(timeout=10).ok
    assert job.delete() is False
    with pytest.raises(JobLost, match=job.id):
        job.status()


def test_job_lost_from_resume_names_the_job(base: str, jobs: JobSession) -> None:
    job = jobs.submit("POST", base + "/echo", json={})
    assert job.result(timeout=10).ok
    job.delete()
    with pytest.raises(JobLost) as caught:
        jobs.resume(job.status_url)
    assert f"job {job.id}:" in str(caught.value)


@pytest.mark.parametrize(("via", "cancel"),
                         [("adapter", True), ("adapter", False), ("handle", True)])
def test_keyboard_interrupt_cancels_when_asked(
    base: str, app: Flask, via: str, cancel: bool
) -> None:
    def interrupt(progress: JobProgress) -> None:
        raise KeyboardInterrupt

    s = JobSession(poll=FAST, on_progress=interrupt, cancel_on_interrupt=cancel)
    with pytest.raises(KeyboardInterrupt):
        if via == "adapter":
            s.post(base + "/gate/ctrl-c", timeout=10)
        else:
            s.submit("POST", base + "/gate/ctrl-c").wait()
    record = newest_job(base, "gate")
    assert record["cancelRequested"] is cancel
    app.extensions["gates"].open("ctrl-c")


# -- handles ---------------------------------------------------------------------
def test_submit_then_resume_from_another_session(base: str, app: Flask) -> None:
    first = JobSession(poll=FAST).submit("POST", base + "/gate/resume")
    assert first.id and first.status_url == f"{base}/jobs/{first.id}"
    other = JobSession(poll=FAST).resume(first.status_url)
    assert other.id == first.id and not other.done
    app.extensions["gates"].open("resume")
    result = other.result(timeout=10)
    assert result.json() == {"gate": "resume"}
    assert result.url == other.result_url and [r.status_code for r in result.history] == [200]
    own = first.result(timeout=10)
    assert own.url == base + "/gate/resume" and [r.status_code for r in own.history] == [202, 200]
    assert other.status().value == "succeeded"


def test_submit_refuses_a_non_job_answer(base: str, jobs: JobSession) -> None:
    with pytest.raises(JobNotAccepted) as caught:
        jobs.submit("POST", base + "/plain")
    assert caught.value.response is not None and caught.value.response.json() == {"plain": True}


def test_job_session_is_a_session_with_the_adapter(base: str, jobs: JobSession) -> None:
    response = jobs.post(base + "/echo", json={"s": 1}, headers={"X-User": "bo"}, timeout=10)
    assert response.json()["json"] == {"s": 1} and response.json()["user"] == "bo"
    assert response.history[0].status_code == 202


def test_one_session_follows_32_jobs_from_32_threads(base: str) -> None:
    s = JobSession(poll=FAST, pool_maxsize=32)

    def call(n: int) -> tuple[int, int, dict[str, t.Any]]:
        response = s.post(base + "/echo", json={"n": n}, timeout=20)
        return n, response.history[0].status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(32)))
    assert [(n, status, body["json"]) for n, status, body in results] == [
        (n, 202, {"n": n}) for n in range(32)
    ]


# -- unreliable servers ----------------------------------------------------------
def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    real = job_module.sleep_within

    def spy(seconds: float, deadline: float | None) -> bool:
        delays.append(seconds)
        return real(seconds, deadline)

    monkeypatch.setattr(job_module, "sleep_within", spy)
    return delays


def follow_gated_job(app: Flask, policy: PollPolicy, polls: int) -> None:
    """Follow a job that runs until the server has seen ``polls`` status
    requests."""
    with serve_app(app) as url:
        job = JobSession(poll=policy).submit("POST", url + "/gate/polled")
        waiter = threading.Thread(target=job.wait, args=(10,))
        waiter.start()
        assert app.extensions["requests"].wait_for("GET", "/jobs/", polls)
        app.extensions["gates"].open("polled")
        waiter.join(10)
        assert job.result().json() == {"gate": "polled"}


def test_polls_with_backoff_when_long_poll_is_off(
    apps: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays = record_sleeps(monkeypatch)
    app = apps(create_app, JOBIFY_MAX_WAIT=0, JOBIFY_RETRY_AFTER=0)
    follow_gated_job(app, PollPolicy(backoff_factor=0.01, backoff_max=0.04, backoff_jitter=0), 6)
    # urllib3's Retry: the first at once, then backoff_factor * 2 ** (n - 1), capped.
    assert delays[:4] == pytest.approx([0, 0.02, 0.04, 0.04])


def test_keeps_long_polling_a_server_that_caps_the_wait(
    apps: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays = record_sleeps(monkeypatch)
    follow_gated_job(apps(create_app, JOBIFY_MAX_WAIT=0.3), FAST, 4)
    assert delays == []  # never fell back to sleeping between polls


def test_polling_honours_retry_after(apps: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    delays = record_sleeps(monkeypatch)
    follow_gated_job(apps(create_app, JOBIFY_MAX_WAIT=0, JOBIFY_RETRY_AFTER=1),
                     PollPolicy(backoff_factor=0.01), 3)
    assert delays and min(delays) >= 1


def test_status_poll_5xx_are_retried(session: requests.Session, base: str, app: Flask) -> None:
    app.extensions["requests"].fail_polls = 3
    response = session.post(base + "/echo", json={"r": 1}, timeout=10)
    assert response.json()["json"] == {"r": 1}
    assert app.extensions["requests"].fail_polls == 0


def test_status_poll_failures_past_the_budget_raise(base: str, app: Flask) -> None:
    app.extensions["requests"].fail_polls = 5
    s = requests.Session()
    s.mount(base, JobAdapter(poll=PollPolicy(backoff_factor=0.01, retries=2, inline_wait=0,
                                                  long_poll_result=False)))
    with pytest.raises(JobConnectionError) as caught:
        s.post(base + "/echo", json={}, timeout=10)
    assert isinstance(caught.value, requests.ConnectionError)
    assert caught.value.response is not None and caught.value.response.status_code == 503


def test_status_poll_network_errors_are_retried(base: str) -> None:
    class Flaky(JobAdapter):
        failures = 2

        def send_plain(
            self, request: requests.PreparedRequest, **kwargs: t.Any
        ) -> requests.Response:
            if request.method == "GET" and "/jobs/" in (request.url or "") and self.failures:
                self.failures -= 1
                raise requests.ConnectionError("connection reset")
            return super().send_plain(request, **kwargs)

    s = requests.Session()
    adapter = Flaky(poll=FAST)
    s.mount(base, adapter)
    assert s.post(base + "/echo", json={"f": 1}, timeout=10).json()["json"] == {"f": 1}
    assert adapter.failures == 0


def test_queue_full_submission_is_retried(apps: t.Any, jobs: JobSession) -> None:
    app = apps(create_app, JOBIFY_MAX_WORKERS=1, JOBIFY_MAX_QUEUED=1, JOBIFY_RETRY_AFTER=0)
    gates, seen = app.extensions["gates"], app.extensions["requests"]
    with serve_app(app) as url:
        running = jobs.submit("POST", url + "/gate/a")
        assert gates.started["a"].wait(10)
        queued = jobs.submit("POST", url + "/gate/b")
        s = requests.Session()
        policy = PollPolicy(backoff_factor=0.02, backoff_max=0.1, submit_retries=100)
        s.mount(url, JobAdapter(poll=policy))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            third = pool.submit(s.post, url + "/echo", json={"q": 3}, timeout=10)
            assert seen.wait_for("POST", "/echo", 2)  # refused once at least
            gates.open("a")
            gates.open("b")
            assert third.result(20).json()["json"] == {"q": 3}
        assert running.result().ok and queued.result().ok
        refused = requests.Session()
        refused.mount(url, JobAdapter(poll=PollPolicy(submit_retries=0)))
        gates.event("c").clear()
        jobs.submit("POST", url + "/gate/c")
        assert gates.started["c"].wait(10)
        jobs.submit("POST", url + "/gate/d")
        answer = refused.post(url + "/echo", json={}, timeout=10)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "queue_full"
        gates.open("c")
        gates.open("d")


# -- credentials -----------------------------------------------------------------
def test_credentials_follow_the_job_on_its_own_origin(base: str, app: Flask) -> None:
    s = JobSession(poll=FAST)
    s.headers["Authorization"] = "Bearer alice"
    s.cookies.set("session", "s1")
    response = s.post(base + "/echo", json={}, timeout=10)
    assert response.ok, "the owner's follow-ups must carry the owner's credentials"
    follow_ups = [h for m, p, h in app.extensions["requests"].log if p.startswith("/jobs/")]
    assert follow_ups and all(h.get("Authorization") == "Bearer alice" for h in follow_ups)
    assert all("session=s1" in h.get("Cookie", "") for h in follow_ups)
    with pytest.raises(JobLost):  # nobody else sees alice's job
        JobSession().resume(response.history[-1].url.split("?")[0])


def front_app(backend: str, backend_other_host: str) -> Flask:
    """A front server that starts jobs on ``backend`` and hands out their
    ``Location`` on ``backend_other_host``."""
    front = Flask("front")

    @front.post("/reports")
    def reports() -> t.Any:
        answer = requests.post(backend + "/echo", json=request.get_json(),
                               headers={"X-Job-Flag": "ON"}, timeout=10)
        headers = dict(answer.headers)
        headers["Location"] = backend_other_host + answer.headers["Location"]
        return answer.content, answer.status_code, {
            k: v for k, v in headers.items() if k.lower() not in VOLATILE | {"content-length"}
        }

    return front


def test_credentials_never_go_to_another_host(app: Flask) -> None:
    """A front server hands out a Location on another host: the follow-ups
    go there without Authorization, Cookie or Proxy-Authorization."""
    with serve_app(app) as backend:
        backend_other_host = backend.replace("127.0.0.1", "localhost")
        with serve_app(front_app(backend, backend_other_host)) as url:
            s = requests.Session()
            s.mount(url, JobAdapter(poll=FAST))
            s.mount(backend_other_host, JobAdapter(poll=FAST))
            response = s.post(url + "/reports", json={"c": 1}, timeout=10, headers={
                "Authorization": "Bearer secret", "Cookie": "sid=secret",
                "Proxy-Authorization": "Basic secret", "X-User": "carol"})
    assert response.json()["json"] == {"c": 1}
    follow_ups = [h for m, p, h in app.extensions["requests"].log if p.startswith("/jobs/")]
    assert follow_ups
    for headers in follow_ups:
        assert headers["Host"].startswith("localhost")
        assert not {"authorization", "cookie", "proxy-authorization"} & {k.lower() for k in headers}
        assert headers["X-User"] == "carol"


def test_cookies_without_a_domain_never_go_to_another_host(app: Flask) -> None:
    """requests sends a cookie set without a domain to every host; the
    follow-ups on another host get only the cookies that host set itself."""
    @app.after_request
    def affinity(response: t.Any) -> t.Any:
        if request.path.startswith("/jobs/") and "lb" not in request.cookies:
            response.set_cookie("lb", "backend")
        return response

    with serve_app(app) as backend:
        backend_other_host = backend.replace("127.0.0.1", "localhost")
        with serve_app(front_app(backend, backend_other_host)) as url:
            s = JobSession(poll=PollPolicy(wait=0, backoff_factor=0.05, backoff_jitter=0))
            s.cookies.set("sid", "hostless")
            s.cookies.set("front", "scoped", domain="127.0.0.1")
            response = s.post(url + "/reports", json={"c": 1}, cookies={"call": "c"}, timeout=10)
    assert response.json()["json"] == {"c": 1}
    follow_ups = [h for m, p, h in app.extensions["requests"].log if p.startswith("/jobs/")]
    assert len(follow_ups) >= 2 and all(h["Host"].startswith("localhost") for h in follow_ups)
    assert "Cookie" not in follow_ups[0]
    assert all(h.get("Cookie") == "lb=backend" for h in follow_ups[1:])


@pytest.mark.parametrize("via", ["session", "submit", "plain-session"])
def test_cookies_set_during_the_job_are_kept(app: Flask, via: str) -> None:
    """A load balancer's affinity cookie on the 202 goes with every
    follow-up (requests carries a redirect's Set-Cookie to the next hop),
    and a cookie a status poll sets reaches the JobSession's jar."""
    @app.after_request
    def cookies(response: t.Any) -> t.Any:
        if response.status_code == 202:
            response.set_cookie("AWSALB", "sticky")
        elif (request.method == "GET" and request.path.startswith("/jobs/")
                and not request.path.endswith("/result")
                and response.get_json().get("status") == "running"
                and "rotated" not in request.cookies):
            response.set_cookie("rotated", "R1")
            app.extensions["gates"].open("cookies")  # the next poll sees it end
        return response

    with serve_app(app) as url:
        s = requests.Session() if via == "plain-session" else JobSession(poll=FAST)
        if via == "plain-session":
            s.mount(url, JobAdapter(poll=FAST))
        if via == "submit":
            response = t.cast(JobSession, s).submit("POST", url + "/gate/cookies").result(10)
        else:
            response = s.post(url + "/gate/cookies", timeout=10)
    assert response.json() == {"gate": "cookies"}
    follow_ups = [h for m, p, h in app.extensions["requests"].log if p.startswith("/jobs/")]
    assert len(follow_ups) >= 3
    assert all("AWSALB=sticky" in h.get("Cookie", "") for h in follow_ups)
    assert "rotated=R1" in follow_ups[-1]["Cookie"]
    if via != "plain-session":  # a plain Session's adapter never sees the session's jar
        assert s.cookies.get("AWSALB") == "sticky" and s.cookies.get("rotated") == "R1"


# -- gunicorn --------------------------------------------------------------------
@pytest.mark.stores("sqlite")
def test_adapter_against_gunicorn(apps: t.Any) -> None:
    """Two workers sharing an SQLite store."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = {"PYTHONPATH": os.pathsep.join(
        [tests_dir, os.path.dirname(tests_dir), os.environ.get("PYTHONPATH", "")])}
    spec = f"client_app:create_app({apps.url!r})"
    with run_gunicorn(spec, workers=2, threads=8, env=env) as url:
        s = JobSession(poll=FAST, pool_maxsize=8)
        sync = requests.get(url + "/binary", timeout=10)
        binary = s.get(url + "/binary", timeout=20)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda n: s.post(url + "/echo", json={"n": n}, timeout=20), range(8)))
        failed = s.post(url + "/teapot", timeout=20)
    assert binary.history[0].status_code == 202
    assert binary.content == sync.content == BINARY
    assert stable_headers(binary) == stable_headers(sync)
    assert [a.json()["json"] for a in answers] == [{"n": n} for n in range(8)]
    assert failed.status_code == 418 and failed.headers["X-Brewing"] == "no"
