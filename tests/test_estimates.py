"""``estimatedCompletionAt`` and ``queuePosition``: the arithmetic, and the record."""
from __future__ import annotations

import threading
import typing as t
from datetime import datetime

import pytest
from flask import Flask

from flask_jobify import Jobify, current_job
from flask_jobify.estimates import pending_completion, running_completion


@pytest.mark.parametrize(("started", "percent", "now", "typical", "expected"), [
    (100.0, 25.0, 110.0, None, 140.0),    # 10 s for 25 %: 40 s in all
    (100.0, 50.0, 110.0, 99.0, 120.0),    # progress wins over the typical duration
    (100.0, 100.0, 130.0, None, 130.0),
    (100.0, None, 110.0, 30.0, 130.0),    # no progress: typical duration
    (100.0, 0.0, 110.0, 30.0, 130.0),
    (100.0, None, 140.0, 30.0, None),     # overdue: unknown
    (100.0, None, 110.0, None, None),
    (100.0, 1e-9, 110.0, None, None),     # 10 s for 1e-9 %: past the horizon
    (100.0, 5e-324, 110.0, None, None),   # infinite
])
def test_estimates_running_completion(started, percent, now, typical, expected):
    assert running_completion(started, percent, now, typical) == expected


@pytest.mark.parametrize(("position", "typical", "slots", "expected"), [
    (1, 10.0, 4, 1010.0),
    (4, 10.0, 4, 1010.0),   # all four start at once
    (5, 10.0, 4, 1020.0),   # one wave first
    (9, 10.0, 4, 1030.0),
    (3, 10.0, 1, 1030.0),
    (1, None, 4, None),
    (10**9, 1e6, 1, None),  # past the horizon
])
def test_estimates_pending_completion(position, typical, slots, expected):
    assert pending_completion(position, typical, slots, 1000.0) == expected


def parse(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def app() -> t.Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_MAX_WORKERS=1)
    jobify = Jobify(app)
    app.extensions["gate"] = gate = threading.Event()

    @app.post("/work")
    @jobify.job
    def work() -> dict[str, int]:
        current_job.progress(50)
        gate.wait(10)
        return {"ok": 1}

    yield app
    gate.set()
    jobify.shutdown(app, grace=1)


def wait_for(client: t.Any, url: str, status: str) -> dict[str, t.Any]:
    for _ in range(200):
        record = client.get(url + "?wait=0.5").get_json()
        if record["status"] == status:
            return t.cast("dict[str, t.Any]", record)
    raise AssertionError(f"never {status}")


def test_estimates_in_the_record(app):
    client = app.test_client()
    # One success of the operation gives its typical duration.
    first = client.post("/work", headers={"X-Job-Flag": "ON"}).headers["Location"]
    wait_for(client, first, "running")
    app.extensions["gate"].set()
    done = wait_for(client, first, "succeeded")
    assert done["estimatedCompletionAt"] is None and done["queuePosition"] is None
    took = parse(done["finishedAt"]) - parse(done["startedAt"])
    app.extensions["gate"].clear()

    urls = [client.post("/work", headers={"X-Job-Flag": "ON"}).headers["Location"]
            for _ in range(3)]
    running = wait_for(client, urls[0], "running")
    assert running["queuePosition"] is None
    # 50 % after (now - started): twice that in all.
    eta = parse(running["estimatedCompletionAt"])
    started = parse(running["startedAt"])
    assert eta > started
    pending = [client.get(url).get_json() for url in urls[1:]]
    assert [p["queuePosition"] for p in pending] == [1, 2]
    # One thread: the second in line waits for the first, one typical run each.
    first_eta, second_eta = (parse(p["estimatedCompletionAt"]) for p in pending)
    assert second_eta - first_eta == pytest.approx(took, abs=0.05)
    app.extensions["gate"].set()
    for url in urls:
        wait_for(client, url, "succeeded")


def test_estimates_unknown_without_history(app):
    client = app.test_client()
    urls = [client.post("/work", headers={"X-Job-Flag": "ON"}).headers["Location"]
            for _ in range(2)]
    wait_for(client, urls[0], "running")
    record = client.get(urls[1]).get_json()
    assert record["queuePosition"] == 1
    assert record["estimatedCompletionAt"] is None  # no duration known yet
    listing = client.get("/jobs").get_json()["jobs"]
    assert {job["queuePosition"] for job in listing} == {1, None}


def queue_app(store_url: str) -> Flask:
    """One worker held by a gate: every later job stays pending."""
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store_url, JOBIFY_MAX_WORKERS=1, JOBIFY_MAX_QUEUED=100)
    jobify = Jobify(app)
    app.extensions["gate"] = gate = threading.Event()

    @app.post("/work")
    @jobify.job
    def work() -> dict[str, int]:
        gate.wait(10)
        return {"ok": 1}

    return app


def test_estimates_position_read_again_in_the_same_thread_moves_up(apps):
    """A pending job keeps its version while the jobs ahead leave: a read
    in the same thread (one test client, one gthread thread) counts again."""
    app = apps(queue_app)
    apps.add(app, stop=app.extensions["gate"].set)
    client = app.test_client()
    urls = [client.post("/work", headers={"X-Job-Flag": "ON"}).headers["Location"]
            for _ in range(4)]
    wait_for(client, urls[0], "running")
    last = client.get(urls[-1]).get_json()
    assert last["queuePosition"] == 3
    for url in urls[1:3]:
        assert client.delete(url).status_code == 200
    again = client.get(urls[-1]).get_json()
    assert again["version"] == last["version"]
    assert again["queuePosition"] == 1


def test_estimates_listing_positions_match_the_status_ones(apps, monkeypatch):
    """A page of pending jobs shares its listings of the queue, and says
    what each job's own status says, past the bound too."""
    from flask_jobify import estimates

    monkeypatch.setattr(estimates, "QUEUE_BOUND", 4)
    app = apps(queue_app)
    apps.add(app, stop=app.extensions["gate"].set)
    client = app.test_client()
    urls = [client.post("/work", headers={"X-Job-Flag": "ON"}).headers["Location"]
            for _ in range(16)]
    wait_for(client, urls[0], "running")
    own = {url.rsplit("/", 1)[-1]: client.get(url).get_json()["queuePosition"]
           for url in urls[1:]}
    assert sorted(own.values()) == [1, 2, 3, 4] + [5] * 11  # 5: more than 4 ahead
    for limit in (3, 15, 20):
        page = client.get(f"/jobs?status=pending&limit={limit}").get_json()["jobs"]
        assert {job["id"]: job["queuePosition"] for job in page} == {
            job["id"]: own[job["id"]] for job in page}


def test_estimates_far_end_is_null_not_an_error(apps):
    """A job whose progress crawls (1e-300 %) ends past year 9999: its
    record and the listing say null, never a 500."""
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=apps.url)
    jobify = Jobify(app)
    gate = threading.Event()
    apps.add(app, stop=gate.set)

    @app.post("/crawl")
    @jobify.job
    def crawl() -> dict[str, int]:
        current_job.progress(1e-300)
        gate.wait(10)
        return {"ok": 1}

    client = app.test_client()
    url = client.post("/crawl", headers={"X-Job-Flag": "ON"}).headers["Location"]
    for _ in range(200):
        r = client.get(url + "?wait=0.5")
        assert r.status_code == 200, r.get_data(as_text=True)
        if r.get_json()["progress"]["percent"]:
            break
    assert r.get_json()["estimatedCompletionAt"] is None
    listing = client.get("/jobs")
    assert listing.status_code == 200
    assert listing.get_json()["jobs"][0]["estimatedCompletionAt"] is None
