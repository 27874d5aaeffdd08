"""Every exception Flask-Jobify raises, rooted at :class:`JobifyError`.

HTTP errors also subclass the matching Werkzeug exception and render
themselves as the one JSON error shape Flask-Jobify uses everywhere::

    {"error": {"code": "job_not_found", "message": "No job ..."}}

so they read the same whether a handler catches them or not.
"""
from __future__ import annotations

import json
import typing as t

from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPException,
    InternalServerError,
    NotFound,
    NotImplemented,
    RequestEntityTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableEntity,
)
from werkzeug.exceptions import (
    PreconditionFailed as WerkzeugPreconditionFailed,
)
from werkzeug.wrappers import Response

from .protocol import JobifyError, error_body  # re-exported: defined here before


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: t.Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build a JSON error response in the shape used everywhere."""
    body = json.dumps(error_body(code, message, details))
    response = Response(body, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def http_exception_response(exc: HTTPException) -> Response:
    """Render any Werkzeug HTTP exception in Flask-Jobify's JSON shape."""
    if isinstance(exc, JobifyHTTPError):
        return exc.get_response()
    code = (exc.name or "error").lower().replace(" ", "_").replace("-", "_")
    message = exc.description or ""
    details = None
    data = getattr(exc, "data", None)  # webargs puts validation messages here
    if isinstance(data, dict) and "messages" in data:
        details = data["messages"]
        code, message = InvalidArgument.error_code, "Invalid arguments; see details."
    response = error_response(exc.code or 500, code, message, details=details)
    # Keep what the exception says about itself, e.g. Allow on a 405.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


class JobCancelled(JobifyError):
    """Raised inside a job by ``current_job.progress()`` once cancellation was
    requested. Let it propagate: the job then ends as ``cancelled``."""


class StoreError(JobifyError):
    """A job store could not do what was asked (bad URL, unreachable...)."""


class DuplicateJobId(StoreError):
    """A job with this id exists already (:meth:`JobStore.create
    <flask_jobify.stores.base.JobStore.create>`)."""


class ExecutorError(JobifyError):
    """An executor could not take a run: Celery's broker is unreachable.
    Nothing was dispatched. (Answered ``503 executor_unavailable``.)"""


class StoreClosed(StoreError):
    """The store was closed (``JobStore.close``): nothing will make it work
    again, so this is never retried."""


class ConfigError(JobifyError, ValueError):
    """A ``JOBIFY_*`` config key has a value of the wrong type or out of
    range. Raised by ``Jobify.init_app``, for wrong types as well as for
    wrong values, so that one ``except ValueError`` catches every bad key.

    .. versionadded:: 0.1
    """

    def __init__(self, key: str, expected: str, value: t.Any, *, secret: bool = False) -> None:
        shown = f"a {type(value).__name__}" if secret else repr(redact_url(value))
        super().__init__(f"{key} must be {expected}, not {shown}.")
        #: The config key, e.g. ``"JOBIFY_MAX_WORKERS"``.
        self.key = key
        #: What the key accepts, in words.
        self.expected = expected


def redact_url(value: t.Any) -> t.Any:
    """``value`` with the password of a URL in it replaced by ``***``
    (``redis://:***@host/0``), so that errors and logs never show it."""
    if isinstance(value, str) and "://" in value and "@" in value:
        scheme, _, rest = value.partition("://")
        userinfo, at, host = rest.rpartition("@")
        if at and ":" in userinfo:
            return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
    return value


class ConfigWarning(UserWarning):
    """A ``JOBIFY_*`` config key that has no effect: an unknown key (a
    typo), a key changed after ``init_app`` read it, or a view that
    ``JOBIFY_ALL_VIEWS`` leaves alone.

    .. versionadded:: 0.1
    """


class JobifyHTTPError(JobifyError, HTTPException):
    """An HTTP error that renders itself as Flask-Jobify's JSON error."""

    #: Short machine-readable code, the ``error.code`` of the body.
    error_code = "error"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: t.Any = None,
    ) -> None:
        super().__init__(message)
        self.extra_headers = headers or {}
        self.details = details

    def get_response(
        self, environ: t.Any = None, scope: t.Any = None
    ) -> Response:
        return error_response(
            self.code or 500,
            self.error_code,
            self.description or "",
            details=self.details,
            headers=self.extra_headers,
        )

    def get_headers(self, *args: t.Any, **kwargs: t.Any) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), *self.extra_headers.items()]


class InvalidJobFlag(JobifyHTTPError, BadRequest):
    """The ``X-Job-Flag`` or ``Prefer`` header could not be understood."""

    error_code = "invalid_job_flag"


class InvalidJobPreference(JobifyHTTPError, BadRequest):
    """A job option the client set (``Prefer: job-timeout=N`` or
    ``job-ttl=N``) is not a number of seconds.

    .. versionadded:: 0.2
    """

    error_code = "invalid_job_preference"


class InvalidJobId(JobifyHTTPError, BadRequest):
    """A job id in the URL does not have the shape of a job id."""

    error_code = "invalid_job_id"
    description = "This is not a job id: job ids are 22 URL-safe characters."


class JobNotFound(JobifyHTTPError, NotFound):
    """No such job, it expired, or the caller may not see it."""

    error_code = "job_not_found"
    description = (
        "No job with this id: it never existed, it expired, or it is not yours."
    )


class JobNotFinished(JobifyHTTPError, Conflict):
    """The result was asked for before the job ended (409 + ``Retry-After``)."""

    error_code = "job_not_finished"


class NoResult(JobifyHTTPError, Conflict):
    """The job ended without a response to replay (cancelled, timed out...)."""

    error_code = "no_result"


class QueueFull(JobifyHTTPError, ServiceUnavailable):
    """Too many jobs are waiting; retry after ``Retry-After`` seconds."""

    error_code = "queue_full"
    description = "Too many jobs are waiting to run; retry later."


class TooManyJobs(JobifyHTTPError, TooManyRequests):
    """The caller has ``JOBIFY_MAX_RUNNING_PER_OWNER`` jobs that have not
    finished; retry after ``Retry-After`` seconds (429).

    .. versionadded:: 0.1
    """

    error_code = "too_many_jobs"
    description = "You have too many jobs that have not finished; retry later."


class ShuttingDown(JobifyHTTPError, ServiceUnavailable):
    """This process is stopping and accepts no new jobs."""

    error_code = "shutting_down"
    description = "This server is shutting down and accepts no new jobs; retry."


class StoreUnavailable(JobifyHTTPError, ServiceUnavailable):
    """The job store could not be reached (a Redis outage, a locked file)."""

    error_code = "store_unavailable"
    description = "The job store is unavailable; retry later."


class ExecutorUnavailable(JobifyHTTPError, ServiceUnavailable):
    """The job could not be handed to its executor (a Celery broker outage)."""

    error_code = "executor_unavailable"
    description = "Jobs cannot be queued right now; retry later."


class PreconditionFailed(JobifyHTTPError, WerkzeugPreconditionFailed):
    """A conditional request's precondition does not hold for the stored
    result (``If-Match``, ``If-Unmodified-Since``; RFC 9110, section 13.1)."""

    error_code = "precondition_failed"


class ContentTooLarge(JobifyHTTPError, RequestEntityTooLarge):
    """The request's body is larger than a job may take: Flask's
    ``MAX_CONTENT_LENGTH``, or ``JOBIFY_MAX_SAVED_BODY`` for a job whose
    request leaves the process (RFC 9110, section 15.5.14)."""

    error_code = "content_too_large"
    description = "The request's content is too large."


class InvalidArgument(JobifyHTTPError, UnprocessableEntity):
    """A query argument or body field is invalid."""

    error_code = "invalid_argument"


class AccessDenied(JobifyHTTPError, Forbidden):
    """The caller may not use an admin surface (the dashboard, the metrics):
    see :meth:`Jobify.dashboard_access <flask_jobify.Jobify.dashboard_access>`."""

    error_code = "access_denied"


class TooManyStreams(JobifyHTTPError, ServiceUnavailable):
    """This process holds ``JOBIFY_SSE_MAX_STREAMS`` event streams already."""

    error_code = "too_many_streams"
    description = (
        "This server holds as many event streams as it may; retry after Retry-After"
        " seconds, or long-poll the job instead."
    )


class CsrfFailed(JobifyHTTPError, Forbidden):
    """A dashboard form was posted without a valid CSRF token (an old page,
    another site's form, or an expired session)."""

    error_code = "csrf_failed"
    description = (
        "The form's CSRF token is missing, expired or not this session's; reload the page.")


class AccessCheckFailed(JobifyHTTPError, InternalServerError):
    """The app's admin access check (:meth:`Jobify.dashboard_access
    <flask_jobify.Jobify.dashboard_access>`) raised: the caller is let in
    nowhere, and the server log has the exception.

    .. versionadded:: 0.2
    """

    error_code = "access_check_failed"


class MetricsUnavailable(JobifyHTTPError, ServiceUnavailable):
    """The metrics cannot be read now (``PROMETHEUS_MULTIPROC_DIR`` is gone).

    .. versionadded:: 0.2
    """

    error_code = "metrics_unavailable"


class NotRerunnable(JobifyHTTPError, Conflict):
    """A job cannot run again (:func:`flask_jobify.rerun.rerun`): it did
    not fail, or its request was not kept.

    .. versionadded:: 0.2
    """

    error_code = "not_rerunnable"


class InvalidCallback(JobifyHTTPError, BadRequest):
    """A webhook URL (``X-Job-Callback``) was refused: not http(s), not
    public, or webhooks are off on this server."""

    error_code = "invalid_callback"


class UnreadableBody(JobifyHTTPError, BadRequest):
    """The body of a request to run as a job could not be read in full: a
    broken chunked encoding, a body shorter than its ``Content-Length``."""

    error_code = "unreadable_body"
    description = (
        "The request body could not be read in full (a broken chunked encoding,"
        " or fewer bytes than Content-Length); send the request again."
    )


class InvalidIdempotencyKey(JobifyHTTPError, BadRequest):
    """An ``Idempotency-Key`` header is empty, too long or not printable."""

    error_code = "invalid_idempotency_key"


class IdempotencyUnavailable(JobifyHTTPError, NotImplemented):
    """The server has no secret to derive job ids from idempotency keys (501).

    A server misconfiguration: set ``SECRET_KEY`` (the same in every
    process). ``JOBIFY_WEBHOOK_SECRET`` is not used: receivers know it.
    """

    error_code = "idempotency_unavailable"
    description = (
        "This server cannot honour Idempotency-Key: it has no secret configured."
        " Retry without the header, or ask its operators to set SECRET_KEY."
    )


class IdempotencyMismatch(JobifyHTTPError, UnprocessableEntity):
    """An ``Idempotency-Key`` was sent again with a different request."""

    error_code = "idempotency_key_reused"
    description = (
        "This Idempotency-Key was used for a different request (method, path,"
        " query or body); use a new key for a new request."
    )


class WebhookSignatureError(JobifyError):
    """A webhook's ``X-Jobify-Signature`` does not match its body, or its
    timestamp is too old (a replay). Answer the delivery with a 400."""


__all__ = [
    "AccessCheckFailed", "AccessDenied", "ConfigError", "ConfigWarning", "ContentTooLarge",
    "CsrfFailed", "DuplicateJobId", "ExecutorError", "ExecutorUnavailable", "IdempotencyMismatch",
    "IdempotencyUnavailable", "InvalidArgument", "InvalidCallback", "InvalidIdempotencyKey",
    "InvalidJobFlag", "InvalidJobId", "InvalidJobPreference", "JobCancelled", "JobNotFinished",
    "JobNotFound", "JobifyError", "JobifyHTTPError", "MetricsUnavailable", "NoResult",
    "NotRerunnable", "PreconditionFailed", "QueueFull", "ShuttingDown", "StoreClosed",
    "StoreError", "StoreUnavailable", "TooManyJobs", "TooManyStreams", "UnreadableBody",
    "WebhookSignatureError", "error_response", "http_exception_response", "redact_url",
]
