"""The job record: what a store keeps about one job.

The record is a plain dataclass so that every store, the executor and the
HTTP layer share one typed description of a job; :mod:`flask_jobify.schemas`
describes it on the wire.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import secrets
import sys
import time
import typing as t
from datetime import datetime, timezone

# Re-exported (`X as X`): they were defined here.
from .protocol import ACTIVE_STATUSES as ACTIVE_STATUSES
from .protocol import FINAL_STATUSES as FINAL_STATUSES
from .protocol import JobProgress as JobProgress
from .protocol import JobStatus as JobStatus

#: Length of a job id: ``secrets.token_urlsafe(16)`` gives 22 characters that
#: carry 128 random bits (a UUID4 carries 122).
JOB_ID_LENGTH = 22
_JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")


def new_job_id() -> str:
    """Return a new unguessable job id (128 bits from :mod:`secrets`)."""
    return secrets.token_urlsafe(16)


def is_valid_job_id(value: str) -> bool:
    """Tell whether ``value`` has the shape of a job id, without a store lookup.

    The whole string must match: ``re.match`` with ``$`` would let a
    trailing newline (``%0A`` in a URL) through.
    """
    return _JOB_ID_RE.fullmatch(value) is not None


@dataclasses.dataclass(frozen=True)
class JobError:
    """Why a job did not succeed.

    ``type`` is a short machine-readable word (``exception``, ``http_error``,
    ``timeout``, ``cancelled``, ``shutdown``, ``lost``...) or, for an
    exception, its class name; ``message`` is for people.
    """

    type: str
    message: str
    traceback: str | None = None


@dataclasses.dataclass(frozen=True)
class StoredResponse:
    """A view's full response, kept so it can be replayed byte for byte."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: The status line's reason phrase when the view set its own
    #: (``"200 Fine Thanks"``); ``None`` for the standard one.
    reason: str | None = None

    @property
    def status_line(self) -> str:
        """``"200 OK"``, or the view's own reason phrase."""
        if self.reason is not None:
            return f"{self.status} {self.reason}"
        from werkzeug.http import HTTP_STATUS_CODES

        return f"{self.status} {HTTP_STATUS_CODES.get(self.status, 'UNKNOWN').upper()}"

    def head_json(self) -> str:
        """Headers (and reason phrase, if any) as JSON, for stores that keep
        them beside the status and body; :meth:`from_parts` reverses it."""
        if self.reason is None:
            return json.dumps(self.headers)
        return json.dumps({"reason": self.reason, "headers": self.headers})

    @classmethod
    def from_parts(cls, status: int, head_json: str | bytes, body: bytes) -> StoredResponse:
        head = json.loads(head_json)
        reason = None
        if isinstance(head, dict):
            reason, head = head.get("reason"), head["headers"]
        return cls(int(status), [(name, value) for name, value in head], bytes(body), reason)


#: Issue 20: ``__slots__`` (Python 3.10+), 56 bytes less per record held in memory.
_SLOTS: dict[str, t.Any] = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclasses.dataclass(**_SLOTS)
class Job:
    """One job, as a store keeps it.

    Timestamps are POSIX seconds (``time.time()``); :func:`isoformat` renders
    them as ISO 8601 UTC on the wire. ``version`` grows by one on every
    change, so a waiter can tell that something happened.
    """

    id: str
    operation: str
    method: str
    path: str
    status: JobStatus = JobStatus.PENDING
    progress: JobProgress = dataclasses.field(default_factory=JobProgress)
    created_at: float = dataclasses.field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    #: When a finished job is forgotten (POSIX seconds); ``None`` while active.
    expires_at: float | None = None
    #: Seconds a finished job is kept; copied from the operation's options.
    result_ttl: float = 3600.0
    #: Runs started so far; a run fences its writes with its number.
    attempts: int = 0
    #: Runs allowed in all: 1 + the operation's ``retries`` when it may be
    #: retried, else 1.
    max_attempts: int = 1
    #: Until when the process holding the job (queued or running) vouches
    #: for it (POSIX seconds); renewed by heartbeats. ``None``: no process
    #: holds it (a Celery job waiting in its broker).
    lease_until: float | None = None
    error: JobError | None = None
    #: HTTP status of the stored result, once there is one.
    http_status: int | None = None
    cancel_requested: bool = False
    owner: str | None = None
    #: Name of the app the job belongs to (``app.name``): only that app
    #: lists, shows, recovers and runs it, when apps share a store.
    #: ``None``: a record written without one, any app's.
    app: str | None = None
    version: int = 0
    #: Free-form data for extensions (webhook deliveries, idempotency...).
    meta: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def to_dict(self) -> dict[str, t.Any]:
        """Return a JSON-compatible dict; :meth:`from_dict` reverses it."""
        # Built by hand: dataclasses.asdict deep-copies recursively, and this
        # runs on every store write.
        progress, error = self.progress, self.error
        return {
            "id": self.id, "operation": self.operation, "method": self.method,
            "path": self.path, "status": self.status.value,
            "progress": {"percent": progress.percent, "message": progress.message},
            "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "expires_at": self.expires_at,
            "result_ttl": self.result_ttl, "attempts": self.attempts,
            "max_attempts": self.max_attempts, "lease_until": self.lease_until,
            "error": None if error is None else {
                "type": error.type, "message": error.message, "traceback": error.traceback},
            "http_status": self.http_status, "cancel_requested": self.cancel_requested,
            "owner": self.owner, "app": self.app, "version": self.version,
            "meta": copy.deepcopy(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, t.Any]) -> Job:
        data = dict(data)
        data["status"] = JobStatus(data["status"])
        data["progress"] = JobProgress(**(data.get("progress") or {}))
        error = data.get("error")
        data["error"] = JobError(**error) if error else None
        return cls(**data)


def isoformat(timestamp: float | None) -> str | None:
    """Render POSIX seconds as ISO 8601 UTC (``2026-01-31T12:00:00.123Z``)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "JOB_ID_LENGTH", "Job", "JobError", "StoredResponse", "is_valid_job_id", "isoformat",
    "new_job_id",
]
