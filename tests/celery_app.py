"""The app the Celery tests drive: one Flask app and one Celery app, built
the same way by the gunicorn web process and by the Celery worker.

Both sides read their settings from the environment, so that they share
the Redis job store (DB 15, under ``JOBIFY_TEST_CELERY_PREFIX``) and the
broker (``JOBIFY_TEST_CELERY_BROKER``, DB 14 by default)::

    PYTHONPATH=tests celery -A celery_app:celery_app worker --concurrency 2
    gunicorn --pythonpath tests 'celery_app:flask_app'

Views leave markers in Redis under ``{prefix}:t:{token}:...`` (``token`` is
the ``t`` query argument), so that a test sees what ran where, and holds a
view at a known point with ``{prefix}:t:{token}:go``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import typing as t

import redis
from celery import Celery
from celery.signals import task_received
from flask import Flask, request

from flask_jobify import Jobify, current_job

REDIS_HOST = os.environ.get("JOBIFY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("JOBIFY_TEST_REDIS_PORT", "6379"))
#: Every key of one test run starts with it: the job store's and the markers.
PREFIX = os.environ.get("JOBIFY_TEST_CELERY_PREFIX", "jobify-celery-test")
BROKER_URL = os.environ.get(
    "JOBIFY_TEST_CELERY_BROKER", f"redis://{REDIS_HOST}:{REDIS_PORT}/14"
)
STORE_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/15?prefix={PREFIX}"
#: Longest a view waits for a test's signal before it gives up.
HOLD_SECONDS = 30.0

logger = logging.getLogger("celery_app")


def marker(token: str, name: str) -> str:
    """The Redis key (DB 15) of marker ``name`` of the request ``token``."""
    return f"{PREFIX}:t:{token}:{name}"


markers = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=15)

flask_app = Flask(__name__)
flask_app.config.update(
    JOBIFY_EXECUTOR="celery",
    JOBIFY_STORE=STORE_URL,
    JOBIFY_LEASE_SECONDS=2.0,
    JOBIFY_CANCEL_CHECK_INTERVAL=0.05,
    JOBIFY_SHUTDOWN_GRACE=1.0,
    JOBIFY_MAX_WAIT=30.0,
    JOBIFY_DROP_HEADERS=("authorization",),
)
jobify = Jobify(flask_app)

celery_app = Celery("celery_app", broker=BROKER_URL)
celery_app.conf.update(
    broker_connection_retry_on_startup=True,
    # Its own queue: a worker left over from another run never eats our tasks.
    task_default_queue=PREFIX,
    worker_prefetch_multiplier=1,
    worker_send_task_events=False,
)
jobify.init_celery(celery_app, flask_app)


@task_received.connect
def _log_received(request: t.Any = None, **_: t.Any) -> None:
    """Log what monitoring tools show of each task (its ``argsrepr``), as a
    line of the worker's log the secrets test looks through."""
    logger.warning("TASK RECEIVED %s[%s] argsrepr=%s kwargsrepr=%s",
                   request.name, request.id, request.argsrepr, request.kwargsrepr)


def _token() -> str:
    return request.args.get("t", "none")


def _note_run(token: str) -> int:
    """Record that the view runs here; return the how-manieth run it is."""
    markers.hset(marker(token, "run"), mapping={
        "pid": os.getpid(), "is_job": int(current_job.is_job), "attempt": current_job.attempt,
    })
    return int(markers.incr(marker(token, "runs")))


def _wait_for(key: str, seconds: float = HOLD_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if markers.exists(key):
            return True
        time.sleep(0.02)
    return False


@flask_app.post("/upload")
@jobify.job(timeout=60)
def upload_view() -> t.Any:
    """Reads a multipart upload; as a job, reports progress and waits until
    the test said it saw that progress (``{token}:ack``)."""
    token = _token()
    _note_run(token)
    upload = request.files["file"]
    data = upload.read()
    if current_job.is_job:
        current_job.progress(50, "uploaded")
        acked = _wait_for(marker(token, "ack"), 10.0)
        markers.hset(marker(token, "run"), "acked", int(acked))
        current_job.progress(90, "checked")
    body = {
        "name": upload.filename,
        "mimetype": upload.mimetype,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "field": request.form.get("field"),
        "fields": sorted(request.form),
    }
    return body, 201, {"X-Upload-Name": upload.filename or "", "Cache-Control": "no-store"}


@flask_app.post("/gate")
@jobify.job(timeout=60)
def gate_view() -> t.Any:
    """Holds until ``{token}:go`` is set (then until ``{token}:go2`` if
    ``?twice=1``), stopping early when the job is cancelled."""
    token = _token()
    _note_run(token)
    current_job.progress(10, "waiting")
    stages = [("go", "released")]
    if request.args.get("twice"):
        stages.append(("go2", "released again"))
    for key, message in stages:
        deadline = time.monotonic() + HOLD_SECONDS
        while not markers.exists(marker(token, key)):
            if current_job.cancelled:
                markers.set(marker(token, "saw_cancel"), 1)
                return {"stopped": True}
            if time.monotonic() > deadline:
                return {"gave_up": True}, 504
            time.sleep(0.02)
        current_job.progress(60, message)
    return {
        "released": True,
        "authorization": request.headers.get("Authorization"),
        "api_key": request.headers.get("X-Api-Key"),
    }


@flask_app.post("/stubborn")
@jobify.job(timeout=1)
def stubborn_view() -> t.Any:
    """Ignores cancellation on purpose: sleeps in a loop without looking.
    Records what stopped it in ``{token}:stopped``."""
    token = _token()
    _note_run(token)
    how = "returned"
    try:
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException as exc:
        how = type(exc).__name__
        raise
    finally:
        markers.set(marker(token, "stopped"), how)
    return {"late": True}


def _flaky() -> t.Any:
    runs = _note_run(_token())
    if runs <= 2:
        raise RuntimeError(f"run {runs} fails on purpose")
    return {"runs": runs, "attempt": current_job.attempt}


@flask_app.post("/flaky")
@jobify.job(retries=2, backoff=0.1, retryable=True)
def flaky_view() -> t.Any:
    """Fails on its first two runs; may be retried although it is a POST."""
    return _flaky()


@flask_app.post("/flaky-post")
@jobify.job(retries=2, backoff=0.1)
def flaky_post_view() -> t.Any:
    """Fails on its first two runs; a POST, so never retried."""
    return _flaky()


@flask_app.post("/flaky-slow")
@jobify.job(retries=1, backoff=4.0, retryable=True)
def flaky_slow_view() -> t.Any:
    """Fails on its first run; the retry waits 2 to 4 s (Celery countdown)."""
    runs = _note_run(_token())
    if runs == 1:
        raise RuntimeError("the first run fails on purpose")
    return {"runs": runs}


def _linger() -> t.Any:
    """The first run holds (without looking at cancellation) until killed;
    later runs answer at once."""
    token = _token()
    runs = _note_run(token)
    if current_job.attempt == 1:
        markers.set(marker(token, "pid"), os.getpid())
        time.sleep(HOLD_SECONDS)
    return {"runs": runs, "attempt": current_job.attempt}


@flask_app.post("/linger")
@jobify.job
def linger_view() -> t.Any:
    return _linger()


@flask_app.post("/linger-retry")
@jobify.job(retries=1, retryable=True)
def linger_retry_view() -> t.Any:
    return _linger()


@flask_app.post("/hang-retry")
@jobify.job(retries=1, retryable=True)
def hang_retry_view() -> t.Any:
    """The first run holds, without looking at cancellation, until
    ``{token}:go``; then notes whether it was told to stop. Later runs
    answer at once."""
    token = _token()
    _note_run(token)
    if current_job.attempt == 1:
        markers.set(marker(token, "pid"), os.getpid())
        _wait_for(marker(token, "go"))
        markers.set(marker(token, "stale_saw_cancel"), int(current_job.cancelled))
    return {"attempt": current_job.attempt}


@flask_app.get("/quick")
@jobify.job
def quick_view() -> t.Any:
    _note_run(_token())
    return {"pid": os.getpid()}


#: An execution queue of one: also the Celery queue its jobs go to, which
#: the test's worker consumes (``-Q {prefix},{prefix}.serial``).
SERIAL_QUEUE = f"{PREFIX}.serial"


@flask_app.post("/serial")
@jobify.job(queue=SERIAL_QUEUE, concurrency=1)
def serial_view() -> t.Any:
    """Says when it ran (POSIX seconds, one clock for the machine)."""
    start = time.time()
    time.sleep(0.3)
    return {"start": start, "end": time.time(), "pid": os.getpid()}
