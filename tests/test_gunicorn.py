"""gunicorn -w 4 with the SQLite store: every worker sees every job."""
from __future__ import annotations

import os
import threading

import pytest
import requests
from servers import run_gunicorn

HERE = os.path.dirname(__file__)


@pytest.mark.stores("sqlite")
def test_gunicorn_four_workers_share_jobs_through_sqlite(apps):
    with run_gunicorn(f"core_app:create_app({apps.url!r})", workers=4,
                      extra_args=["--pythonpath", HERE]) as url:
        accepted = []
        lock = threading.Lock()
        statuses: list[int] = []

        def submit_and_poll(count: int) -> None:
            session = requests.Session()  # keep-alive spreads requests over workers
            for _ in range(count):
                answer = session.post(url + "/json", json={"n": 1},
                                      headers={"X-Job-Flag": "ON"}, timeout=30)
                assert answer.status_code == 202
                job_id = answer.json()["jobId"]
                # A fresh connection per poll may land on any worker.
                status = requests.get(f"{url}/jobs/{job_id}?wait=10", timeout=30)
                final = requests.get(f"{url}/jobs/{job_id}/result", timeout=30)
                with lock:
                    accepted.append(job_id)
                    statuses.extend([status.status_code, final.status_code])

        threads = [threading.Thread(target=submit_and_poll, args=(25,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert len(accepted) == 200 == len(set(accepted))
        assert 404 not in statuses
        assert set(statuses) <= {200, 409}  # 409: result asked before the job ended
        for job_id in accepted:
            record = requests.get(f"{url}/jobs/{job_id}?wait=10", timeout=30).json()
            assert record["status"] == "succeeded"

        # Cancel from whichever worker answers: the running worker must notice.
        running = requests.post(url + "/blocking", headers={"X-Job-Flag": "ON"}, timeout=30)
        job_id = running.json()["jobId"]
        record = requests.get(f"{url}/jobs/{job_id}?wait=10", timeout=30).json()
        assert record["status"] in ("pending", "running")
        requests.delete(f"{url}/jobs/{job_id}", timeout=30).raise_for_status()
        for _ in range(20):
            record = requests.get(f"{url}/jobs/{job_id}?wait=5", timeout=30).json()
            if record["status"] not in ("pending", "running"):
                break
        assert record["status"] == "cancelled"
