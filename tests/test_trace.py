"""Trace continuity: the W3C trace context sent with a submission is what
the job's own run of the view sees, whatever keeps the request."""
from __future__ import annotations

import typing as t

import pytest
from conftest import drop_redis_keys, store_url
from flask import Flask, request
from helpers import finish

from flask_jobify import Jobify
from flask_jobify.config import KEYS

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def test_trace_headers_are_not_in_the_default_drop_headers() -> None:
    assert not {"traceparent", "tracestate"} & {h.lower() for h in KEYS["DROP_HEADERS"].default}


@pytest.mark.parametrize("retries", [0, 2], ids=["in-memory request", "saved request"])
def test_trace_context_of_the_submission_reaches_the_jobs_run(
        store_backend: str, tmp_path: t.Any, retries: int) -> None:
    app = Flask("traced")
    app.config["JOBIFY_STORE"] = store_url(store_backend, tmp_path)
    jobify = Jobify(app)

    @app.put("/traced")
    @jobify.job(retries=retries)
    def traced() -> t.Any:
        return {"traceparent": request.headers.get("traceparent"),
                "tracestate": request.headers.get("tracestate")}

    client = app.test_client()
    try:
        accepted = client.put("/traced", headers={
            "X-Job-Flag": "ON", "traceparent": TRACEPARENT, "tracestate": TRACESTATE})
        job_id = accepted.get_json()["jobId"]
        assert finish(client, job_id)["status"] == "succeeded"
        assert client.get(f"/jobs/{job_id}/result").get_json() == {
            "traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    finally:
        state = app.extensions["jobify"]
        state.shutdown(1)
        if store_backend == "redis":
            drop_redis_keys(state.store.prefix)
