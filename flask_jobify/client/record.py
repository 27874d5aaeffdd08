"""Job records as the client takes them in: checked once, where they enter,
so that nothing further on meets a field of the wrong type."""
from __future__ import annotations

import math
import typing as t

import requests

from ..protocol import JobStatus
from .exceptions import JobClientError, JobRecord

#: The statuses a job record may have.
STATUSES = frozenset(status.value for status in JobStatus)

#: Fields of a job record or a ``202`` body that are URLs (strings), when present.
URL_FIELDS = ("statusUrl", "resultUrl")


def json_object(response: requests.Response) -> dict[str, t.Any] | None:
    """The JSON object ``response`` holds, or ``None`` when it holds none."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def job_record(response: requests.Response, *, job: JobRecord | None = None) -> JobRecord:
    """The job record ``response`` holds (``GET /jobs/<id>``, or the answer
    to its ``DELETE``), checked: ``status`` one of :class:`~flask_jobify.JobStatus`,
    ``id`` a string, ``version`` an integer >= 0, ``progress`` an object
    whose ``percent`` is a finite number and ``message`` a string,
    ``resultUrl`` a string, ``httpStatus`` an HTTP status code, ``error``
    an object and ``method`` a string. Each may be absent, and each but
    ``status`` and ``version`` may be ``null``.

    :param job: the last record seen, for the exception.
    :raises JobClientError: ``response`` holds no job record, or a
        malformed one; the exception's ``response`` is that answer.
    """
    record = json_object(response)
    if record is None or "status" not in record:
        raise JobClientError(
            f"{response.url} did not answer with a job record.", response=response, job=job
        )
    problem = record_problem(record)
    if problem is not None:
        raise JobClientError(
            f"{response.url} answered a malformed job record ({problem}): is it a"
            " Flask-Jobify server?", response=response, job=job,
        )
    return record


def accepted_body(response: requests.Response) -> dict[str, t.Any]:
    """The JSON body of a ``202 Accepted`` (``{}`` when it has none), with
    ``jobId``, ``statusUrl`` and ``resultUrl`` checked to be strings.

    :raises JobClientError: one of them is not; the exception's
        ``response`` is the ``202``.
    """
    body = json_object(response) or {}
    for name in ("jobId", *URL_FIELDS):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise JobClientError(
                f"The 202 Accepted from {response.url} is malformed ({name} is"
                f" {type(body[name]).__name__}, not a string).", response=response,
            )
    return body


def record_problem(record: t.Mapping[str, t.Any]) -> str | None:
    """What is wrong with a job record, or ``None`` when nothing is."""
    status = record.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        return f"status {_short(status)} is not one of {', '.join(sorted(STATUSES))}"
    for name in ("id", "method", "statusUrl", "resultUrl"):
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} is {type(record[name]).__name__}, not a string"
    version = record.get("version", 0)  # absent: a server that does not long-poll
    if not (_is_int(version) and version >= 0):
        return f"version {_short(version)} is not an integer >= 0"
    http_status = record.get("httpStatus")
    if http_status is not None and not (_is_int(http_status) and 100 <= http_status <= 599):
        return f"httpStatus {_short(http_status)} is not an HTTP status code"
    if record.get("error") is not None and not isinstance(record["error"], dict):
        return f"error is {type(record['error']).__name__}, not an object"
    progress = record.get("progress")
    if progress is None:
        return None
    if not isinstance(progress, dict):
        return f"progress is {type(progress).__name__}, not an object"
    percent = progress.get("percent")
    if percent is not None and not _is_finite_number(percent):
        return f"progress.percent {_short(percent)} is not a finite number"
    message = progress.get("message")
    if message is not None and not isinstance(message, str):
        return f"progress.message is {type(message).__name__}, not a string"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _short(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's digit limit
        return f"(a {type(value).__name__} too long to show)"
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["STATUSES", "URL_FIELDS", "accepted_body", "job_record", "json_object", "record_problem"]
