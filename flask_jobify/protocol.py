"""What the server and the client agree on, with no Flask import: header
names, RFC 7240 ``Prefer`` parsing, job statuses, progress, the JSON error
shape, and the root exception.

This module imports only the standard library, so that
:mod:`flask_jobify.client` works where only requests is installed. The
server side imports from here; nothing here imports from the server side.

.. versionadded:: 0.1
"""
from __future__ import annotations

import dataclasses
import enum
import re
import typing as t

#: Header a client sets to ``ON`` to run a request as a job.
JOB_FLAG_HEADER = "X-Job-Flag"
#: Header carrying the id of the job a 202 created.
JOB_ID_HEADER = "X-Job-Id"
#: Sent when a wait the client asked for was cut to this many seconds
#: because the server serves one request at a time per process
#: (``JOBIFY_BLOCKING_MAX_WAIT``).
MAX_WAIT_HEADER = "X-Job-Max-Wait"
#: Header naming the URL the server calls when the job ends.
CALLBACK_HEADER = "X-Job-Callback"
#: Header making a submission idempotent (IETF draft
#: ``draft-ietf-httpapi-idempotency-key-header``).
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: ``Prefer`` preference a client sends to ask for a shorter time limit than
#: the operation's, in seconds (``Prefer: respond-async, job-timeout=30``).
PREFER_JOB_TIMEOUT = "job-timeout"
#: ``Prefer`` preference a client sends to choose how long the finished job
#: is kept, in seconds, within the operation's bounds.
PREFER_JOB_TTL = "job-ttl"
#: Headers whose value decides whether a response is a job: sent in ``Vary``.
VARY_HEADERS = ("Prefer", JOB_FLAG_HEADER)

#: RFC 9110 section 5.6.2 ``token``: the only names a preference can have.
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: RFC 9111 section 1.2.2 ``delta-seconds``: ASCII digits only.
_DELTA_SECONDS_RE = re.compile(r"[0-9]+")
#: RFC 9111 section 1.2.2: a larger ``delta-seconds`` is read as this.
MAX_DELTA_SECONDS = 2**31


class JobifyError(Exception):
    """Root of every Flask-Jobify exception, the server's and the client's."""


class JobStatus(str, enum.Enum):
    """Where a job is in its life.

    ``pending`` and ``running`` are *active*; every other status is *final*
    and never changes again.
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self not in ACTIVE_STATUSES

    def __str__(self) -> str:
        return self.value


#: Statuses that may still change.
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
#: Statuses that never change again.
FINAL_STATUSES = frozenset(set(JobStatus) - ACTIVE_STATUSES)


@dataclasses.dataclass(frozen=True)
class JobProgress:
    """Progress published from inside a job through ``current_job``, and
    what the client's progress callbacks receive."""

    percent: float | None = None
    message: str | None = None


def error_body(code: str, message: str, details: t.Any = None) -> dict[str, t.Any]:
    """Return the JSON error document: ``{"error": {"code", "message"}}``,
    with ``details`` when given."""
    error: dict[str, t.Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_code_of(document: t.Any) -> str | None:
    """The ``error.code`` of a decoded JSON error document, or ``None`` when
    ``document`` does not have the shape :func:`error_body` gives."""
    error = document.get("error") if isinstance(document, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def parse_prefer(values: t.Iterable[str]) -> dict[str, str]:
    """Parse ``Prefer`` header values into ``{token: value}`` (RFC 7240).

    Tokens are lower-cased; parameters after ``;`` are dropped, as no
    preference used here takes any. The first occurrence of a token wins,
    across repeated ``Prefer`` fields too (RFC 7240 section 2). A
    preference whose name is not an RFC 9110 ``token`` (non-ASCII bytes,
    control characters, spaces) cannot be understood and is left out, as
    RFC 7240 asks; so is one whose value holds such characters.

    :param values: every ``Prefer`` field of the request, as Werkzeug
        decodes them (Latin-1, so any byte reads as one character).
    :returns: ``{"respond-async": "", "wait": "5"}`` for
        ``Prefer: respond-async, wait=5``.
    """
    preferences: dict[str, str] = {}
    for header in values:
        for item in header.split(","):
            pref = item.split(";", 1)[0].strip()
            if not pref:
                continue
            token, _, value = pref.partition("=")
            token, value = token.strip().lower(), value.strip().strip('"')
            if _TOKEN_RE.fullmatch(token) is None or not _is_visible_ascii(value):
                continue
            preferences.setdefault(token, value)
    return preferences


def parse_delta_seconds(value: str | None) -> int | None:
    """Read RFC 9111 ``delta-seconds`` (section 1.2.2): ASCII digits.

    :returns: the seconds, capped at :data:`MAX_DELTA_SECONDS` as the RFC
        asks for larger values; ``None`` for a missing value or anything
        but ASCII digits (``"\u00b2"``, ``"1.5"``, ``"-1"``, ``" 5"``).
    """
    if value is None or _DELTA_SECONDS_RE.fullmatch(value) is None:
        return None
    if len(value) > len(str(MAX_DELTA_SECONDS)):  # int() refuses very long strings
        return MAX_DELTA_SECONDS
    return min(int(value), MAX_DELTA_SECONDS)


def _is_visible_ascii(value: str) -> bool:
    """Whether ``value`` is printable ASCII (RFC 9110 VCHAR and spaces)."""
    return value.isascii() and value.isprintable()


__all__ = [
    "ACTIVE_STATUSES",
    "CALLBACK_HEADER",
    "FINAL_STATUSES",
    "IDEMPOTENCY_HEADER",
    "JOB_FLAG_HEADER",
    "JOB_ID_HEADER",
    "MAX_DELTA_SECONDS",
    "MAX_WAIT_HEADER",
    "PREFER_JOB_TIMEOUT",
    "PREFER_JOB_TTL",
    "VARY_HEADERS",
    "JobProgress",
    "JobStatus",
    "JobifyError",
    "error_body",
    "error_code_of",
    "parse_delta_seconds",
    "parse_prefer",
]
