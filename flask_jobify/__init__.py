"""Flask-Jobify: any Flask view becomes a background job when the client asks."""
from __future__ import annotations

from .context import JobHandle, current_job
from .errors import (
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
    WebhookSignatureError,
)
from .extension import Jobify
from .models import Job, JobError, JobProgress, JobStatus, StoredResponse
from .options import JobOptions
from .signals import job_accepted, job_finished, job_started
from .stores import JobStore, store_from_url

__version__ = "0.1.0.dev0"

__all__ = [
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
    "StoredResponse",
    "WebhookSignatureError",
    "current_job",
    "job_accepted",
    "job_finished",
    "job_started",
    "store_from_url",
]
