"""Blinker signals sent through a job's life. Each sends the app as sender
and the :class:`~flask_jobify.models.Job` as ``job``."""
from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A flagged request was accepted as a job (sent in the request's thread).
job_accepted = _signals.signal("job-accepted")
#: A job started to run (sent in the thread that runs it).
job_started = _signals.signal("job-started")
#: A job reached a final status (sent by whoever ended it).
job_finished = _signals.signal("job-finished")


__all__ = [
    "job_accepted", "job_finished", "job_started",
]
