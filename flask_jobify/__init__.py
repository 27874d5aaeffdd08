"""Flask-Jobify: any Flask view becomes a background job when the client asks.

What an app needs: the :class:`Jobify` extension, ``current_job`` inside
a job, the job record (:class:`Job`, :class:`JobStatus`...), the stores,
the signals, and every exception it may catch (all rooted at
:class:`JobifyError`; the HTTP ones at :class:`JobifyHTTPError`, which an
app's error handler may restyle). The rest is internal.

The names are imported on first use (PEP 562), so that
``import flask_jobify.client`` loads requests and not Flask: a caller of an
API needs no server stack. ``from flask_jobify import Jobify`` works as
before.
"""
from __future__ import annotations

import importlib
import typing as t

if t.TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
    from .capture import CapturedRequest
    from .context import JobHandle, current_job
    from .errors import (
        AccessCheckFailed,
        AccessDenied,
        ConfigError,
        ConfigWarning,
        ContentTooLarge,
        CsrfFailed,
        DuplicateJobId,
        ExecutorError,
        ExecutorUnavailable,
        IdempotencyMismatch,
        IdempotencyUnavailable,
        InvalidArgument,
        InvalidCallback,
        InvalidIdempotencyKey,
        InvalidJobFlag,
        InvalidJobId,
        InvalidJobPreference,
        JobCancelled,
        JobifyHTTPError,
        JobNotFinished,
        JobNotFound,
        MetricsUnavailable,
        NoResult,
        NotRerunnable,
        PreconditionFailed,
        QueueFull,
        ShuttingDown,
        StoreClosed,
        StoreError,
        StoreUnavailable,
        TooManyJobs,
        TooManyStreams,
        UnreadableBody,
        WebhookSignatureError,
    )
    from .extension import Jobify
    from .models import Job, JobError
    from .options import JobOptions
    from .protocol import JobifyError, JobProgress, JobStatus
    from .signals import job_accepted, job_finished, job_started
    from .stores import JobStore, store_from_url

    __version__: str

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "CapturedRequest": "capture",
    "JobHandle": "context",
    "current_job": "context",
    **dict.fromkeys(
        [
            "AccessCheckFailed", "AccessDenied", "ConfigError", "ConfigWarning", "ContentTooLarge",
            "CsrfFailed", "DuplicateJobId", "ExecutorError", "ExecutorUnavailable",
            "IdempotencyMismatch", "IdempotencyUnavailable", "InvalidArgument", "InvalidCallback",
            "InvalidIdempotencyKey", "InvalidJobFlag", "InvalidJobId", "InvalidJobPreference",
            "JobCancelled", "JobNotFinished", "JobNotFound", "JobifyHTTPError",
            "MetricsUnavailable", "NoResult", "NotRerunnable", "PreconditionFailed", "QueueFull",
            "ShuttingDown", "StoreClosed", "StoreError", "StoreUnavailable", "TooManyJobs",
            "TooManyStreams", "UnreadableBody", "WebhookSignatureError",
        ],
        "errors",
    ),
    "Jobify": "extension",
    "Job": "models",
    "JobError": "models",
    "JobOptions": "options",
    "JobProgress": "protocol",
    "JobStatus": "protocol",
    "JobifyError": "protocol",
    "job_accepted": "signals",
    "job_finished": "signals",
    "job_started": "signals",
    "JobStore": "stores",
    "store_from_url": "stores",
}


def __getattr__(name: str) -> t.Any:
    """Import a public name's module on first use (PEP 562) and keep it."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("Flask-Jobify")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            value = "0.0.0"
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})


__all__ = [
    "AccessCheckFailed",
    "AccessDenied",
    "CapturedRequest",
    "ConfigError",
    "ConfigWarning",
    "ContentTooLarge",
    "CsrfFailed",
    "DuplicateJobId",
    "ExecutorError",
    "ExecutorUnavailable",
    "IdempotencyMismatch",
    "IdempotencyUnavailable",
    "InvalidArgument",
    "InvalidCallback",
    "InvalidIdempotencyKey",
    "InvalidJobFlag",
    "InvalidJobId",
    "InvalidJobPreference",
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
    "MetricsUnavailable",
    "NoResult",
    "NotRerunnable",
    "PreconditionFailed",
    "QueueFull",
    "ShuttingDown",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "TooManyJobs",
    "TooManyStreams",
    "UnreadableBody",
    "WebhookSignatureError",
    "__version__",
    "current_job",
    "job_accepted",
    "job_finished",
    "job_started",
    "store_from_url",
]
