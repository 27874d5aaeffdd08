"""Acceptance: turning a request that asks for a job into a stored job and
its ``202 Accepted``.

The path, in order: the trigger (:mod:`flask_jobify.trigger`), the caller
(the owner loader), the request captured (:mod:`flask_jobify.capture`) and
filtered, the callback checked, the job id (random, or derived from an
``Idempotency-Key``), the job stored and its first run dispatched
(:meth:`JobifyState.enqueue <flask_jobify.state.JobifyState.enqueue>`),
then ``202`` with ``Location`` and ``Retry-After``, or the final response
inline when ``Prefer: wait`` is met.

Errors are raised, never returned: every refusal is a
:class:`~flask_jobify.errors.JobifyHTTPError` raised from the view, which
renders as the JSON error unless the app's own error handler for its
class or code restyles it.
"""
from __future__ import annotations

import functools
import json

from flask import Response, current_app, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as WerkzeugResponse

from .capture import capture_request
from .context import job_of_request
from .errors import (
    ContentTooLarge,
    ExecutorError,
    ExecutorUnavailable,
    QueueFull,
    ShuttingDown,
    StoreError,
    StoreUnavailable,
)
from .idempotency import (
    credentials_digest,
    enqueue_once,
    fingerprint,
    idempotency_key,
    job_id_for_key,
    secret_of,
)
from .models import Job, JobStatus, new_job_id
from .options import JobOptions
from .preferences import AppliedOptions, apply_options, asked_options, preferences_applied
from .replay import replay_response
from .serving import max_wait, wait_until_final
from .signals import job_accepted
from .signals import send as send_signal
from .state import JobifyState
from .trigger import JOB_FLAG_HEADER, JOB_ID_HEADER, MAX_WAIT_HEADER, JobTrigger, parse_trigger
from .webhooks import CALLBACK_HEADER, callback_meta

__all__ = ["accept", "accept_if_asked"]

def accept_if_asked(state: JobifyState, options: JobOptions) -> WerkzeugResponse | None:
    """Accept the current request as a job if it asks to be one; ``None``
    if it does not (or is the job's own run): the view runs as usual.

    :raises JobifyHTTPError: as :func:`accept`, and
        :class:`~flask_jobify.errors.InvalidJobFlag` for a bad ``X-Job-Flag``.
    """
    if job_of_request() is not None:
        return None  # this is the job's own run
    trigger = parse_trigger(request.headers)
    if trigger is None:
        return None
    return accept(state, trigger, options)


def accept(state: JobifyState, trigger: JobTrigger, options: JobOptions) -> WerkzeugResponse:
    """Accept the current request as a job of ``options``' operation.

    :returns: ``202 Accepted`` with the job's record, or the job's final
        response when it ends within ``Prefer: wait``.
    :raises ShuttingDown: ``503``, the process is stopping.
    :raises QueueFull: ``503``, the executor's queue is full.
    :raises StoreUnavailable: ``503``, the store failed.
    :raises ExecutorUnavailable: ``503``, Celery's broker is unreachable.
    :raises JobifyHTTPError: ``400``/``413``/``422`` for a request the job
        cannot keep (its body, callback or ``Idempotency-Key``).
    """
    retry_after = {"Retry-After": str(state.settings.retry_after)}
    applied = apply_options(asked_options(request.headers), options,  # client-set options
                            default_timeout=state.settings.default_timeout,
                            default_result_ttl=state.settings.result_ttl)
    options = applied.options
    if state.closed:
        raise ShuttingDown(headers=retry_after)
    try:
        job, created = _store_and_dispatch(state, options, retry_after, applied)
    except StoreError:
        current_app.logger.exception("Flask-Jobify could not store a job")
        raise StoreUnavailable(headers=retry_after) from None
    except ExecutorError:
        raise ExecutorUnavailable(headers=retry_after) from None
    if created:
        send_signal(job_accepted, current_app._get_current_object(), job=job)  # type: ignore[attr-defined]
    longest, capped = max_wait(state, request.environ)
    if trigger.wait and longest > 0:
        current = wait_until_final(state, functools.partial(state.store.wait, job.id), job,
                                   min(trigger.wait, longest))
        stored = state.store.get_result(job.id) if current and current.is_final else None
        if stored is not None:
            return replay_response(stored, request.environ,
                                   response_class=current_app.response_class,
                                   head_only=job.method == "HEAD")
    response = _accepted_response(job, trigger, retry_after, replayed=not created,
                                  applied=applied)
    if capped and trigger.wait and trigger.wait > longest:
        response.headers[MAX_WAIT_HEADER] = f"{longest:g}"
    return response


def _store_and_dispatch(
    state: JobifyState, options: JobOptions, retry_after: dict[str, str],
    applied: AppliedOptions,
) -> tuple[Job, bool]:
    """Make the job of the current request, store it and dispatch its first
    run. Return it, and whether this request made it (``False``: an
    earlier request with the same ``Idempotency-Key`` did)."""
    owner = state.current_owner()
    try:
        captured = state.capture_filtered(
            capture_request(request, spool_threshold=state.settings.spool_threshold))
    except RequestEntityTooLarge:
        raise ContentTooLarge(
            "The request's content is longer than this server's MAX_CONTENT_LENGTH.",
        ) from None
    callback = request.headers.get(CALLBACK_HEADER) or options.callback
    meta = callback_meta(callback, request.url_root)
    meta["options"] = applied.record()
    if options.see_other if options.see_other is not None else state.settings.see_other:
        meta["seeOther"] = True  # GET /jobs/<id> answers 303 once it succeeded
    key = idempotency_key(request.headers)
    job_id = new_job_id() if key is None else job_id_for_key(
        secret_of(current_app.secret_key), owner, key,
        credentials="" if owner is not None else credentials_digest(
            request.headers, state.settings.drop_headers),
        app=state.name,
    )
    job = Job(
        id=job_id,
        operation=request.endpoint or "",
        method=request.method,
        path=request.path,
        result_ttl=state.result_ttl_of(options),
        owner=owner,
        app=state.name,
        meta=meta,
    )
    state.webhooks.check_callback(job)
    state.prepare(job, captured, options)
    if key is None:
        if not state.enqueue(job, captured, options):
            raise QueueFull(headers=retry_after)
        return job, True
    print_ = fingerprint(request.method, request.path,
                         request.query_string.decode("latin-1"), captured.body)
    outcome = enqueue_once(state, job, captured, options, print_)
    if outcome is None:
        raise QueueFull(headers=retry_after)
    return outcome


def _accepted_response(
    job: Job, trigger: JobTrigger, headers: dict[str, str], *, replayed: bool = False,
    applied: AppliedOptions | None = None,
) -> Response:
    # AcceptedJobSchema's shape, written out: one url_for instead of three
    # and no schema walk on the hottest path (tests/test_accept.py holds
    # it to the schema). A replayed Idempotency-Key gets the very body the
    # first request got.
    status_url = url_for("jobify.job_status", job_id=job.id)
    body = {
        "jobId": job.id,
        "status": JobStatus.PENDING.value if replayed else job.status.value,
        "statusUrl": status_url,
        "resultUrl": status_url + "/result",
    }
    response = Response(json.dumps(body), status=202, mimetype="application/json")
    response_headers = response.headers
    response_headers.update(headers)
    response_headers["Location"] = status_url
    response_headers[JOB_FLAG_HEADER] = "ON"
    response_headers[JOB_ID_HEADER] = job.id
    honoured = ["respond-async"] if trigger.via == "prefer" else []
    if replayed:  # the first request's job: the options it runs with
        honoured += preferences_applied(job.meta.get("options"))
    elif applied is not None:
        honoured += applied.preferences_applied()
    if honoured:  # RFC 7240 section 3: exactly the preferences honoured
        response_headers["Preference-Applied"] = ", ".join(honoured)
    if replayed:
        response_headers["Idempotent-Replayed"] = "true"
    return response
