"""Flask-Jobify: any Flask view becomes a background job when the client asks."""
from __future__ import annotations

from .errors import JobCancelled, JobifyError
from .models import Job, JobError, JobProgress, JobStatus

__all__ = ["Job", "JobCancelled", "JobError", "JobifyError", "JobProgress", "JobStatus"]
