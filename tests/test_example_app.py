"""End to end: the demo served by gunicorn (its own config file, two
workers sharing an SQLite job store), driven over HTTP like a user would."""
from __future__ import annotations

import os
import pathlib
import queue
import typing as t

import pytest
import requests
from flask import Flask, request

from flask_jobify.webhooks import verify

from example_app.client import run_job

from servers import run_gunicorn, serve_app

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
    session = requests.Session()
    accepted = session.post(f"{demo_url}/status/long", params={"seconds": 1.5},
                            headers={"X-Job-Flag": "ON"})
    assert accepted.status_code == 202
    status_url = demo_url + accepted.headers["Location"]
    seen = []
    job = accepted.json()
    while job["status"] in ("pending", "running"):
        job = session.get(status_url, params={"wait": 5}, timeout=30).json()
        seen.append(job["progress"]["percent"])
    assert job["status"] == "succeeded"
    assert job["progress"] == {"percent": 100.0, "message": "done"}
    assert any(p is not None and 0 < p < 100 for p in seen)
    result = session.get(demo_url + job["resultUrl"], timeout=30)
    assert result.status_code == 200
    assert result.json()["timeTook"] >= 1500


def test_example_app_import_reports_the_bad_row(demo_url):
    session = requests.Session()
    r = run_job(session, "POST", f"{demo_url}/pets/import",
                files={"file": ("pets.csv", PETS_CSV, "text/csv")})
    assert r.status_code == 200
    body = r.json()
    assert (body["created"], body["failed"]) == (2, 1)
    assert body["errors"][0]["line"] == 3
    assert set(body["errors"][0]["messages"]) == {"name", "species", "age"}
    names = [pet["name"] for pet in session.get(f"{demo_url}/pets", timeout=30).json()["pets"]]
    assert {"Rex", "Tom"} <= set(names)


def test_example_app_report_replayed_byte_for_byte(demo_url):
    session = requests.Session()
    direct = session.post(f"{demo_url}/reports/orders", json={"month": "2024-03"}, timeout=30)
    assert direct.status_code == 200
    replayed = run_job(session, "POST", f"{demo_url}/reports/orders", json={"month": "2024-03"})
    assert replayed.status_code == 200
    assert replayed.content == direct.content
    for header in ("Content-Type", "Content-Disposition", "Content-Length"):
        assert replayed.headers[header] == direct.headers[header]
    assert "orders-2024-03.csv" in replayed.headers["Content-Disposition"]


def test_example_app_cancel_stops_the_long_ping(demo_url):
    accepted = requests.post(f"{demo_url}/status/long", params={"seconds": 30},
                             headers={"X-Job-Flag": "ON"}, timeout=30)
    status_url = demo_url + accepted.headers["Location"]
    job = accepted.json()
    while job["status"] == "pending":
        job = requests.get(status_url, params={"wait": 5}, timeout=30).json()
    assert requests.delete(status_url, timeout=30).status_code in (200, 202)
    while job["status"] in ("pending", "running"):
        job = requests.get(status_url, params={"wait": 5}, timeout=30).json()
    assert job["status"] == "cancelled"


def test_example_app_client_ctrl_c_cancels_the_job(demo_url):
    class InterruptedSession(requests.Session):
        """Raises KeyboardInterrupt at the first long-poll, as Ctrl-C would."""

        def get(self, url, **kwargs):
            if kwargs.get("params", {}).get("wait"):
                self.status_url = url
                raise KeyboardInterrupt
            return super().get(url, **kwargs)

    session = InterruptedSession()
    with pytest.raises(KeyboardInterrupt):
        run_job(session, "POST", f"{demo_url}/status/long", params={"seconds": 30})
    job = requests.get(session.status_url, timeout=30).json()
    while job["status"] in ("pending", "running"):
        job = requests.get(session.status_url, params={"wait": 5}, timeout=30).json()
    assert job["status"] == "cancelled"


def test_example_app_import_calls_the_webhook_when_done(demo_url):
    deliveries: queue.Queue = queue.Queue()
    receiver = Flask("receiver")

    @receiver.post("/hooks/jobs")
    def job_done():
        verify(request.get_data(), request.headers["X-Jobify-Signature"], WEBHOOK_SECRET)
        deliveries.put(request.get_json())
        return "", 204

    with serve_app(receiver) as hook_url:
        r = run_job(requests.Session(), "POST", f"{demo_url}/pets/import",
                    files={"file": ("pets.csv", PETS_CSV, "text/csv")},
                    headers={"X-Job-Callback": f"{hook_url}/hooks/jobs"})
        assert r.status_code == 200
        job = deliveries.get(timeout=30)
    assert job["status"] == "succeeded"
    assert job["resultUrl"].startswith(demo_url)
    assert requests.get(job["resultUrl"], timeout=30).json() == r.json()
