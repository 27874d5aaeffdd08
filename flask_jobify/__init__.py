"""Flask-Jobify: any Flask view becomes a background job when the client asks."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .capture import CapturedRequest
from .context import JobHandle, current_job
from .errors import (
    ConfigError,
    ConfigWarning,
    ExecutorUnavailable,
    IdempotencyMismatch,
    InvalidCallback,
    InvalidIdempotencyKey,
    InvalidJobFlag,
    InvalidJobId,
    JobCancelled,
    JobifyError,
    JobifyHTTPError,
    JobNotFinished,
    JobNotFound,
    NoResult,
    QueueFull,
    ShuttingDown,
    StoreError,
    StoreUnavailable,
    UnreadableBody,
    WebhookSignatureError,
)
from .extension import Jobify
from .models import Job, JobError, JobProgress, JobStatus, StoredResponse
from .options import JobOptions
from .signals import job_accepted, job_finished, job_started
from .stores import JobStore, store_from_url

try:
    __version__ = version("Flask-Jobify")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "CapturedRequest",
    "ConfigError",
    "ConfigWarning",
    "ExecutorUnavailable",
    "IdempotencyMismatch",
    "InvalidCallback",
    "InvalidIdempotencyKey",
    "InvalidJobFlag",
    "InvalidJobId",
    "Job",
    "JobCancelled",
    "JobError",
    "JobHandle",
    "JobNotFinished",
    "JobNotFound",
    "JobOptions",
    "JobProgress",
    "JobStatus",
    "JobStore",
    "Jobify",
    "JobifyError",
    "JobifyHTTPError",
    "NoResult",
    "QueueFull",
    "ShuttingDown",
    "StoreError",
    "StoreUnavailable",
    "StoredResponse",
    "UnreadableBody",
    "WebhookSignatureError",
    "current_job",
    "job_accepted",
    "job_finished",
    "job_started",
    "store_from_url",
]
