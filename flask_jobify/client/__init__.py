"""A requests client that makes a Flask-Jobify job feel like a synchronous call.

.. versionadded:: 0.1
"""
from __future__ import annotations

from .adapter import JobAdapter, is_job_response
from .exceptions import (
    JobClientError,
    JobConnectionError,
    JobFailed,
    JobLost,
    JobNotAccepted,
    JobTimedOut,
    JobWasCancelled,
)
from .job import RemoteJob
from .policy import PollPolicy
from .progress import ProgressBar
from .session import JobSession

__all__ = [
    "JobAdapter",
    "JobClientError",
    "JobConnectionError",
    "JobFailed",
    "JobLost",
    "JobNotAccepted",
    "JobSession",
    "JobTimedOut",
    "JobWasCancelled",
    "PollPolicy",
    "ProgressBar",
    "RemoteJob",
    "is_job_response",
]
