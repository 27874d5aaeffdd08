"""The app of tests/test_queues.py: views in execution queues that say when
they ran, served in the test's process, by gunicorn, or by a process the
test kills. Configured from arguments or the environment:
``JOBIFY_STORE``, ``JOBIFY_LEASE_SECONDS`` (default 5: a test whose
process is killed gives 1, so that its slot frees within seconds).

Every view answers ``{"start": ..., "end": ..., "pid": ...}`` (POSIX
seconds: one clock for every process of the machine), so that a test can
tell whether two runs overlapped.
"""
from __future__ import annotations

import os
import threading
import time
import typing as t

from flask import Flask, request

from flask_jobify import Jobify, current_job

#: The app's name, the same in every process, so that each recovers the others' jobs.
NAME = "queues_app"
#: Longest a holding view runs if nobody stops it.
HOLD_SECONDS = 60.0


def create_app(store: str | None = None, *, lease_seconds: float | None = None,
               **config: t.Any) -> Flask:
    app = Flask(NAME)
    app.config.update(
        JOBIFY_STORE=store or os.environ.get("JOBIFY_STORE", "memory://"),
        JOBIFY_LEASE_SECONDS=lease_seconds or float(os.environ.get("JOBIFY_LEASE_SECONDS", "5")),
        JOBIFY_MAX_WORKERS=4,
        JOBIFY_SHUTDOWN_GRACE=0.5,
        **config,
    )
    jobify = Jobify(app)
    #: Released by a test to let the held views of this process end.
    app.config["QUEUES_TEST_GATE"] = gate = threading.Event()

    @jobify.owner_loader
    def owner() -> str | None:
        return request.headers.get("X-User")

    def timed() -> dict[str, t.Any]:
        start = time.time()
        time.sleep(min(float(request.args.get("sleep", "0.1")), 2.0))
        return {"start": start, "end": time.time(), "pid": os.getpid(),
                "n": request.args.get("n")}

    @app.get("/pid")
    def pid() -> t.Any:
        time.sleep(0.2)  # held a moment, so that probes spread over the workers
        return {"pid": os.getpid()}

    @app.post("/serial")
    @jobify.job(queue="serial", concurrency=1)
    def serial() -> t.Any:
        return timed()

    @app.post("/pair")
    @jobify.job(queue="pair", concurrency=2)
    def pair() -> t.Any:
        return timed()

    @app.post("/hold")
    @jobify.job(queue="serial", concurrency=1)
    def hold() -> t.Any:
        """Says it runs (its pid as progress), then holds its slot until
        the gate opens, the job is cancelled, or :data:`HOLD_SECONDS`."""
        start = time.time()
        current_job.progress(message=str(os.getpid()))
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline and not gate.wait(0.02):
            if current_job.cancelled:
                break
        return {"start": start, "end": time.time(), "pid": os.getpid()}

    #: What the runs of ``/overrun`` did, even past their job's end.
    app.config["QUEUES_TEST_OVERRUNS"] = overruns = []

    @app.post("/overrun")
    @jobify.job(queue="serial", concurrency=1, timeout=0.2)
    def overrun() -> t.Any:
        """Times out, and goes on as a view that never looks at
        ``current_job.cancelled`` does: its run says when it really ended."""
        start = time.time()
        time.sleep(min(float(request.args.get("sleep", "1.0")), 5.0))
        overruns.append({"start": start, "end": time.time(), "pid": os.getpid()})
        return overruns[-1]

    @app.post("/free")
    @jobify.job
    def free() -> t.Any:
        """No queue: held like ``/hold``, for the per-owner limit."""
        gate.wait(HOLD_SECONDS)
        return {"pid": os.getpid()}

    return app


def main() -> None:
    """``python queues_app.py STORE``: submit a ``/hold`` job, print its id,
    then hold it until killed (tests/test_queues.py kills this process)."""
    import sys

    app = create_app(sys.argv[1], lease_seconds=1.0)
    answer = app.test_client().post("/hold", headers={"X-Job-Flag": "ON"})
    print(answer.get_json()["jobId"], flush=True)
    time.sleep(HOLD_SECONDS)


if __name__ == "__main__":
    main()
