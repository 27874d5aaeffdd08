"""Every accepted job ends truthfully, on every store, whatever fails after the view.

The shapes of responses are compared with their synchronous twins in
``test_equivalence.py``; this module checks the state machine itself: who
ends a job, with which status and error, when a body, a hook, the store or
the process fails.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading
import time
import typing as t
from decimal import Decimal
from fractions import Fraction

import pytest
from flask import Flask, Response, copy_current_request_context, g, session
from helpers import finish

from flask_jobify import JobCancelled, Jobify, StoreError, current_job
from flask_jobify.executor import Run
from flask_jobify.lifecycle import TRANSITIONS, Ending, IllegalTransition, Lifecycle, released_error
from flask_jobify.models import Job, JobStatus, new_job_id
from flask_jobify.stores import store_from_url
from flask_jobify.stores.sqlite import SQLiteStore

FLAG = {"X-Job-Flag": "ON"}


def build_app(store: str, **config: t.Any) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, JOBIFY_SHUTDOWN_GRACE=0.5, SECRET_KEY="k", **config)
    return app, Jobify(app)


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., tuple[Flask, Jobify]]:
    """Builds bare apps (the test adds its views) on the test's store."""
    return functools.partial(apps, build_app)


def submit(client: t.Any, path: str, method: str = "get", **kwargs: t.Any) -> str:
    answer = getattr(client, method)(path, headers={**FLAG, **kwargs.pop("headers", {})}, **kwargs)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.headers["X-Job-Id"]


# -- nothing after the view leaves a job running ----------------------------------
def test_streamed_body_that_raises_fails_the_job_at_once(make_app):
    app, jobify = make_app()

    @app.get("/export")
    @jobify.job
    def export() -> Response:
        def rows() -> t.Iterator[str]:
            yield "id,name\n"
            yield "1,a\n"
            raise RuntimeError("the database went away")
        return Response(rows(), mimetype="text/csv")

    client = app.test_client()
    began = time.monotonic()
    record = finish(client, submit(client, "/export"))
    assert time.monotonic() - began < 5  # at once, not after a lease
    assert record["status"] == "failed"
    assert record["error"]["type"] == "RuntimeError"
    result = client.get(f"/jobs/{record['id']}/result")
    assert result.status_code == 500  # the app's rendering of the error
    assert record["httpStatus"] == 500


def test_job_cancelled_raised_in_a_streamed_body_cancels_the_job(make_app):
    app, jobify = make_app()

    @app.get("/stream")
    @jobify.job
    def stream() -> Response:
        def chunks() -> t.Iterator[bytes]:
            yield b"first"
            raise JobCancelled("stop")
        return Response(chunks())

    client = app.test_client()
    record = finish(client, submit(client, "/stream"))
    assert record["status"] == "cancelled"
    result = client.get(f"/jobs/{record['id']}/result")
    assert result.status_code == 409
    assert result.get_json()["error"]["code"] == "no_result"


@pytest.mark.parametrize("hook", ["after_request", "teardown_request"])
def test_a_hook_that_raises_fails_the_job_with_its_exception(make_app, hook):
    app, jobify = make_app()

    class HookError(Exception):
        pass

    def explode(response: t.Any = None) -> t.Any:
        if current_job.is_job:  # the submission itself goes through
            raise HookError("boom")
        return response

    getattr(app, hook)(explode)

    @app.get("/ok")
    @jobify.job
    def ok() -> t.Any:
        return {"ok": True}

    client = app.test_client()
    record = finish(client, submit(client, "/ok"))
    assert record["status"] == "failed"
    assert record["error"]["type"] == "HookError"
    assert client.get(f"/jobs/{record['id']}/result").status_code == 500


def test_a_view_that_exits_the_interpreter_fails_the_job(make_app):
    app, jobify = make_app()

    @app.get("/exit")
    @jobify.job
    def leave() -> t.Any:
        raise SystemExit(3)

    client = app.test_client()
    record = finish(client, submit(client, "/exit"))
    assert record["status"] == "failed"
    assert record["error"]["type"] == "SystemExit"


# -- cancel means cancel ---------------------------------------------------------------
def test_a_view_that_ignores_a_cancel_ends_cancelled_and_its_result_is_discarded(make_app):
    app, jobify = make_app()
    started, release = threading.Event(), threading.Event()

    @app.post("/deaf")
    @jobify.job
    def deaf() -> t.Any:
        started.set()
        release.wait(10)  # never looks at current_job.cancelled
        return {"done": True}

    client = app.test_client()
    job_id = submit(client, "/deaf", method="post")
    assert started.wait(5)
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 202
    assert answer.get_json()["cancelRequested"] is True
    assert answer.get_json()["status"] == "running"
    release.set()
    record = finish(client, job_id)
    assert record["status"] == "cancelled"
    assert record["cancelRequested"] is True
    assert record["httpStatus"] is None
    result = client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 409
    assert result.get_json()["error"]["code"] == "no_result"


# -- current_job follows the work; each run starts clean -------------------------------
def test_current_job_follows_copy_current_request_context(make_app):
    app, jobify = make_app()

    @app.get("/threaded")
    @jobify.job
    def threaded() -> t.Any:
        seen: dict[str, t.Any] = {}

        @copy_current_request_context
        def work() -> None:
            seen["is_job"] = current_job.is_job
            current_job.progress(40, "from a thread")
            seen["id"] = current_job.id

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return seen

    client = app.test_client()
    job_id = submit(client, "/threaded")
    record = finish(client, job_id)
    assert record["status"] == "succeeded"
    assert client.get(f"/jobs/{job_id}/result").get_json() == {"is_job": True, "id": job_id}
    assert record["progress"] == {"percent": 40.0, "message": "from a thread"}


def test_each_run_has_a_fresh_g_even_inside_an_app_context(make_app):
    """A Celery task base class that pushes ``app.app_context()`` around
    every task (the common Flask+Celery recipe) must not share ``g``."""
    app, jobify = make_app()
    calls: list[str] = []

    @app.before_request
    def count() -> None:
        calls.append("before")
        assert "mark" not in g
        g.mark = "set"

    @app.get("/mark")
    @jobify.job
    def mark() -> t.Any:
        return {"mark": g.mark}

    client = app.test_client()
    job_id = submit(client, "/mark")
    assert finish(client, job_id)["status"] == "succeeded"
    state = app.extensions["jobify"]
    captured = None
    with app.test_request_context("/mark"):
        from flask import request

        from flask_jobify.capture import capture_request
        captured = capture_request(request)
    calls.clear()
    with app.app_context():  # an executor that holds an app context open
        g.mark = "stale"
        second = Job(id="A" * 22, operation="mark", method="GET", path="/mark")
        state.store.create(second)
        state.worker.run(Run(second.id, captured, jobify_options(app, "mark")))
        assert g.mark == "stale"  # the run did not touch the executor's g
    assert calls == ["before"]
    assert state.store.get(second.id).status is JobStatus.SUCCEEDED


def jobify_options(app: Flask, endpoint: str) -> t.Any:
    from flask_jobify.options import options_of
    return options_of(app.view_functions[endpoint])


# -- the replay is the stored response, untouched ---------------------------------------
def test_the_replay_is_not_touched_by_the_fetchers_hooks_or_session(make_app):
    app, jobify = make_app(JOBIFY_RESULT_COOKIES="always")

    @app.before_request
    def permanent() -> None:
        session.permanent = True

    @app.after_request
    def stamp(response: Response) -> Response:
        response.headers.add("X-Stamp", "1")
        return response

    @app.post("/login")
    @jobify.job
    def login() -> t.Any:
        session["user"] = "ada"
        return {"ok": True}

    client = app.test_client()
    sync = client.post("/login")
    client.delete_cookie("session")
    job_id = submit(client, "/login", method="post")
    assert finish(client, job_id)["status"] == "succeeded"
    replay = client.get(f"/jobs/{job_id}/result")
    assert replay.headers.getlist("Set-Cookie") and len(replay.headers.getlist("Set-Cookie")) == 1
    assert replay.headers.getlist("X-Stamp") == ["1"]
    assert replay.get_data() == sync.get_data()
    # The cookie the client keeps is the job's: it is logged in.
    with client.session_transaction() as kept:
        assert kept["user"] == "ada"


@pytest.mark.parametrize("policy, owner, kept", [
    ("owner", None, False), ("owner", "ada", True), ("never", "ada", False),
    ("always", None, True),
])
def test_result_cookies_policy(make_app, policy, owner, kept):
    app, jobify = make_app(JOBIFY_RESULT_COOKIES=policy)
    jobify.owner_loader(lambda: owner)

    @app.get("/cookie")
    @jobify.job
    def cookie() -> Response:
        response = Response("c")
        response.set_cookie("token", "secret")
        return response

    client = app.test_client()
    job_id = submit(client, "/cookie")
    assert finish(client, job_id)["status"] == "succeeded"
    _, stored = app.extensions["jobify"].store.get_with_result(job_id)
    assert any(name.lower() == "set-cookie" for name, _ in stored.headers) is kept
    assert ("Set-Cookie" in client.get(f"/jobs/{job_id}/result").headers) is kept


def test_result_cookies_config_is_validated():
    with pytest.raises(ValueError, match="JOBIFY_RESULT_COOKIES"):
        build_app("memory://", JOBIFY_RESULT_COOKIES="sometimes")


def test_head_job_replays_headers_and_length_without_body(make_app):
    app, jobify = make_app()

    @app.get("/doc")
    @jobify.job
    def doc() -> t.Any:
        return "x" * 1234

    client = app.test_client()
    sync = client.head("/doc")
    job_id = submit(client, "/doc", method="head")
    assert finish(client, job_id)["status"] == "succeeded"
    _, stored = app.extensions["jobify"].store.get_with_result(job_id)
    assert stored.body == b""
    replay = client.head(f"/jobs/{job_id}/result")
    assert replay.status_code == sync.status_code == 200
    assert replay.headers["Content-Length"] == sync.headers["Content-Length"] == "1234"
    assert replay.get_data() == b""
    fetched = client.get(f"/jobs/{job_id}/result")  # a GET gets what there is: nothing
    assert fetched.headers["Content-Length"] == "0" and fetched.get_data() == b""


def test_result_honours_conditional_and_range_requests(make_app, tmp_path):
    app, jobify = make_app()
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)))
    from flask import send_file

    @app.get("/file")
    @jobify.job
    def file() -> t.Any:
        return send_file(path)

    client = app.test_client()
    job_id = submit(client, "/file")
    assert finish(client, job_id)["status"] == "succeeded"
    full = client.get(f"/jobs/{job_id}/result")
    assert full.status_code == 200 and full.get_data() == bytes(range(256))
    etag = full.headers["ETag"]
    assert client.get(f"/jobs/{job_id}/result",
                      headers={"If-None-Match": etag}).status_code == 304
    part = client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.get_data() == bytes(range(10))
    assert part.headers["Content-Range"] == "bytes 0-9/256"
    sync_part = client.get("/file", headers={"Range": "bytes=0-9"})
    assert sync_part.get_data() == part.get_data()
    assert client.get(f"/jobs/{job_id}/result",
                      headers={"Range": "bytes=900-999"}).status_code == 416
    failed = client.get(f"/jobs/{job_id}/result", headers={"If-Match": '"other"'})
    assert failed.status_code == 412  # not the stored body with a 412
    assert failed.get_json()["error"]["code"] == "precondition_failed"
    assert client.get(f"/jobs/{job_id}/result", headers={"If-Match": etag}).status_code == 200


# -- the state machine ------------------------------------------------------------------
def test_transitions_leave_final_statuses_alone():
    assert set(TRANSITIONS) == {JobStatus.PENDING, JobStatus.RUNNING}
    lifecycle = Lifecycle(Flask(__name__), store_from_url("memory://"), store_retry_seconds=0)
    with pytest.raises(IllegalTransition):
        lifecycle.move("x" * 22, JobStatus.RUNNING, if_status=[JobStatus.SUCCEEDED])
    with pytest.raises(IllegalTransition):
        lifecycle.move("x" * 22, JobStatus.SUCCEEDED, if_status=[JobStatus.PENDING])


def test_release_is_fenced_by_the_run_number(store):
    """``running -> pending`` with the lease expired, for the run that holds
    the job only; that run's later writes are refused."""
    lifecycle = Lifecycle(Flask(__name__), store, store_retry_seconds=0)
    job = Job(id=new_job_id(), operation="op", method="PUT", path="/", max_attempts=2)
    store.create(job)
    assert lifecycle.start(job.id, 1, now=time.time(), lease_until=time.time() + 60)
    assert lifecycle.release(job.id, 2, released_error(2)) is None  # not the run's number
    released = lifecycle.release(job.id, 1, released_error(1))
    assert released is not None
    assert (released.status, released.attempts, released.lease_until) == (
        JobStatus.PENDING, 1, 0.0)
    assert released.error is not None and released.error.type == "shutdown"
    assert [lost.id for lost in store.expired_leases()] == [job.id]
    assert lifecycle.end(job.id, 1, Ending(JobStatus.SUCCEEDED)) is None  # the stale run
    assert lifecycle.release(job.id, 1, released_error(1)) is None  # not running
    assert lifecycle.start(job.id, 2, now=time.time(), lease_until=None) is not None
    assert lifecycle.request_cancel(job.id) is not None
    assert lifecycle.release(job.id, 2, released_error(2)) is None  # cancel means cancel


# -- the store fails on the way -------------------------------------------------------
class FlakyStore(SQLiteStore):
    """A real SQLite store whose writes fail on demand: an outage, or a
    result too large for the disk."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.failing_writes = 0
        self.max_result = None
        #: Refuse every write that sets this status (a ``JobStatus``), while set.
        self.refuse_status: JobStatus | None = None

    def update(self, job_id: str, changes: t.Any, **kwargs: t.Any) -> Job | None:
        if self.failing_writes > 0:
            self.failing_writes -= 1
            raise StoreError("database or disk is full")
        if self.refuse_status is not None and changes.get("status") is self.refuse_status:
            raise StoreError("database or disk is full")
        result = kwargs.get("result")
        if (self.max_result is not None and result is not None
                and len(result.body) > self.max_result):
            raise StoreError("database or disk is full")
        return super().update(job_id, changes, **kwargs)


def flaky_app(tmp_path: t.Any, **config: t.Any) -> tuple[Flask, Jobify, FlakyStore]:
    store = FlakyStore(str(tmp_path / "flaky.db"))
    app = Flask(__name__)
    app.config.update(JOBIFY_SHUTDOWN_GRACE=0.5, **config)
    jobify = Jobify(app, store=store)

    @app.get("/big")
    @jobify.job
    def big() -> t.Any:
        return "x" * 10_000

    @app.get("/flaky")
    @jobify.job(retries=2, backoff=0.05)
    def flaky() -> t.Any:
        return "down", 503

    @app.get("/progress")
    @jobify.job
    def progress() -> t.Any:
        store.failing_writes = 1
        current_job.progress(50, "lost to the outage")  # logged, not raised
        current_job.progress(60, "published")
        return {"done": True}

    return app, jobify, store


def test_a_progress_write_that_fails_does_not_stop_the_work(tmp_path, caplog):
    app, _, _ = flaky_app(tmp_path)
    client = app.test_client()
    record = finish(client, submit(client, "/progress"))
    assert record["status"] == "succeeded"
    assert record["progress"] == {"percent": 60.0, "message": "published"}
    assert "could not publish its progress" in caplog.text
    app.extensions["jobify"].shutdown(grace=1)


def test_a_store_outage_at_the_end_is_waited_out(tmp_path, caplog):
    app, _, store = flaky_app(tmp_path, JOBIFY_STORE_RETRY_SECONDS=10)
    client = app.test_client()
    store.failing_writes = 0
    job_id = submit(client, "/big")
    finish(client, job_id)
    # Fail the next 4 writes: the start of the next job, then its end.
    store.failing_writes = 4
    job_id = submit(client, "/big")
    record = finish(client, job_id)
    assert record["status"] == "succeeded"
    assert "could not write to the job store" in caplog.text
    app.extensions["jobify"].shutdown(grace=1)


def test_a_result_the_store_refuses_fails_the_job_with_a_store_error(tmp_path, caplog):
    app, _, store = flaky_app(tmp_path, JOBIFY_STORE_RETRY_SECONDS=0.3)
    store.max_result = 1000
    client = app.test_client()
    record = finish(client, submit(client, "/big"))
    assert record["status"] == "failed"
    assert record["error"]["type"] == "store_error"
    assert "disk is full" in record["error"]["message"]
    assert "the store refused it" in caplog.text
    app.extensions["jobify"].shutdown(grace=1)


def test_a_store_down_past_the_budget_fails_the_job_once_it_is_back(tmp_path):
    app, _, store = flaky_app(tmp_path, JOBIFY_STORE_RETRY_SECONDS=0.2, JOBIFY_LEASE_SECONDS=0.8)
    client = app.test_client()
    job_id = submit(client, "/big")
    finish(client, job_id)
    # Run one directly: the start write goes through, then the store goes down.
    state = app.extensions["jobify"]
    job = Job(id="B" * 22, operation="big", method="GET", path="/big")
    store.failing_writes = 0
    store.create(job)
    with app.test_request_context("/big"):
        from flask import request

        from flask_jobify.capture import capture_request
        captured = capture_request(request)

    original_start = state.lifecycle.start

    def start_then_outage(*args: t.Any, **kwargs: t.Any) -> t.Any:
        started = original_start(*args, **kwargs)
        store.failing_writes = 10_000
        return started

    state.lifecycle.start = start_then_outage  # type: ignore[method-assign]
    state.worker.run(Run(job.id, captured, jobify_options(app, "big")))
    assert store.get(job.id).status is JobStatus.RUNNING
    assert job.id in state.leases.held  # still vouched for: never taken for lost
    store.failing_writes = 0  # the store is back
    deadline = time.monotonic() + 5
    while store.get(job.id).status is JobStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    ended = store.get(job.id)
    assert ended.status is JobStatus.FAILED
    assert ended.error.type == "store_error"
    assert job.id not in state.leases.held
    state.shutdown(grace=1)


# -- a clean exit leaves nothing running ----------------------------------------------
EXIT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from flask import Flask
    from flask_jobify import Jobify, current_job

    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="sqlite:///" + sys.argv[1], JOBIFY_SHUTDOWN_GRACE=0.3,
                      JOBIFY_MAX_WORKERS=2)
    jobify = Jobify(app)
    started = threading.Barrier(3)

    @app.get("/busy")
    @jobify.job
    def busy():
        store, job_id = jobify.get_state().store, current_job.id
        started.wait()
        while True:  # new threads open connections of their own, as a busy app's do
            t = threading.Thread(target=store.get, args=(job_id,))
            t.start()
            t.join()

    client = app.test_client()
    ids = [client.get("/busy", headers={"X-Job-Flag": "ON"}).get_json()["jobId"] for _ in range(2)]
    started.wait()
    print(" ".join(ids), flush=True)
    sys.exit(0)  # interpreter exit: the atexit shutdown runs
""")


def test_interpreter_exit_on_sqlite_leaves_nothing_running(tmp_path):
    db = tmp_path / "exit.db"
    script = tmp_path / "exit_app.py"
    script.write_text(EXIT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(db)], check=False, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    assert "closed database" not in done.stderr
    ids = done.stdout.split()
    assert len(ids) == 2
    store = SQLiteStore(str(db))
    for job_id in ids:
        job = store.get(job_id)
        assert job is not None
        assert job.status is JobStatus.FAILED, (job.status, done.stderr[-2000:])
        assert job.error.type == "shutdown"
    store.close()


@pytest.mark.parametrize("refused", [JobStatus.RUNNING, JobStatus.PENDING, JobStatus.SUCCEEDED])
def test_every_refused_transition_ends_the_job(tmp_path, refused):
    """The start (pending -> running), the retry wait (running -> pending)
    and the end (running -> succeeded) refused past the retry budget: the
    job ends failed (store_error, or the run's own error), never stays
    active, and is never called lost by its own live process."""
    app, _, store = flaky_app(tmp_path, JOBIFY_STORE_RETRY_SECONDS=0.2)
    client = app.test_client()
    if refused is JobStatus.RUNNING:  # the whole store is down when the run starts
        store.failing_writes = 10**6
    else:
        store.refuse_status = refused
    job_id = submit(client, "/flaky" if refused is JobStatus.PENDING else "/big")
    if refused is JobStatus.RUNNING:
        time.sleep(0.6)
        assert store.get(job_id).status is JobStatus.PENDING  # not lost, not failed yet
        assert job_id in app.extensions["jobify"].leases.held
        store.failing_writes = 0  # the store is back
    record = finish(client, job_id)
    assert record["status"] == "failed"
    expected = "http_error" if refused is JobStatus.PENDING else "store_error"
    assert record["error"]["type"] == expected
    app.extensions["jobify"].shutdown(grace=1)


def test_a_refused_end_is_written_at_shutdown_if_the_store_is_back(tmp_path):
    app, _, store = flaky_app(tmp_path, JOBIFY_STORE_RETRY_SECONDS=0.2)
    client = app.test_client()
    store.refuse_status = JobStatus.SUCCEEDED
    job_id = submit(client, "/big")
    deadline = time.monotonic() + 5
    state = app.extensions["jobify"]
    while (not any(e.unwritten for e in dict(state.leases.held).values())
           and time.monotonic() < deadline):
        time.sleep(0.02)
    store.refuse_status = None
    store.failing_writes = 0
    state.scheduler.discard(("store-retry", job_id))  # the scheduler has not tried again yet
    state.shutdown(grace=0.5)
    job = store.get(job_id)
    assert job.status is JobStatus.FAILED and job.error.type == "store_error"


def test_a_request_a_jobs_view_makes_to_the_app_is_not_the_job(make_app):
    app, jobify = make_app()

    @app.get("/inner")
    def inner() -> t.Any:
        current_job.progress(77, "inner")  # a no-op: this request is no job
        return {"is_job": current_job.is_job}

    @app.get("/outer")
    @jobify.job
    def outer() -> t.Any:
        current_job.progress(10, "outer")
        return app.test_client().get("/inner").get_json()

    client = app.test_client()
    job_id = submit(client, "/outer")
    record = finish(client, job_id)
    assert client.get(f"/jobs/{job_id}/result").get_json() == {"is_job": False}
    assert record["progress"] == {"percent": 10.0, "message": "outer"}


def test_replay_keeps_the_reason_phrase_and_class_headers_and_adds_no_date(make_app):
    app, jobify = make_app()

    class Hsts(Response):
        def __call__(self, environ: t.Any, start_response: t.Any) -> t.Any:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"
            return super().__call__(environ, start_response)

    app.response_class = Hsts

    @app.get("/custom")
    @jobify.job
    def custom() -> t.Any:
        return Response("hi", status="299 Totally Custom")

    @app.get("/plain")
    @jobify.job
    def plain() -> t.Any:
        return "plain"

    client = app.test_client()
    for path in ("/custom", "/plain"):
        sync = client.get(path)
        job_id = submit(client, path)
        finish(client, job_id)
        replay = client.get(f"/jobs/{job_id}/result")
        assert replay.status == sync.status
        assert sorted(replay.headers.items()) == sorted(sync.headers.items())
        assert "Date" not in replay.headers
    assert sync.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("percent, message, error", [
    (Decimal("12.5"), "decimal", None), (Fraction(1, 2), None, None), (True, None, TypeError),
    ("50", None, TypeError), (float("nan"), None, ValueError), (101, None, ValueError),
    (50, b"bytes", TypeError), (50, 3, TypeError),
])
def test_progress_values_are_checked_the_same_on_every_store(make_app, percent, message, error):
    app, jobify = make_app()

    @app.get("/report")
    @jobify.job
    def report() -> t.Any:
        try:
            current_job.progress(percent, message)
        except (TypeError, ValueError) as exc:
            return {"raised": type(exc).__name__}
        return {"raised": None}

    client = app.test_client()
    job_id = submit(client, "/report")
    record = finish(client, job_id)
    assert record["status"] == "succeeded"
    raised = client.get(f"/jobs/{job_id}/result").get_json()["raised"]
    assert raised == (error.__name__ if error else None)
    if error is None:
        assert record["progress"]["percent"] == float(percent)
    with app.test_request_context():  # outside a job: the same checks
        if error is None:
            current_job.progress(percent, message)
        else:
            with pytest.raises(error):
                current_job.progress(percent, message)


def test_a_500_handler_that_raises_leaves_a_bare_500(make_app):
    app, jobify = make_app()

    @app.errorhandler(500)
    def broken(exc: t.Any) -> t.Any:
        raise LookupError("the handler itself fails")

    @app.get("/boom")
    @jobify.job
    def boom() -> t.Any:
        raise RuntimeError("boom")

    client = app.test_client()
    job_id = submit(client, "/boom")
    record = finish(client, job_id)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "RuntimeError"
    assert client.get(f"/jobs/{job_id}/result").status_code == 500


def test_a_heartbeat_racing_a_job_that_starts_does_not_cancel_it(tmp_path):
    """The heartbeat reads a queued job's run number (0); the job starts (the
    store says 1) before the renewal, which is refused: the starting run
    must go on (it ended cancelled though nobody cancelled it)."""
    app, jobify = build_app(f"sqlite:///{tmp_path / 'race.db'}", JOBIFY_LEASE_SECONDS=2.0)
    go = threading.Event()

    @app.post("/hold")
    @jobify.job
    def hold() -> t.Any:
        go.wait(5)
        time.sleep(0.3)  # past JOBIFY_CANCEL_CHECK_INTERVAL: cancelled looks at the store
        return {"cancelled": current_job.cancelled}

    state = app.extensions["jobify"]
    state.scheduler.stop()  # the heartbeat is driven by hand
    tasks: list[t.Callable[[], None]] = []
    state.executor.pool.submit = lambda task, force=False: tasks.append(task) or True
    client = app.test_client()
    job_id = submit(client, "/hold", method="post")
    runner = threading.Thread(target=tasks[0])
    renew = state.store.renew_leases

    def renew_once_the_job_started(leases: t.Any, until: float) -> t.Any:
        runner.start()
        while state.leases.held.get(job_id) is None or state.leases.held[job_id].handle is None:
            time.sleep(0.001)
        return renew(leases, until)

    state.store.renew_leases = renew_once_the_job_started  # type: ignore[method-assign]
    state.leases.heartbeat()
    go.set()
    runner.join(10)
    job = state.store.get(job_id)
    assert job.status is JobStatus.SUCCEEDED, job
    assert state.store.get_result(job_id).body == b'{"cancelled":false}\n'
    state.shutdown(grace=1)
