"""The apps ``bench_peers.py`` serves: one trivial view behind the same
HTTP shape for every peer, chosen by ``PEER``.

- ``plain``: ``POST /work`` answers ``{"ok": true}``.
- ``executor``, ``celery``, ``rq``: ``POST /work`` starts the view's work
  and answers ``202`` with ``Location: /status/<id>``; ``GET /status/<id>``
  answers ``{"status": "pending" | "done", "result": ...}``.
- ``jobify``: ``POST /work`` with ``X-Job-Flag: ON`` is a Flask-Jobify job
  (store from ``JOBIFY_STORE``); without it, the view answers as ``plain``.

``PEER_REDIS`` is the Redis URL of Celery and RQ.
"""
from __future__ import annotations

import os
import typing as t
import uuid

from flask import Flask, jsonify

PEER = os.environ.get("PEER", "plain")
REDIS = os.environ.get("PEER_REDIS", "redis://127.0.0.1:6379/0")


def work() -> dict[str, bool]:
    """The trivial view's work (a module-level function: RQ imports it)."""
    return {"ok": True}


def _accepted(job_id: str) -> t.Any:
    return jsonify(jobId=job_id), 202, {"Location": f"/status/{job_id}"}


def _status(done: bool, result: t.Any = None) -> t.Any:
    return jsonify(status="done" if done else "pending", result=result)


if PEER == "celery":
    from celery import Celery

    celery = Celery("peers_app", broker=REDIS, backend=REDIS)
    celery.conf.update(task_ignore_result=False, broker_connection_retry_on_startup=True)
    celery_work = celery.task(name="peers_app.work")(work)


def create_app() -> Flask:
    app = Flask(__name__)
    if PEER in ("plain", "jobify"):
        decorate: t.Callable[[t.Any], t.Any] = lambda view: view
        if PEER == "jobify":
            from flask_jobify import Jobify

            app.config.update(JOBIFY_STORE=os.environ.get("JOBIFY_STORE", "memory://"),
                              JOBIFY_MAX_QUEUED=1_000_000, JOBIFY_RESULT_TTL=600,
                              JOBIFY_REDIS_PREFIX=f"bench-{uuid.uuid4().hex[:8]}:")
            decorate = Jobify(app).job

        @app.post("/work")
        @decorate
        def view() -> dict[str, bool]:
            return work()

    elif PEER == "executor":
        from flask_executor import Executor

        executor = Executor(app)
        app.config["EXECUTOR_MAX_WORKERS"] = 4

        @app.post("/work")
        def submit() -> t.Any:
            job_id = uuid.uuid4().hex
            executor.submit_stored(job_id, work)
            return _accepted(job_id)

        @app.get("/status/<job_id>")
        def status(job_id: str) -> t.Any:
            if not executor.futures.done(job_id):
                return _status(False)
            return _status(True, executor.futures.pop(job_id).result())

    elif PEER == "celery":
        @app.post("/work")
        def submit() -> t.Any:
            return _accepted(celery_work.delay().id)

        @app.get("/status/<job_id>")
        def status(job_id: str) -> t.Any:
            result = celery.AsyncResult(job_id)
            return _status(result.ready(), result.result if result.ready() else None)

    elif PEER == "rq":
        from redis import Redis
        from rq import Queue

        queue = Queue("peers", connection=Redis.from_url(REDIS))

        @app.post("/work")
        def submit() -> t.Any:
            return _accepted(queue.enqueue(work, result_ttl=600).id)

        @app.get("/status/<job_id>")
        def status(job_id: str) -> t.Any:
            job = queue.fetch_job(job_id)
            done = job is not None and job.is_finished
            return _status(done, job.return_value() if done else None)

    return app
