"""Marshmallow schemas: the job API on the wire, in one place."""
from __future__ import annotations

import re
import typing as t
from datetime import datetime, timezone

from flask import current_app, has_app_context, url_for
from marshmallow import Schema, fields, validate

from .cursor import MAX_CURSOR_LENGTH
from .estimates import Estimate
from .models import Job, JobStatus

STATUS_VALUES = [status.value for status in JobStatus]

#: Largest ``?version=``: versions are 64-bit signed integers in every store.
MAX_VERSION = 2**63 - 1
#: Longest ``?operation=`` (an endpoint name) accepted.
MAX_OPERATION_LENGTH = 200


class AsciiInteger(fields.Integer):
    """An integer written in ASCII digits, as a query string carries it.

    ``int()`` also reads ``"\u0661"`` (Arabic-Indic one), ``" 5"`` and
    ``"5_0"``, and refuses more than 4300 digits with an error of its own:
    a query value must match ``-?[0-9]{1,20}`` first, else it is invalid.
    """

    _PATTERN = re.compile(r"-?[0-9]{1,20}")

    def _deserialize(self, value: t.Any, attr: t.Any, data: t.Any, **kwargs: t.Any) -> int:
        if isinstance(value, str) and self._PATTERN.fullmatch(value) is None:
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class AsciiFloat(fields.Float):
    """A finite decimal number in ASCII (``"2"``, ``"0.5"``), as a query
    string carries it: no ``nan``, ``inf``, exponents or non-ASCII digits."""

    _PATTERN = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value: t.Any, attr: t.Any, data: t.Any, **kwargs: t.Any) -> float:
        if isinstance(value, str) and self._PATTERN.fullmatch(value) is None:
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class Timestamp(fields.DateTime):
    """POSIX seconds dumped as ISO 8601 UTC."""

    def _serialize(self, value: t.Any, attr: t.Any, obj: t.Any, **kwargs: t.Any) -> t.Any:
        if value is None:
            return None
        moment = datetime.fromtimestamp(value, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobUrl(fields.String):
    """The URL of one of a job's endpoints, built from the job's id."""

    def __init__(self, endpoint: str, **kwargs: t.Any) -> None:
        super().__init__(attribute="id", dump_only=True, **kwargs)
        self.endpoint = endpoint

    def _serialize(self, value: t.Any, attr: t.Any, obj: t.Any, **kwargs: t.Any) -> t.Any:
        return url_for(self.endpoint, job_id=value)


def _estimate_of(job: t.Any) -> Estimate:
    """The estimate of ``job`` by its app's estimator (none outside an app)."""
    state = current_app.extensions.get("jobify") if has_app_context() else None
    if not isinstance(job, Job) or job.is_final or state is None:
        return Estimate()
    return t.cast(Estimate, state.estimates.of(job))


class EstimatedCompletion(Timestamp):
    """When the job should end: an estimate (see :mod:`flask_jobify.estimates`)."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(attribute="id", dump_only=True, allow_none=True, **kwargs)

    def _serialize(self, value: t.Any, attr: t.Any, obj: t.Any, **kwargs: t.Any) -> t.Any:
        return super()._serialize(_estimate_of(obj).completion_at, attr, obj, **kwargs)


class QueuePosition(fields.Integer):
    """1 for the next pending job to start; ``null`` unless pending."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(attribute="id", dump_only=True, allow_none=True, **kwargs)

    def _serialize(self, value: t.Any, attr: t.Any, obj: t.Any, **kwargs: t.Any) -> t.Any:
        return _estimate_of(obj).queue_position


class AppliedOptionsSchema(Schema):
    """The options a job runs with, after the client's were clamped."""

    timeout = fields.Float(
        allow_none=True, required=True,
        metadata={"description": "seconds each run may take; null: no limit"})
    resultTtl = fields.Float(
        required=True, metadata={"description": "seconds the finished job is kept"})
    fromClient = fields.List(
        fields.String(validate=validate.OneOf(["timeout", "resultTtl", "callback"])),
        required=True,
        metadata={"description": "what the client set: Prefer job-timeout, job-ttl;"
                  " X-Job-Callback"})


class ProgressSchema(Schema):
    percent = fields.Float(allow_none=True, metadata={"description": "0 to 100"})
    message = fields.String(allow_none=True)


class JobErrorSchema(Schema):
    type = fields.String(
        required=True,
        metadata={"description": "exception class name, or http_error, timeout, "
                  "cancelled, shutdown, lost"},
    )
    message = fields.String(required=True)
    traceback = fields.String(
        allow_none=True, metadata={"description": "only when errors are exposed"})


class WebhookSchema(Schema):
    url = fields.String(required=True)
    attempts = fields.Integer(required=True, metadata={"description": "deliveries tried so far"})
    lastStatus = fields.Integer(
        allow_none=True, metadata={"description": "receiver's last HTTP status"})
    lastError = fields.String(allow_none=True)
    delivered = fields.Boolean(required=True)


class JobSchema(Schema):
    """A job record, as ``GET /jobs/<id>`` returns it."""

    id = fields.String(required=True)
    operation = fields.String(required=True, metadata={"description": "the view's endpoint"})
    method = fields.String(required=True)
    path = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUS_VALUES))
    progress = fields.Nested(ProgressSchema, required=True)
    createdAt = Timestamp(attribute="created_at", required=True)
    startedAt = Timestamp(attribute="started_at", allow_none=True)
    finishedAt = Timestamp(attribute="finished_at", allow_none=True)
    expiresAt = Timestamp(attribute="expires_at", allow_none=True)
    attempts = fields.Integer(required=True, metadata={"description": "runs started so far"})
    maxAttempts = fields.Integer(
        attribute="max_attempts", required=True,
        metadata={"description": "runs allowed: 1 + retries when the operation may be retried"},
    )
    error = fields.Nested(
        JobErrorSchema, allow_none=True,
        metadata={"description": "why it failed; while a retry waits, why the last run failed"},
    )
    httpStatus = fields.Integer(attribute="http_status", allow_none=True)
    cancelRequested = fields.Boolean(attribute="cancel_requested", required=True)
    version = fields.Integer(required=True, metadata={"description": "grows on every change"})
    statusUrl = JobUrl("jobify.job_status", required=True)
    resultUrl = JobUrl("jobify.job_result", required=True)
    webhook = fields.Nested(
        WebhookSchema, attribute="meta.webhook",
        metadata={"description": "only when a callback was asked: its deliveries"},
    )
    options = fields.Nested(
        AppliedOptionsSchema, attribute="meta.options",
        metadata={"description": "the options applied (the client's, clamped to the"
                  " operation's bounds)"},
    )
    estimatedCompletionAt = EstimatedCompletion(metadata={
        "description": "an estimate of when the job ends (ISO 8601 UTC): from the progress"
        " rate when running, from the queue and recent durations of the operation when"
        " pending; null when unknown or finished"})
    queuePosition = QueuePosition(metadata={
        "description": "pending jobs only: 1 for the next to start; an estimate (null"
        " otherwise)"})


class AcceptedJobSchema(Schema):
    """The body of a ``202 Accepted`` answer."""

    jobId = fields.String(attribute="id", required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUS_VALUES))
    statusUrl = JobUrl("jobify.job_status", required=True)
    resultUrl = JobUrl("jobify.job_result", required=True)


class JobPageSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema), required=True)
    nextCursor = fields.String(
        allow_none=True, required=True,
        metadata={"description": "pass as ?cursor= for the next page; null on the last"},
    )


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable, snake_case"})
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "per-field messages, when there are any"})


class ErrorSchema(Schema):
    """The one error shape: ``{"error": {"code", "message"}}``."""

    error = fields.Nested(ErrorDetailSchema, required=True)


class WaitArgsSchema(Schema):
    wait = AsciiFloat(
        load_default=0.0,
        validate=validate.Range(min=0),
        metadata={"description": "long-poll: seconds to wait for a change (capped by the "
                  "server); ASCII decimal digits"},
    )
    version = AsciiInteger(
        validate=validate.Range(min=0, max=MAX_VERSION),
        metadata={"description": "the version the client last saw: answer at once if the "
                  "job has moved past it, else wait for the next change"},
    )


class ResultArgsSchema(Schema):
    wait = AsciiFloat(
        validate=validate.Range(min=0),
        metadata={"description": "long-poll: seconds to wait for the job to end (capped by "
                  "the server); the job's record with 202 when it has not ended by then, "
                  "instead of 409; ASCII decimal digits"},
    )


class ListArgsSchema(Schema):
    status = fields.String(validate=validate.OneOf(STATUS_VALUES))
    operation = fields.String(validate=validate.Length(max=MAX_OPERATION_LENGTH))
    limit = AsciiInteger(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(
        validate=validate.Length(max=MAX_CURSOR_LENGTH),
        metadata={"description": "nextCursor of the previous page"},
    )


__all__ = [
    "MAX_OPERATION_LENGTH",
    "MAX_VERSION",
    "STATUS_VALUES",
    "AcceptedJobSchema",
    "AppliedOptionsSchema",
    "AsciiFloat",
    "AsciiInteger",
    "ErrorDetailSchema",
    "ErrorSchema",
    "EstimatedCompletion",
    "JobErrorSchema",
    "JobPageSchema",
    "JobSchema",
    "JobUrl",
    "ListArgsSchema",
    "ProgressSchema",
    "QueuePosition",
    "ResultArgsSchema",
    "Timestamp",
    "WaitArgsSchema",
    "WebhookSchema",
]
