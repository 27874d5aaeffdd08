"""End to end: the demo served by gunicorn (its own config file, two
workers sharing an SQLite job store), driven with :mod:`flask_jobify.client`."""
from __future__ import annotations

import os
import pathlib
import queue
import typing as t

import pytest
import requests
from flask import Flask, request
from servers import run_gunicorn, serve_app

from example_app.client import make_session, run_job
from flask_jobify import JobProgress
from flask_jobify.client import JobSession
from flask_jobify.webhooks import verify

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONF = ROOT / "example_app" / "gunicorn.conf.py"
WEBHOOK_SECRET = "demo-webhook-secret"
PETS_CSV = b"name,species,age\nRex,dog,3\n,dragon,-1\nTom,cat,5\n"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory) -> t.Iterator[str]:
    tmp = tmp_path_factory.mktemp("demo")
    # JOBIFY_DEMO_STORE picks another store; memory:// means one worker.
    store = os.environ.get("JOBIFY_DEMO_STORE", f"sqlite:///{tmp / 'jobs.db'}")
    env = {
        "JOBIFY_STORE": store,
        "PETS_DATABASE": str(tmp / "pets.db"),
        "JOBIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "JOBIFY_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
        "JOBIFY_WEBHOOK_BACKOFF": "0.1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with run_gunicorn(
        "example_app:create_app()",
        workers=1 if store.startswith("memory:") else 2,
        threads=8,
        env=env,
        extra_args=["--config", str(CONF), "--chdir", str(ROOT)],
    ) as url:
        yield url


def test_example_app_long_ping_publishes_progress(demo_url):
    seen: list[JobProgress] = []
    session = JobSession(on_progress=seen.append, timeout=60)
    r = session.post(f"{demo_url}/status/long", params={"seconds": 1.5})
    assert r.status_code == 200
    assert r.json()["timeTook"] >= 1500
    assert r.history[0].status_code == 202
    assert seen[-1] == JobProgress(100.0, "done")
    assert [p.percent for p in seen if p.percent is not None] == sorted(
        p.percent for p in seen if p.percent is not None
    )
    assert any(0 < (p.percent or 0) < 100 for p in seen)


def test_example_app_import_reports_the_bad_row(demo_url):
    session = make_session(progress_bar=False, timeout=60)
    r = run_job(session, "POST", f"{demo_url}/pets/import",
                files={"file": ("pets.csv", PETS_CSV, "text/csv")})
    assert r.status_code == 200
    body = r.json()
    assert (body["created"], body["failed"]) == (2, 1)
    assert body["errors"][0]["line"] == 3
    assert set(body["errors"][0]["messages"]) == {"name", "species", "age"}
    names = [pet["name"] for pet in requests.get(f"{demo_url}/pets", timeout=30).json()["pets"]]
    assert {"Rex", "Tom"} <= set(names)


def test_example_app_report_replayed_byte_for_byte(demo_url):
    direct = requests.post(f"{demo_url}/reports/orders", json={"month": "2024-03"}, timeout=30)
    assert direct.status_code == 200
    session = make_session(progress_bar=False, timeout=60)
    job = session.submit("POST", f"{demo_url}/reports/orders", json={"month": "2024-03"})
    replayed = job.result()
    assert replayed.status_code == 200
    assert replayed.content == direct.content
    for header in ("Content-Type", "Content-Disposition", "Content-Length"):
        assert replayed.headers[header] == direct.headers[header]
    assert "orders-2024-03.csv" in replayed.headers["Content-Disposition"]
    # Any worker serves the result: fetch it again through a new session.
    again = JobSession().resume(job.status_url).result()
    assert again.content == direct.content


def test_example_app_cancel_stops_the_long_ping(demo_url):
    job = JobSession().submit("POST", f"{demo_url}/status/long", params={"seconds": 30})
    while job.status().value == "pending":
        job.wait(0.2)
    assert job.cancel() is True
    assert job.wait(30)
    assert job.record["status"] == "cancelled"


def test_example_app_client_ctrl_c_cancels_the_job(demo_url):
    def interrupt(progress: JobProgress) -> None:
        raise KeyboardInterrupt  # as Ctrl-C would, while the client watches

    session = make_session(progress_bar=False, on_progress=interrupt)
    # The first progress the client sees may be the 50 % one, at half time:
    # a long-poll answers the change after the one current when it arrives.
    job = session.submit("POST", f"{demo_url}/status/long", params={"seconds": 4})
    with pytest.raises(KeyboardInterrupt):
        job.result()
    watcher = JobSession().resume(job.status_url)
    assert watcher.wait(30)
    assert watcher.record["status"] == "cancelled"


def test_example_app_import_calls_the_webhook_when_done(demo_url):
    deliveries: queue.Queue = queue.Queue()
    receiver = Flask("receiver")

    @receiver.post("/hooks/jobs")
    def job_done():
        verify(request.get_data(), request.headers["X-Jobify-Signature"], WEBHOOK_SECRET)
        deliveries.put(request.get_json())
        return "", 204

    with serve_app(receiver) as hook_url:
        r = make_session(progress_bar=False, timeout=60).post(
            f"{demo_url}/pets/import",
            files={"file": ("pets.csv", PETS_CSV, "text/csv")},
            headers={"X-Job-Callback": f"{hook_url}/hooks/jobs"},
        )
        assert r.status_code == 200
        job = deliveries.get(timeout=30)
    assert job["status"] == "succeeded"
    assert job["resultUrl"].startswith(demo_url)
    assert requests.get(job["resultUrl"], timeout=30).json() == r.json()


def test_example_app_client_help_is_plain_text_from_anywhere(tmp_path):
    import subprocess
    import sys

    # Another working directory: the demo is importable once installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "example_app.client", "--help"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "python -m example_app.client long --seconds 5" in done.stdout
    assert "``" not in done.stdout and ":mod:" not in done.stdout
    assert "\n::" not in done.stdout


def test_example_app_dashboard_refuses_what_a_local_proxy_forwards(demo_url):
    assert requests.get(f"{demo_url}/jobs/ui/", timeout=10).status_code == 200
    forwarded = requests.get(f"{demo_url}/jobs/ui/", timeout=10,
                             headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
    assert forwarded.json()["error"]["code"] == "access_denied"


def test_example_app_idle_streams_leave_threads_for_other_requests(tmp_path):
    # Anyone may open GET /jobs/events: with the cap above the worker's
    # threads, a few idle streams held every thread and the demo hung.
    env = {"JOBIFY_STORE": f"sqlite:///{tmp_path / 'jobs.db'}",
           "PETS_DATABASE": str(tmp_path / "pets.db"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with run_gunicorn("example_app:create_app()", workers=1, threads=4, env=env,
                      extra_args=["--config", str(CONF), "--chdir", str(ROOT)]) as url:
        streams = [requests.get(f"{url}/jobs/events", stream=True, timeout=10)
                   for _ in range(4)]
        try:
            codes = sorted(stream.status_code for stream in streams)
            assert codes == [200, 200, 503, 503], codes
            assert requests.get(f"{url}/jobs/client.js", timeout=10).status_code == 200
        finally:
            for stream in streams:
                stream.close()
