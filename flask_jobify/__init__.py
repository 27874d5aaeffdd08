"""Flask-Jobify: any Flask view becomes a background job when the client asks.

The names below are imported on first use (PEP 562), so that
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
        AccessDenied,
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

    __version__: str

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "CapturedRequest": "capture",
    "JobHandle": "context",
    "current_job": "context",
    **dict.fromkeys(
        [
            "AccessDenied", "ConfigError", "ConfigWarning", "ExecutorUnavailable",
            "IdempotencyMismatch",
            "InvalidCallback", "InvalidIdempotencyKey", "InvalidJobFlag", "InvalidJobId",
            "JobCancelled", "JobifyHTTPError", "JobNotFinished", "JobNotFound", "NoResult",
            "QueueFull", "ShuttingDown", "StoreError", "StoreUnavailable", "UnreadableBody",
            "WebhookSignatureError",
        ],
        "errors",
    ),
    "JobifyError": "protocol",
    "JobProgress": "protocol",
    "JobStatus": "protocol",
    "Jobify": "extension",
    "Job": "models",
    "JobError": "models",
    "StoredResponse": "models",
    "JobOptions": "options",
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
    "AccessDenied",
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
