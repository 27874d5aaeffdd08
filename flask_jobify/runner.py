"""Running a captured request through the app, as the job's own request."""
from __future__ import annotations

import dataclasses
import logging
import sys
import traceback
import typing as t

from flask import Flask, Response
from werkzeug.exceptions import InternalServerError

from .capture import CapturedRequest
from .context import JobHandle, _current_job_var
from .errors import JobCancelled
from .models import JobError, StoredResponse

logger = logging.getLogger("flask_jobify")

#: Headers that describe one connection, not the response: never stored.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "content-length",
    }
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What running a job's request produced."""

    #: The view's response, or ``None`` if the job was cancelled.
    response: StoredResponse | None
    #: Why it failed, when an exception escaped the view.
    error: JobError | None = None
    cancelled: bool = False


def run_request(
    app: Flask, captured: CapturedRequest, handle: JobHandle, *, expose_errors: bool
) -> Outcome:
    """Dispatch ``captured`` through ``app`` with ``current_job`` set to
    ``handle``: the app's hooks, the view and its error handlers run as they
    would for a live request. Return the frozen response."""
    ctx = app.request_context(captured.to_environ())
    ctx.push()
    token = _current_job_var.set(handle)
    error: BaseException | None = None
    try:
        try:
            response = app.full_dispatch_request()
        except JobCancelled as exc:
            error = exc
            return Outcome(None, cancelled=True)
        except Exception as exc:
            error = exc
            response = _render_exception(app, exc)
            return Outcome(freeze_response(response), _job_error(exc, expose_errors))
        return Outcome(freeze_response(response), cancelled=handle.noticed_cancel)
    finally:
        _current_job_var.reset(token)
        ctx.pop(error)


def freeze_response(response: Response) -> StoredResponse:
    """Read a response whole (status, headers, body bytes) and close it."""
    try:
        response.direct_passthrough = False
        body = response.get_data()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP]
        return StoredResponse(response.status_code, headers, body)
    finally:
        response.close()


def replay_response(stored: StoredResponse) -> Response:
    """Rebuild the response a job's view gave."""
    response = Response(stored.body, status=stored.status)
    response.headers.clear()
    for name, value in stored.headers:
        response.headers.add(name, value)
    response.content_length = len(stored.body)
    return response


def _render_exception(app: Flask, exc: Exception) -> Response:
    """Render an exception the view let escape, as the app would in
    production: its 500 handler, or the default page."""
    try:
        return app.handle_exception(exc)
    except Exception:
        # PROPAGATE_EXCEPTIONS (testing, debug) re-raises instead of
        # rendering; a job has nobody to propagate to.
        app.log_exception(sys.exc_info())
        rv = app.handle_http_exception(InternalServerError(original_exception=exc))
        return app.finalize_request(rv, from_error_handler=True)


def _job_error(exc: Exception, expose: bool) -> JobError:
    if expose:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return JobError(type(exc).__name__, str(exc), trace)
    return JobError(
        type(exc).__name__,
        "The view raised an exception; the server log has the details.",
    )
