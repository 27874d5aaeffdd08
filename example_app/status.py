"""``POST /status/long``: the long ping, in steps, with progress."""
from __future__ import annotations

import time

from flask_smorest import Blueprint

from flask_jobify import current_job

from .extensions import jobify
from .schemas import LongPingArgsSchema, LongPingSchema

bp = Blueprint("status", __name__, url_prefix="/status", description="The long ping.")

#: Longest ping a client may ask for, in seconds.
MAX_SECONDS = 300.0
#: The ping's own time limit as a job: past it, the job is ``timed_out``.
TIMEOUT = 60.0
#: Milestones: (share of the time slept before publishing, percent, message).
STEPS = [(0.0, 10, "ping sent"), (0.5, 50, "half way"), (1.0, 95, "pong received")]


@bp.route("/long", methods=["POST"])
@bp.arguments(LongPingArgsSchema, location="query")
@bp.response(200, LongPingSchema)
@jobify.job(timeout=TIMEOUT)
def long_ping(args):
    """Sleep ``?seconds=`` (default 2) in small steps and say how long it took.

    As a job it publishes progress 10, 50, 95 and 100, and stops early once
    cancelled or past its timeout.
    """
    seconds = args["seconds"]  # 0..MAX_SECONDS, else 422 before any job
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
