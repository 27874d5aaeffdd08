"""A receiver of Flask-Jobify's signals that raises never changes a job's
life: the job is accepted and ends as it would without it, the receivers
after it still run, and the exception is logged."""
from __future__ import annotations

import logging
import time
import typing as t

import pytest
from flask import Flask

from flask_jobify import Jobify, current_job, job_accepted, job_finished, job_started
from flask_jobify.signals import job_retried

FLAG = {"X-Job-Flag": "ON"}
SIGNALS = {"accepted": job_accepted, "started": job_started, "finished": job_finished,
           "retried": job_retried}


def build(store: str) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, JOBIFY_MAX_WAIT=10)
    jobify = Jobify(app)

    @app.put("/flaky")
    @jobify.job(retries=1, backoff=0.01)
    def flaky() -> t.Any:
        if current_job.attempt == 1:
            raise RuntimeError("the first run fails")
        return {"attempt": current_job.attempt}

    return app, jobify


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_a_receiver_that_raises_is_logged_and_changes_nothing(
    name: str, tmp_path: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, jobify = build(f"sqlite:///{tmp_path / 'jobs.db'}")
    seen: list[str] = []

    def broken(sender: t.Any, **kwargs: t.Any) -> None:
        raise ValueError(f"a broken {name} receiver")

    def after(sender: t.Any, **kwargs: t.Any) -> None:
        seen.append(name)

    SIGNALS[name].connect(broken, sender=app)
    SIGNALS[name].connect(after, sender=app)
    try:
        with caplog.at_level(logging.ERROR, logger="flask_jobify"):
            client = app.test_client()
            accepted = client.put("/flaky", headers=FLAG)
            assert accepted.status_code == 202
            url = accepted.headers["Location"]
            record = client.get(url).get_json()
            for _ in range(20):
                if record["status"] in ("succeeded", "failed"):
                    break
                record = client.get(url + "?wait=5").get_json()
            assert record["status"] == "succeeded", record
            assert client.get(url + "/result").get_json() == {"attempt": 2}
            for _ in range(100):  # job_finished is sent just after the end is stored
                if name in seen:
                    break
                time.sleep(0.02)
        assert name in seen  # the receiver after the broken one ran
        assert any(f"a broken {name} receiver" in r.exc_text for r in caplog.records
                   if r.exc_text)
    finally:
        SIGNALS[name].disconnect(broken, sender=app)
        SIGNALS[name].disconnect(after, sender=app)
        jobify.shutdown(app, grace=1)
