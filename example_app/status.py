"""``POST /status/long``: the long ping, in steps, with progress."""
from __future__ import annotations

import time

from flask import Blueprint, abort, request

from flask_jobify import current_job

from .extensions import jobify

bp = Blueprint("status", __name__, url_prefix="/status")

#: Longest ping a client may ask for, in seconds.
MAX_SECONDS = 300.0
#: The ping's own time limit as a job: past it, the job is ``timed_out``.
TIMEOUT = 60.0
#: Milestones: (share of the time slept before publishing, percent, message).
STEPS = [(0.0, 10, "ping sent"), (0.5, 50, "half way"), (1.0, 95, "pong received")]


@bp.post("/long")
@jobify.job(timeout=TIMEOUT)
def long_ping():
    """Sleep ``?seconds=`` (default 2) in small steps and say how long it took.

    As a job it publishes progress 10, 50, 95 and 100, and stops early once
    cancelled or past its timeout.
    """
    seconds = request.args.get("seconds", 2.0, type=float)
    if seconds is None or not 0 <= seconds <= MAX_SECONDS:
        abort(400, f"seconds must be a number within 0..{MAX_SECONDS:g}.")
    started = time.monotonic()
    for share, percent, message in STEPS:
        while time.monotonic() - started < seconds * share:
            if current_job.cancelled:
                return {"cancelled": True}, 200
            time.sleep(0.05)
        current_job.progress(percent, message)
    took = time.monotonic() - started
    current_job.progress(100, "done")
    return {"timeTook": round(took * 1000)}
