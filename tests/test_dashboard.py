"""The dashboard (``{prefix}/ui``): access, pages, CSRF, cancel, re-run."""
from __future__ import annotations

import pathlib
import re
import threading
import time
import typing as t

from flask import Flask, g, request

from flask_jobify import Jobify, current_job
from flask_jobify.models import Job, JobStatus

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_app(tmp_path: pathlib.Path, *, access: bool | None = True, store: t.Any = None,
             **config: t.Any) -> tuple[Flask, threading.Event]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=f"sqlite:///{tmp_path / 'jobs.db'}", JOBIFY_DASHBOARD=True,
                      SECRET_KEY="dashboard-test")
    app.config.update(config)
    jobify = Jobify(app, store=store)
    stop = threading.Event()

    @jobify.owner_loader
    def owner() -> str | None:
        return g.get("user")

    if access is not None:
        @jobify.dashboard_access
        def allowed() -> bool:
            return access

    @app.before_request
    def who() -> None:
        g.user = request.headers.get("X-User")

    @app.post("/hold")
    @jobify.job
    def hold() -> dict[str, bool]:
        while not current_job.cancelled and not stop.is_set():
            time.sleep(0.02)
        return {"held": True}

    @app.post("/boom")
    @jobify.job
    def boom() -> None:
        raise RuntimeError("boom")

    return app, stop


def _submit(client: t.Any, path: str, user: str | None = None) -> str:
    headers = {"X-Job-Flag": "ON", **({"X-User": user} if user else {})}
    return t.cast(str, client.post(path, headers=headers).headers["X-Job-Id"])


def _final(client: t.Any, job_id: str, user: str | None = None) -> dict[str, t.Any]:
    headers = {"X-User": user} if user else {}
    record = client.get(f"/jobs/{job_id}?wait=10", headers=headers).get_json()
    while record["status"] in ("pending", "running"):
        record = client.get(f"/jobs/{job_id}?wait=10&version={record['version']}",
                            headers=headers).get_json()
    return t.cast("dict[str, t.Any]", record)


def _token(client: t.Any, path: str = "/jobs/ui/", **kwargs: t.Any) -> str:
    match = TOKEN.search(client.get(path, **kwargs).get_data(as_text=True))
    assert match, "no CSRF token on the page"
    return match.group(1)


def test_dashboard_is_off_by_default(tmp_path: pathlib.Path) -> None:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://")
    Jobify(app)
    assert "jobify_ui" not in app.blueprints
    assert app.test_client().get("/jobs/ui/").status_code == 404


def test_dashboard_denied_without_a_hook_unless_local_in_debug(tmp_path: pathlib.Path) -> None:
    app, _ = make_app(tmp_path, access=None)
    client = app.test_client()
    denied = client.get("/jobs/ui/")
    assert denied.status_code == 403
    assert denied.get_json()["error"]["code"] == "access_denied"
    app.debug = True
    assert client.get("/jobs/ui/").status_code == 200
    remote = client.get("/jobs/ui/", environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert remote.status_code == 403


def test_dashboard_hook_decides(tmp_path: pathlib.Path) -> None:
    app, _ = make_app(tmp_path, access=False)
    client = app.test_client()
    for path in ("/jobs/ui/", "/jobs/ui/stats", "/jobs/ui/static/dashboard.js"):
        assert client.get(path).status_code == 403, path
    assert client.post("/jobs/ui/cancel").get_json()["error"]["code"] == "access_denied"


def test_dashboard_lists_what_the_owner_loader_lets_the_caller_see(
        tmp_path: pathlib.Path) -> None:
    app, stop = make_app(tmp_path)
    client = app.test_client()
    mine = _submit(client, "/hold", user="alice")
    theirs = _submit(client, "/hold", user="bob")
    page = client.get("/jobs/ui/", headers={"X-User": "alice"}).get_data(as_text=True)
    assert mine in page and theirs not in page
    assert client.get(f"/jobs/ui/{theirs}", headers={"X-User": "alice"}).status_code == 404
    job_page = client.get(f"/jobs/ui/{mine}", headers={"X-User": "alice"})
    assert job_page.status_code == 200 and "Timeline" in job_page.get_data(as_text=True)
    stop.set()


def test_dashboard_pages_and_filters(tmp_path: pathlib.Path) -> None:
    app, _ = make_app(tmp_path)
    store = app.extensions["jobify"].store
    now = time.time()
    for i in range(55):
        store.create(Job(id=f"{i:022d}", operation="op.b" if i % 2 else "op.a", method="POST",
                         path="/x", created_at=now - i, app=app.name))
    client = app.test_client()
    first = client.get("/jobs/ui/").get_data(as_text=True)
    assert first.count("<tr data-job-id=") == 50
    older = re.search(r'id="older" href="([^"]+)"', first)
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("<tr data-job-id=") == 5
    only_a = client.get("/jobs/ui/?operation=op.a").get_data(as_text=True)
    assert only_a.count("<tr data-job-id=") == 28 and "op.b" not in only_a
    bad = client.get("/jobs/ui/?status=sleeping")
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_argument"
    stats = client.get("/jobs/ui/stats").get_data(as_text=True)
    assert '<b data-count="pending">55</b>' in stats and "<svg" in stats


def test_dashboard_posts_need_this_sessions_csrf_token(tmp_path: pathlib.Path) -> None:
    app, stop = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/hold")
    refused = client.post("/jobs/ui/cancel", data={"job": job_id})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    foreign = _token(app.test_client())  # another browser's session
    assert client.post("/jobs/ui/cancel", data={"job": job_id, "csrf_token": foreign}
                       ).status_code == 403
    assert client.get(f"/jobs/{job_id}").get_json()["cancelRequested"] is False
    stop.set()


def test_dashboard_cancels_selected_jobs_it_may_see(tmp_path: pathlib.Path) -> None:
    app, stop = make_app(tmp_path)
    client = app.test_client()
    mine = [_submit(client, "/hold", user="alice") for _ in range(2)]
    theirs = _submit(client, "/hold", user="bob")
    token = _token(client, headers={"X-User": "alice"})
    response = client.post("/jobs/ui/cancel", headers={"X-User": "alice"}, data={
        "job": [*mine, theirs, "not-a-job"], "csrf_token": token,
        "next": "https://evil.example/jobs/ui/"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/jobs/ui/"  # never another site
    for job_id in mine:
        assert _final(client, job_id, "alice")["status"] == "cancelled"
    assert client.get(f"/jobs/{theirs}", headers={"X-User": "bob"}).get_json()[
        "cancelRequested"] is False
    stop.set()


def test_dashboard_reruns_a_failed_job_from_its_saved_request(tmp_path: pathlib.Path) -> None:
    app, _ = make_app(tmp_path / "forgets")
    client = app.test_client()
    failed = _submit(client, "/boom")
    assert _final(client, failed)["status"] == "failed"
    token = _token(client)
    assert 'id="rerun"' not in client.get(f"/jobs/ui/{failed}").get_data(as_text=True)
    refused = client.post(f"/jobs/ui/{failed}/rerun", data={"csrf_token": token})
    assert refused.status_code == 409  # its request was not kept
    assert refused.get_json()["error"]["code"] == "not_rerunnable"

    app, _ = make_app(tmp_path / "keeps", JOBIFY_KEEP_FAILED_REQUESTS=True)
    client = app.test_client()
    failed = _submit(client, "/boom")
    assert _final(client, failed)["status"] == "failed"
    token = _token(client)
    assert 'id="rerun"' in client.get(f"/jobs/ui/{failed}").get_data(as_text=True)
    response = client.post(f"/jobs/ui/{failed}/rerun", data={"csrf_token": token})
    assert response.status_code == 303
    new_id = response.headers["Location"].rsplit("/", 1)[1]
    store = app.extensions["jobify"].store
    new = store.get(new_id)
    assert new is not None and new.meta["rerun_of"] == failed and new.operation == "boom"
    assert _final(client, new_id)["status"] == "failed"
    assert store.get(failed).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_dashboard_cannot_be_framed_sniffed_or_cached(tmp_path: pathlib.Path) -> None:
    # Framed by another site, its Cancel buttons could be clicked for the
    # admin (clickjacking); a shared cache must not keep an admin's page.
    app, stop = make_app(tmp_path)
    client = app.test_client()
    job_id = _submit(client, "/hold")
    for path in ("/jobs/ui/", f"/jobs/ui/{job_id}", "/jobs/ui/stats"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["X-Frame-Options"] == "DENY", path
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert "no-store" in response.headers["Cache-Control"], path
        assert response.headers["Referrer-Policy"] == "same-origin", path
    stop.set()


def test_dashboard_next_with_control_characters_goes_to_the_table(
        tmp_path: pathlib.Path) -> None:
    app, stop = make_app(tmp_path)
    client = app.test_client()
    token = _token(client)
    for target in ("/jobs/ui/\r\nSet-Cookie: a=b", "/jobs/ui/\n", "/jobs/ui/\x00x"):
        response = client.post("/jobs/ui/cancel", data={"csrf_token": token, "next": target})
        assert response.status_code == 303, (target, response.get_data(as_text=True))
        assert response.headers["Location"] == "/jobs/ui/", target
    stop.set()
