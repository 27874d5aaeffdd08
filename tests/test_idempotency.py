"""Idempotency-Key: a retried submission gets the first job back."""
from __future__ import annotations

import os
import threading
import typing as t

import pytest
import requests
from flask import Flask
from idempotency_app import Counter, create_app
from servers import run_gunicorn, serve_app
from werkzeug.datastructures import Headers

from flask_jobify import Job
from flask_jobify.idempotency import credentials_digest, job_id_for_key
from flask_jobify.keys import IDEMPOTENCY_PURPOSE, derive_key
from flask_jobify.stores import store_from_url
from flask_jobify.stores.base import JobStore

FLAG = {"X-Job-Flag": "ON"}


@pytest.fixture
def make_app(apps: t.Any) -> t.Callable[..., tuple[Flask, Counter]]:
    """Builds the idempotency app on the test's store (every store), with
    extra config; the ``apps`` fixture stops it afterwards."""

    def make(**config: t.Any) -> tuple[Flask, Counter]:
        app = apps(create_app, **config)
        return app, app.extensions["test_counter"]

    return make


def post(client: t.Any, path: str, key: str, body: t.Any = None, **headers: str) -> t.Any:
    return client.post(path, json=body, headers={**FLAG, "Idempotency-Key": key, **headers})


def test_idempotency_same_key_returns_same_job(make_app) -> None:
    app, _ = make_app()
    client = app.test_client()
    first = post(client, "/orders", "k-1", {"n": 1})
    again = post(client, "/orders", "k-1", {"n": 1})
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["Location"] == again.headers["Location"]
    assert len(app.extensions["jobify"].store.list()) == 1


def test_idempotency_different_body_is_422(make_app) -> None:
    app, _ = make_app()
    client = app.test_client()
    assert post(client, "/orders", "k-2", {"n": 1}).status_code == 202
    reused = post(client, "/orders", "k-2", {"n": 2})
    assert reused.status_code == 422
    assert reused.get_json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("path", ["/orders?x=1", "/refunds"])
def test_idempotency_different_path_or_query_is_422(make_app, path: str) -> None:
    app, _ = make_app()
    client = app.test_client()
    assert post(client, "/orders", "k-3", {"n": 1}).status_code == 202
    assert post(client, path, "k-3", {"n": 1}).status_code == 422


def test_idempotency_keys_are_per_owner(make_app) -> None:
    app, _ = make_app()
    client = app.test_client()
    alice = post(client, "/orders", "same", {"n": 1}, **{"X-User": "alice"}).get_json()
    bob = post(client, "/orders", "same", {"n": 2}, **{"X-User": "bob"}).get_json()
    assert alice["jobId"] != bob["jobId"]


def test_idempotency_key_free_again_once_the_job_expired(make_app) -> None:
    app, _ = make_app()
    client = app.test_client()
    first = post(client, "/refunds", "k-4").get_json()["jobId"]
    store = app.extensions["jobify"].store
    job = store.get(first)
    while job is not None and not job.is_final:  # woken by the store, not a sleep
        job = store.wait(first, job.version, 10)
    # result_ttl=0: the finished job has expired, and the key with it.
    second = post(client, "/refunds", "k-4")
    assert second.status_code == 202
    assert "Idempotent-Replayed" not in second.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_idempotency_invalid_key_is_400(make_app, key: str) -> None:
    app, _ = make_app()
    response = app.test_client().post(
        "/orders", headers={**FLAG, "Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"


@pytest.mark.parametrize("keys", [["k-5", "k-5"], ["k-5", "k-6"], ["\x00"], ["k\x7f"],
                                  ["\xb2"], ["a,b"]])
def test_idempotency_repeated_or_unprintable_key_is_400(make_app, keys: list[str]) -> None:
    app, _ = make_app()
    response = app.test_client().post(
        "/orders", headers=[*FLAG.items(), *(("Idempotency-Key", key) for key in keys)]
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert app.extensions["jobify"].store.list() == []


@pytest.mark.parametrize("webhook_secret", [None, "whsec-known-to-receivers"])
def test_idempotency_needs_a_secret_key(make_app, caplog, webhook_secret: str | None) -> None:
    """The webhook secret is never a fallback: receivers know it."""
    app, counter = make_app(SECRET_KEY=None, TESTING=True, JOBIFY_WEBHOOK_SECRET=webhook_secret)
    response = post(app.test_client(), "/orders", "k-5")
    assert response.status_code == 501
    assert response.get_json()["error"]["code"] == "idempotency_unavailable"
    assert "SECRET_KEY" in caplog.text
    assert counter.runs == 0


def test_idempotency_job_id_uses_a_key_derived_for_it_alone(make_app) -> None:
    app, _ = make_app(SECRET_KEY="app-secret", JOBIFY_WEBHOOK_SECRET="app-secret")
    job_id = post(app.test_client(), "/orders", "k-7").get_json()["jobId"]
    no_credentials = credentials_digest(Headers())
    assert job_id == job_id_for_key(derive_key("app-secret", IDEMPOTENCY_PURPOSE), None, "k-7",
                                    credentials=no_credentials, app=app.name)
    assert job_id != job_id_for_key(b"app-secret", None, "k-7")  # not the raw secret


def test_idempotency_without_flag_is_ignored(make_app) -> None:
    app, counter = make_app()
    client = app.test_client()
    for _ in range(2):
        assert client.post("/orders", headers={"Idempotency-Key": "k-6"}).status_code == 200
    assert counter.runs == 2


def test_idempotency_job_id_is_keyed_by_secret_and_owner() -> None:
    one = job_id_for_key(b"s1", "alice", "k")
    assert len(one) == 22
    assert one == job_id_for_key(b"s1", "alice", "k")
    assert one != job_id_for_key(b"s2", "alice", "k")
    assert one != job_id_for_key(b"s1", "bob", "k")
    assert one != job_id_for_key(b"s1", None, "k")


def test_idempotency_concurrent_submissions_make_one_job(make_app) -> None:
    app, counter = make_app(JOBIFY_MAX_WORKERS=2)
    start = threading.Barrier(16, timeout=10)
    answers: list[tuple[int, t.Any]] = []
    lock = threading.Lock()

    def submit(url: str) -> None:
        start.wait()
        response = requests.post(
            url + "/orders", json={"n": 1},
            headers={**FLAG, "Idempotency-Key": "race", "X-User": "alice"}, timeout=10,
        )
        with lock:
            answers.append((response.status_code, response.json()))

    with serve_app(app) as url:
        threads = [threading.Thread(target=submit, args=(url,)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        store = app.extensions["jobify"].store
        assert len(answers) == 16
        assert {status for status, _ in answers} == {202}
        assert len({body["jobId"] for _, body in answers}) == 1
        [job] = store.list()
        while not job.is_final:
            job = store.wait(job.id, job.version, 10)
    assert counter.runs == 1


def test_idempotency_store_create_once_claims_atomically(apps) -> None:
    store: JobStore = store_from_url(apps.url)
    try:
        claims: list[Job | None] = []
        start = threading.Barrier(8, timeout=10)

        def claim() -> None:
            start.wait()
            claims.append(store.create_once(Job("A" * 22, "op", "POST", "/x")))

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sum(1 for c in claims if c is None) == 1
        assert all(c is None or c.id == "A" * 22 for c in claims)
    finally:
        store.close()


@pytest.mark.stores("sqlite", "redis")
def test_idempotency_one_job_across_processes(apps) -> None:
    """16 concurrent submissions to 4 gunicorn workers sharing a store."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(tests_dir)
    env = {"PYTHONPATH": os.pathsep.join([tests_dir, root, os.environ.get("PYTHONPATH", "")])}
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(16, timeout=10)

    def submit(base: str) -> None:
        start.wait()
        response = requests.post(
            base + "/orders", json={"n": 1},
            headers={**FLAG, "Idempotency-Key": "cross", "X-User": "alice"}, timeout=20,
        )
        with lock:
            answers.append((response.status_code, response.json().get("jobId", "")))

    spec = f"idempotency_app:create_app({apps.url!r})"
    with run_gunicorn(spec, workers=4, threads=4, env=env) as base:
        threads = [threading.Thread(target=submit, args=(base,)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        listed = requests.get(base + "/jobs", headers={"X-User": "alice"}, timeout=10).json()
    assert sorted(status for status, _ in answers) == [202] * 16
    assert len({job_id for _, job_id in answers}) == 1
    assert [job["id"] for job in listed["jobs"]] == [answers[0][1]]


@pytest.mark.parametrize("attacker", [{}, {"Authorization": "Bearer OTHER"}])
@pytest.mark.parametrize("body", [{"order": 42}, {"other": True}])
def test_idempotency_anonymous_callers_with_other_credentials_get_other_jobs(
    make_app, attacker, body
):
    """Without an owner loader, a key is scoped to the credentials a caller
    sends: repeating another caller's key, with the same request or another,
    gives a job of one's own, neither theirs nor a 422 telling the key is used."""
    app, _ = make_app(SECRET_KEY="s")
    client = app.test_client()
    victim = post(client, "/orders", "order-42", {"order": 42}, Authorization="Bearer VICTIM")
    again = post(client, "/orders", "order-42", {"order": 42}, Authorization="Bearer VICTIM")
    assert again.get_json()["jobId"] == victim.get_json()["jobId"]
    other = post(client, "/orders", "order-42", body, **attacker)
    assert other.status_code == 202
    assert other.get_json()["jobId"] != victim.get_json()["jobId"]
    assert "Idempotent-Replayed" not in other.headers
