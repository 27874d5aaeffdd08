"""The ``202 Accepted`` of :mod:`flask_jobify.accept`."""
from __future__ import annotations

import threading

from flask import Flask

from flask_jobify import Jobify
from flask_jobify.schemas import AcceptedJobSchema


def test_accept_body_is_the_accepted_job_schema() -> None:
    """The body is written out by hand (the hot path): it stays the schema's."""
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://")
    jobify = Jobify(app)
    gate = threading.Event()

    @app.post("/held")
    @jobify.job
    def held() -> dict[str, bool]:
        gate.wait(10)
        return {"ok": True}

    try:
        with app.test_request_context():
            answer = app.test_client().post("/held", headers={"X-Job-Flag": "ON"})
            job = app.extensions["jobify"].store.get(answer.headers["X-Job-Id"])
            assert answer.status_code == 202
            assert answer.json == AcceptedJobSchema().dump(job)
            assert answer.headers["Location"] == answer.json["statusUrl"]
    finally:
        gate.set()
