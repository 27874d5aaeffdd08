"""Server-Sent Events: ``{prefix}/<id>/events``, ``{prefix}/events`` and
``client.js``; in-process, then across two gunicorn workers on SQLite and
Redis (a change made by one worker reaches a stream held by the other)."""
from __future__ import annotations

import contextlib
import os
import pathlib
import queue
import threading
import time
import typing as t

import pytest
import requests
from conftest import REDIS_URL, require_redis
from flask import Flask, g
from servers import run_gunicorn, serve_app
from sse import Event, events_of_text, parse_events

from flask_jobify import Jobify, current_job

ROOT = pathlib.Path(__file__).resolve().parent.parent
HERE = pathlib.Path(__file__).resolve().parent


def make_app(tmp_path: pathlib.Path, **config: t.Any) -> tuple[Flask, dict[str, threading.Event]]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=f"sqlite:///{tmp_path / 'jobs.db'}",
                      JOBIFY_SSE_KEEPALIVE=0.2, JOBIFY_SSE_FEED_INTERVAL=0.05, **config)
    jobify = Jobify(app)
    gates = {name: threading.Event() for name in ("step", "stop")}

    @jobify.owner_loader
    def owner() -> str | None:
        return g.get("user")

    @app.before_request
    def who() -> None:
        from flask import request

        g.user = request.headers.get("X-User")

    @app.post("/steps")
    @jobify.job
    def steps() -> dict[str, int]:
        for percent in (25, 50, 75):
            gates["step"].wait(10)
            gates["step"].clear()
            current_job.progress(percent, f"at {percent}")
        return {"done": 1}

    @app.post("/hold")
    @jobify.job
    def hold() -> dict[str, bool]:
        while not current_job.cancelled and not gates["stop"].is_set():
            time.sleep(0.02)
        return {"held": True}

    return app, gates


def _submit(client: t.Any, path: str, user: str | None = None) -> str:
    headers = {"X-Job-Flag": "ON", **({"X-User": user} if user else {})}
    response = client.post(path, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return t.cast(str, response.headers["X-Job-Id"])


def _events(response: t.Any) -> list[Event]:
    return [e for e in events_of_text(response.get_data(as_text=True)) if isinstance(e, Event)]


def _stepper(gates: dict[str, threading.Event]) -> threading.Thread:
    def step() -> None:
        for _ in range(3):
            time.sleep(0.1)
            gates["step"].set()
    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    return thread


def test_events_job_stream_sends_each_change_then_closes(tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/steps")
    _stepper(gates)
    response = client.get(f"/jobs/{job_id}/events")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = _events(response)  # the stream ended: it closes after the final event
    assert events[-1].event == "final"
    assert events[-1].json()["status"] == "succeeded"
    assert [e.event for e in events].count("final") == 1
    assert {e.event for e in events} <= {"status", "progress", "final"}
    versions = [int(t.cast(str, e.id)) for e in events]
    assert versions == sorted(set(versions))
    assert versions == [e.json()["version"] for e in events]
    percents = [e.json()["progress"]["percent"] for e in events if e.event == "progress"]
    assert percents == sorted(percents) and percents, events


def test_events_last_event_id_resumes_and_204_after_the_final(tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/steps")
    _stepper(gates)
    final = _events(client.get(f"/jobs/{job_id}/events"))[-1]
    version = int(t.cast(str, final.id))
    done = client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": str(version)})
    assert done.status_code == 204  # EventSource stops reconnecting
    resumed = _events(client.get(f"/jobs/{job_id}/events",
                                 headers={"Last-Event-ID": str(version - 1)}))
    assert [(e.event, e.id) for e in resumed] == [("final", str(version))]
    for garbage in ("x", "-1", "9" * 40, "\u0661"):
        again = _events(client.get(f"/jobs/{job_id}/events",
                                   headers={"Last-Event-ID": garbage}))
        assert [e.event for e in again] == ["final"]  # the current state: nothing lost


def test_events_job_stream_shows_only_what_the_status_endpoint_shows(
        tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/hold", user="alice")
    other = client.get(f"/jobs/{job_id}/events", headers={"X-User": "bob"})
    assert other.status_code == 404
    assert other.get_json()["error"]["code"] == "job_not_found"
    assert client.get("/jobs/nope/events").get_json()["error"]["code"] == "invalid_job_id"
    gates["stop"].set()
    mine = client.get(f"/jobs/{job_id}/events", headers={"X-User": "alice"})
    assert _events(mine)[-1].json()["status"] == "succeeded"


def test_events_streams_past_the_cap_get_503_json(tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path, JOBIFY_SSE_MAX_STREAMS=1)
    client = app.test_client()
    job_id = _submit(client, "/hold")
    held = client.get(f"/jobs/{job_id}/events", buffered=False)
    assert held.status_code == 200
    for url in (f"/jobs/{job_id}/events", "/jobs/events"):
        refused = client.get(url)
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "too_many_streams"
        assert refused.headers["Retry-After"] == "1"
    held.close()  # the server closes the response: its slot is free again
    gates["stop"].set()
    assert client.get(f"/jobs/{job_id}/events").status_code == 200


def test_events_idle_stream_sends_keep_alive_comments(tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/hold")
    response = client.get(f"/jobs/{job_id}/events", buffered=False)
    lines = (line.decode() for chunk in response.response for line in chunk.split(b"\n"))
    items = parse_events(lines)
    comments = []
    for item in items:
        if isinstance(item, str):
            comments.append(item)
            break
    response.close()
    gates["stop"].set()
    assert comments == ["keep-alive"]


def test_events_all_stream_checks_its_filters(tmp_path: pathlib.Path) -> None:
    app, _ = make_app(tmp_path)
    client = app.test_client()
    for query in ("status=done", "operation=" + "x" * 201):
        response = client.get(f"/jobs/events?{query}")
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "invalid_argument"


def test_events_client_js_is_served(tmp_path: pathlib.Path) -> None:
    app, _ = make_app(tmp_path)
    response = app.test_client().get("/jobs/client.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert b"export async function jobifyFetch(" in response.data


class _Reader:
    """Reads an event stream in a thread; :meth:`next` waits for an item."""

    def __init__(self, url: str, **kwargs: t.Any) -> None:
        self.response = requests.get(url, stream=True, timeout=30, **kwargs)
        self.items: queue.Queue[Event | str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(requests.RequestException, AttributeError, ValueError):
            lines = self.response.iter_lines(decode_unicode=True)
            for item in parse_events(lines):
                self.items.put(item)

    def next_event(self, match: t.Callable[[Event], bool], seconds: float = 15) -> Event:
        deadline = time.monotonic() + seconds
        while True:
            item = self.items.get(timeout=max(deadline - time.monotonic(), 0.01))
            if isinstance(item, Event) and match(item):
                return item

    def close(self) -> None:
        self.response.close()


def test_events_all_stream_sends_only_the_callers_jobs(tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path)
    with serve_app(app) as url:
        reader = _Reader(f"{url}/jobs/events", headers={"X-User": "alice"})
        try:
            theirs = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON", "X-User": "bob"},
                                   timeout=10).headers["X-Job-Id"]
            mine = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON", "X-User": "alice"},
                                 timeout=10).headers["X-Job-Id"]
            event = reader.next_event(lambda e: e.event == "job")
            assert event.json()["id"] == mine
            gates["stop"].set()
            ended = reader.next_event(lambda e: e.json()["status"] == "succeeded")
            assert ended.json()["id"] == mine
        finally:
            reader.close()
            gates["stop"].set()
        assert theirs != mine


@pytest.fixture(params=["sqlite", "redis"])
def two_workers(request: t.Any, tmp_path: pathlib.Path) -> t.Iterator[str]:
    if request.param == "redis":
        require_redis()
        store = f"{REDIS_URL}?prefix=jobify-test-events-{os.getpid()}-{time.monotonic_ns()}"
    else:
        store = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {"JOBIFY_STORE": store, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE), str(ROOT), os.environ.get("PYTHONPATH")]))}
    with run_gunicorn("events_app:create_app()", workers=2, threads=8, env=env,
                      ready_path="/jobs/openapi.json") as url:
        yield url


def _from_other_worker(url: str, pid: str, send: t.Callable[[], requests.Response]) -> t.Any:
    """``send()`` until another worker than ``pid`` answers it."""
    for _ in range(200):
        response = send()
        if response.headers["X-Pid"] != pid:
            return response
    raise AssertionError(f"every request went to worker {pid}")


def test_events_a_change_in_one_worker_reaches_a_stream_in_the_other(two_workers: str) -> None:
    url = two_workers
    job_id = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON"},
                           timeout=10).headers["X-Job-Id"]
    reader = _Reader(f"{url}/jobs/{job_id}/events")
    try:
        holder = reader.response.headers["X-Pid"]
        reader.next_event(lambda e: True)  # the first state
        touched = _from_other_worker(
            url, holder, lambda: requests.post(f"{url}/touch/{job_id}", timeout=10))
        other = touched.headers["X-Pid"]
        # Touches served by the holder came first; the other worker's follows.
        event = reader.next_event(lambda e: e.event == "progress" and e.json()[
            "progress"]["message"].startswith(f"pid {other}:"))
        assert event.json()["progress"]["percent"] == 50
        requests.delete(f"{url}/jobs/{job_id}", timeout=10)
        assert reader.next_event(lambda e: e.event == "final").json()["status"] == "cancelled"
    finally:
        reader.close()


def test_events_a_job_made_by_one_worker_reaches_the_all_stream_of_the_other(
        two_workers: str) -> None:
    url = two_workers
    reader = _Reader(f"{url}/jobs/events")
    made: list[str] = []
    try:
        holder = reader.response.headers["X-Pid"]

        def submit() -> requests.Response:
            response = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON"}, timeout=10)
            made.append(response.headers["X-Job-Id"])
            return response

        job_id = _from_other_worker(url, holder, submit).headers["X-Job-Id"]
        event = reader.next_event(lambda e: e.event == "job" and e.json()["id"] == job_id)
        assert event.json()["status"] in ("pending", "running")
    finally:
        reader.close()
        for made_id in made:
            requests.delete(f"{url}/jobs/{made_id}", timeout=10)


def test_events_a_refused_caller_does_not_keep_a_stream_slot(tmp_path: pathlib.Path) -> None:
    # An owner loader that refuses anonymous callers (401) must not leak the
    # all-jobs stream's slot: else anyone could close every stream with 503s.
    from flask import abort, request

    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=f"sqlite:///{tmp_path / 'jobs.db'}",
                      JOBIFY_SSE_MAX_STREAMS=1, JOBIFY_SSE_MAX_SECONDS=0.2)
    jobify = Jobify(app)

    @jobify.owner_loader
    def owner() -> str:
        user = request.headers.get("X-User")
        if not user:
            abort(401)
        return user

    client = app.test_client()
    for _ in range(3):
        refused = client.get("/jobs/events")
        assert refused.status_code == 401
        assert refused.get_json()["error"]["code"] == "unauthorized"
    served = client.get("/jobs/events", headers={"X-User": "alice"})
    assert served.status_code == 200, served.get_data(as_text=True)


def test_events_all_stream_of_an_owner_leaves_out_jobs_without_one(
        tmp_path: pathlib.Path) -> None:
    # As GET /jobs lists for alice: her jobs only, not the ownerless ones.
    app, gates = make_app(tmp_path)
    with serve_app(app) as url:
        reader = _Reader(f"{url}/jobs/events", headers={"X-User": "alice"})
        try:
            nobodys = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON"},
                                    timeout=10).headers["X-Job-Id"]
            mine = requests.post(f"{url}/hold", headers={"X-Job-Flag": "ON", "X-User": "alice"},
                                 timeout=10).headers["X-Job-Id"]
            listed = requests.get(f"{url}/jobs", headers={"X-User": "alice"}, timeout=10).json()
            assert [job["id"] for job in listed["jobs"]] == [mine]
            gates["stop"].set()
            seen = []
            while not seen or seen[-1]["status"] != "succeeded":
                seen.append(reader.next_event(lambda e: e.event == "job").json())
            assert {job["id"] for job in seen} == {mine}, seen
        finally:
            reader.close()
            gates["stop"].set()
        assert nobodys != mine


def test_events_the_feed_survives_a_store_that_raises(tmp_path: pathlib.Path) -> None:
    # A store error that is not a StoreError (sqlite3's own, a custom
    # store's) must not end the feed: the all-jobs streams would go quiet.
    import sqlite3

    from flask_jobify.stores.memory import MemoryStore

    failing = threading.Event()
    failed = threading.Event()

    class FlakyStore(MemoryStore):
        def list(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if failing.is_set() and threading.current_thread().name == "jobify-feed":
                failed.set()
                raise sqlite3.OperationalError("disk I/O error")
            return super().list(*args, **kwargs)

    app = Flask(__name__)
    app.config.update(JOBIFY_SSE_KEEPALIVE=0.2, JOBIFY_SSE_FEED_INTERVAL=0.05)
    jobify = Jobify(app, store=FlakyStore())

    @app.post("/quick")
    @jobify.job
    def quick() -> dict[str, int]:
        return {"done": 1}

    with serve_app(app) as url:
        reader = _Reader(f"{url}/jobs/events")
        try:
            failing.set()
            assert failed.wait(10)
            failing.clear()
            job_id = requests.post(f"{url}/quick", headers={"X-Job-Flag": "ON"},
                                   timeout=10).headers["X-Job-Id"]
            event = reader.next_event(lambda e: e.event == "job" and e.json()["id"] == job_id)
            assert event.json()["id"] == job_id
        finally:
            reader.close()


def test_events_streams_say_nosniff(tmp_path: pathlib.Path) -> None:
    app, gates = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/hold")
    gates["stop"].set()
    for url in (f"/jobs/{job_id}/events", "/jobs/client.js"):
        response = client.get(url, buffered=False)
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        response.close()
