"""What a job's end means for the caller: the view's response, or an exception."""
from __future__ import annotations

import typing as t

import requests

from ..protocol import JobStatus
from .exceptions import (
    JobClientError,
    JobFailed,
    JobLost,
    JobRecord,
    JobTimedOut,
    JobWasCancelled,
)
from .transport import Transport, error_code


def fetch_result(
    record: JobRecord,
    result_url: str,
    transport: Transport,
    *,
    deadline: float | None,
    stream: bool,
    raise_on_failure: bool,
    last_status: requests.Response | None = None,
    method: str | None = None,
    job_id: str | None = None,
) -> requests.Response | None:
    """The stored response of a job that ended as ``record`` says.

    The result of a ``HEAD`` job is fetched with ``HEAD``: the server
    answers with the stored headers (``Content-Length`` included) and no
    body, as the view would have (RFC 9110 section 9.3.2).

    :param method: the method of the request that started the job, when
        known; else the record's ``method``.
    :param job_id: the job's id, when the record may lack it (the
        ``X-Job-Id`` of the ``202``, or the status URL's last segment).

    A record without ``httpStatus`` (a server that does not say) takes
    any ``2xx`` answer as the result.

    :return: the view's response, replayed by the server; ``None`` when
        ``deadline`` passed before it could be fetched.
    :raises JobWasCancelled: for a ``cancelled`` job.
    :raises JobTimedOut: for a ``timed_out`` job.
    :raises JobFailed: for a ``failed`` job with ``raise_on_failure``, or
        one that left no response.
    :raises JobLost: the job or its result is gone.
    """
    job_id = job_id or record.get("id") or ""
    status = JobStatus(record["status"])
    if status is JobStatus.CANCELLED:
        raise JobWasCancelled(f"Job {job_id} was cancelled.", job=record, response=last_status)
    if status is JobStatus.TIMED_OUT:
        raise JobTimedOut(
            f"Job {job_id} ran past its time limit on the server.",
            job=record, response=last_status,
        )
    expected = record.get("httpStatus")
    head = (method or record.get("method") or "GET").upper() == "HEAD"
    response = transport.send_with_retries(
        "HEAD" if head else "GET", result_url, stream=stream, deadline=deadline,
        expected_status=expected, job=record, replayed=True,
    )
    if response is None:
        return None
    stored = (response.status_code == expected if expected is not None
              else 200 <= response.status_code < 300)
    if not stored:
        # Not the stored response (it has the recorded status): the jobs
        # endpoint's own answer.
        if response.status_code == 409 and error_code(response) == "no_result":
            raise JobFailed(failure_message(record, job_id), job=record, response=response)
        raise unexpected_answer(record, response, job_id=job_id)
    if status is JobStatus.FAILED and raise_on_failure:
        raise JobFailed(failure_message(record, job_id), job=record, response=response)
    return response


def unexpected_answer(
    record: JobRecord, response: requests.Response, *, job_id: str | None = None
) -> JobClientError:
    """The exception for an answer of the jobs endpoints that is not the
    one asked for: :class:`JobLost` for a 404.

    :param job_id: the job's id, when ``record`` may not hold it yet (a
        job resumed from its status URL).
    """
    job_id = job_id or record.get("id") or ""
    if response.status_code == 404:
        return JobLost(
            f"The server no longer knows job {job_id}: it expired, was"
            " deleted, or is not yours.", job=record or None, response=response,
        )
    return JobClientError(
        f"Unexpected {response.status_code} from {response.url}"
        f" ({error_code(response) or 'no error code'}).",
        job=record or None, response=response,
    )


def client_timeout(record: JobRecord, status_url: str, *, cancelled: bool,
                   last_status: requests.Response | None,
                   result_url: str | None = None, job_id: str | None = None) -> JobTimedOut:
    """The exception for the client's time running out: while the job was
    active, or, once it had ended, before its result came (``result_url``).

    :param job_id: the job's id, when ``record`` may not hold it yet (no
        status answer came).
    """
    job_id = job_id or record.get("id") or ""
    state = record.get("status")
    if state not in (None, "pending", "running"):
        return JobTimedOut(
            f"Job {job_id} ended ({state}) but its result did not arrive in time; fetch"
            f" it from {result_url or status_url} (RemoteJob.result()) before it expires.",
            job=record or None, response=last_status,
        )
    advice = "; it was cancelled." if cancelled else (
        f": it goes on; resume it from {status_url} or cancel it."
    )
    return JobTimedOut(
        f"Job {job_id} did not end in time"
        f" ({f'{state} on the server' if state else 'no status seen yet'}){advice}",
        job=record or None, response=last_status,
    )


def failure_message(record: JobRecord, job_id: str | None = None) -> str:
    """Why a failed job failed, in one line (``job_id`` when the record
    may lack it)."""
    error: t.Mapping[str, t.Any] = record.get("error") or {}
    reason = error.get("message") or "no reason given"
    status = record.get("httpStatus")
    answer = f" with HTTP {status}" if status else ""
    return f"Job {job_id or record.get('id') or ''} failed{answer}: {reason}"


__all__ = ["client_timeout", "failure_message", "fetch_result", "unexpected_answer"]
