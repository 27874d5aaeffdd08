"""Ownership: a job is seen only by whoever started it; others get 404."""
from __future__ import annotations

import threading
import typing as t

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_jobify import Jobify
from flask_jobify.stores import NO_OWNER

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
FLAG = {"X-Job-Flag": "ON"}


@pytest.fixture
def gate() -> t.Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a job thread blocked


def create_app(store: str, gate: threading.Event) -> Flask:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, JOBIFY_MAX_WAIT=10)
    jobify = Jobify(app)

    @jobify.owner_loader
    def load_owner() -> str | None:
        return request.headers.get("X-User")

    @app.post("/quick")
    @jobify.job
    def quick() -> t.Any:
        return {"done": True}

    @app.post("/gated")
    @jobify.job
    def gated() -> t.Any:
        gate.wait(30)
        return {"done": True}

    return app


@pytest.fixture
def app(apps: t.Any, gate: threading.Event) -> Flask:
    """On every store: listing by owner is a query of the store's."""
    return t.cast(Flask, apps(create_app, gate))


def start(client: FlaskClient, path: str, user: dict[str, str]) -> str:
    response = client.post(path, headers={**FLAG, **user})
    assert response.status_code == 202
    return response.get_json()["jobId"]


def wait_final(client: FlaskClient, job_id: str, user: dict[str, str]) -> dict[str, t.Any]:
    for _ in range(10):
        record = client.get(f"/jobs/{job_id}?wait=10", headers=user).get_json()
        if record["status"] not in ("pending", "running"):
            return record
    raise AssertionError(f"job {job_id} did not finish")


def assert_not_found(response: t.Any) -> None:
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "job_not_found"


def test_ownership_records_the_owner(app: Flask, client: FlaskClient) -> None:
    job_id = start(client, "/quick", ALICE)
    assert app.extensions["jobify"].store.get(job_id).owner == "alice"


@pytest.mark.parametrize("other", [BOB, {}], ids=["other-user", "anonymous"])
def test_ownership_finished_job_is_404_on_every_endpoint(
    client: FlaskClient, other: dict[str, str]
) -> None:
    job_id = start(client, "/quick", ALICE)
    wait_final(client, job_id, ALICE)

    assert_not_found(client.get(f"/jobs/{job_id}", headers=other))
    assert_not_found(client.get(f"/jobs/{job_id}?wait=1", headers=other))
    assert_not_found(client.get(f"/jobs/{job_id}/result", headers=other))
    assert_not_found(client.delete(f"/jobs/{job_id}", headers=other))
    listed = client.get("/jobs", headers=other).get_json()["jobs"]
    assert job_id not in [job["id"] for job in listed]

    # Nothing the other user did touched it.
    assert client.get(f"/jobs/{job_id}", headers=ALICE).status_code == 200
    assert client.get(f"/jobs/{job_id}/result", headers=ALICE).get_json() == {"done": True}
    listed = client.get("/jobs", headers=ALICE).get_json()["jobs"]
    assert [job["id"] for job in listed] == [job_id]
    assert client.delete(f"/jobs/{job_id}", headers=ALICE).status_code == 204


def test_ownership_active_job_is_404_and_not_cancellable(
    client: FlaskClient, gate: threading.Event
) -> None:
    job_id = start(client, "/gated", ALICE)

    assert_not_found(client.get(f"/jobs/{job_id}", headers=BOB))
    assert_not_found(client.get(f"/jobs/{job_id}?wait=1", headers=BOB))
    # Not 409 job_not_finished: that would tell Bob the job exists.
    assert_not_found(client.get(f"/jobs/{job_id}/result", headers=BOB))
    assert_not_found(client.delete(f"/jobs/{job_id}", headers=BOB))
    assert client.get("/jobs", headers=BOB).get_json()["jobs"] == []

    gate.set()
    record = wait_final(client, job_id, ALICE)
    assert record["status"] == "succeeded"
    assert record["cancelRequested"] is False


def test_ownership_404_is_the_same_as_for_a_missing_job(client: FlaskClient) -> None:
    job_id = start(client, "/quick", ALICE)
    hidden = client.get(f"/jobs/{job_id}", headers=BOB)
    missing = client.get("/jobs/" + "A" * 22, headers=BOB)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json() == missing.get_json()


def test_ownership_each_user_lists_only_their_jobs(client: FlaskClient) -> None:
    alice_job = start(client, "/quick", ALICE)
    bob_job = start(client, "/quick", BOB)
    assert [j["id"] for j in client.get("/jobs", headers=ALICE).get_json()["jobs"]] == [alice_job]
    assert [j["id"] for j in client.get("/jobs", headers=BOB).get_json()["jobs"]] == [bob_job]


def test_ownership_without_loader_the_job_id_is_the_capability() -> None:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://")
    jobify = Jobify(app)

    @app.post("/quick")
    @jobify.job
    def quick() -> t.Any:
        return {"done": True}

    client = app.test_client()
    job_id = start(client, "/quick", ALICE)
    assert app.extensions["jobify"].store.get(job_id).owner is None
    assert client.get(f"/jobs/{job_id}", headers=BOB).status_code == 200


def test_ownership_anonymous_caller_pages_through_ownerless_jobs_only(
    client: FlaskClient,
) -> None:
    mine = {start(client, "/quick", {}) for _ in range(3)}
    for _ in range(4):
        start(client, "/quick", ALICE)
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = client.get(f"/jobs?limit=2{cursor}").get_json()
        seen.extend(job["id"] for job in page["jobs"])
        if page["nextCursor"] is None:
            break
        cursor = f"&cursor={page['nextCursor']}"
    assert sorted(seen) == sorted(mine)


def test_ownership_anonymous_list_is_one_store_call_on_the_ownerless_index(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The anonymous ``GET /jobs`` asks the store for ownerless jobs once; it
    used to read pages of every job until it found them (145 s at 100,000)."""
    store = app.extensions["jobify"].store
    mine = [start(client, "/quick", {}) for _ in range(2)]
    alices = [start(client, "/quick", ALICE) for _ in range(30)]
    # Ended: an active job's record adds its estimate's reads (queue, durations).
    for job_id in mine:
        wait_final(client, job_id, {})
    for job_id in alices:
        wait_final(client, job_id, ALICE)
    calls: list[dict[str, t.Any]] = []
    real = store.list

    def counted(**kwargs: t.Any) -> t.Any:
        page = real(**kwargs)
        calls.append({**kwargs, "returned": len(page)})
        return page

    monkeypatch.setattr(store, "list", counted)
    listed = client.get("/jobs?limit=5").get_json()
    assert sorted(job["id"] for job in listed["jobs"]) == sorted(mine)
    assert listed["nextCursor"] is None
    assert len(calls) == 1 and calls[0]["owner"] is NO_OWNER and calls[0]["returned"] == 2
    calls.clear()
    assert len(client.get("/jobs?limit=5", headers=ALICE).get_json()["jobs"]) == 5
    assert [(call["owner"], call["returned"]) for call in calls] == [("alice", 6)]
