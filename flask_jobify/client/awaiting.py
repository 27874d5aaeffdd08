"""The short ways to a job's response: answered inline by the submission
(``Prefer: wait=N``), or by a long-poll on the result itself
(``GET /jobs/<id>/result?wait=S``).

A fast job then costs one request, like a synchronous call, and a slow one
two (the ``202`` and the result's long-poll) instead of three or more
(status long-polls, then the result). Whatever these paths cannot tell
apart from the view's own answer (a ``404``, a ``409``, a transient
status, a network error) is left to the full protocol, which follows the
status and fetches the result knowing how the job ended.
"""
from __future__ import annotations

import math
import time
import typing as t

import requests

from ..protocol import JOB_ID_HEADER, JobStatus
from .policy import TRANSIENT_STATUSES, PollPolicy
from .transport import TRANSIENT_ERRORS, Transport

#: Answers of ``GET .../result?wait=`` left to the full protocol: the jobs
#: API's own ``404`` and ``409`` look like a view's, and a transient status
#: may be the view's stored one or a retry to make.
_AMBIGUOUS = TRANSIENT_STATUSES | {404, 409}


class ResultOptions(t.Protocol):
    """What these paths read of a :class:`~flask_jobify.client.JobAdapter`."""

    @property
    def on_progress(self) -> t.Callable[..., t.Any] | None: ...
    @property
    def progress_bar(self) -> bool: ...
    @property
    def raise_on_failure(self) -> bool: ...
    @property
    def poll(self) -> PollPolicy: ...


def inline_wait(adapter: ResultOptions, seconds: int | None, *, deadline: float | None,
                read_timeout: float | None) -> int | None:
    """Seconds to ask the server to hold the submission for the final
    response (``Prefer: wait=N``), or ``None`` not to ask.

    Not asked when ``seconds`` is ``0`` or ``None``, with
    ``raise_on_failure`` (an inline answer does not tell a failed job from
    the view's own error response), or when the call's read timeout or
    deadline would end the request first.
    """
    if not seconds or adapter.raise_on_failure:
        return None
    if read_timeout is not None and read_timeout <= seconds:
        return None
    if deadline is not None and deadline - time.monotonic() <= seconds:
        return None
    return seconds


def long_polls_result(adapter: ResultOptions, wait: float, method: str | None) -> bool:
    """Whether a job is best followed by long-polling its result: the
    poll policy allows it (``long_poll_result``), the caller wants no
    progress (no callback, no bar), no ``JobFailed`` for
    a failed job (the result alone does not say how the job ended), long
    polls at all (``wait > 0``), and the job is not a ``HEAD`` (whose
    answers have no body to hold a record)."""
    return (adapter.poll.long_poll_result
            and adapter.on_progress is None and not adapter.progress_bar
            and not adapter.raise_on_failure and wait > 0
            and (method or "GET").upper() != "HEAD")


def long_poll_result(
    transport: Transport,
    result_url: str,
    job_id: str,
    *,
    wait: float,
    deadline: float | None,
    stream: bool,
    take: t.Callable[[requests.Response], t.Any],
) -> requests.Response | None:
    """Long-poll ``GET result_url?wait=S`` until the job ends and return
    the view's response; ``None`` to follow the job the full way instead
    (an answer that may not be the stored response, an error on the way,
    ``deadline`` reached).

    :param take: keeps the job record of each ``202`` that says the job
        has not ended yet; returns nothing that matters here.
    """
    while True:
        remaining = math.inf if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            response = transport.send("GET", result_url, wait=min(wait, remaining),
                                      stream=stream, deadline=deadline, replayed=True)
        except TRANSIENT_ERRORS:
            return None
        if response.status_code == 202 and response.headers.get(JOB_ID_HEADER) == job_id:
            status = _status_of(response)
            if status is not None and not status.is_final:
                take(response)
                continue
        if response.status_code in _AMBIGUOUS or response.status_code == 202:
            response.close()
            return None
        return response


def _status_of(response: requests.Response) -> JobStatus | None:
    """The ``status`` of the job record ``response`` holds, if it holds one."""
    try:
        body = response.json()
        return JobStatus(body["status"]) if isinstance(body, dict) else None
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


__all__ = ["ResultOptions", "inline_wait", "long_poll_result", "long_polls_result"]
