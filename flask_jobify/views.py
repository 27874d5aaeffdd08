"""The jobs blueprint: status, long-poll, result, cancel and list."""
from __future__ import annotations

import typing as t

from flask import Response, current_app, g, request, url_for
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from .cursor import decode_cursor, encode_cursor
from .errors import (
    InvalidJobId,
    JobNotFinished,
    JobNotFound,
    NoResult,
    StoreError,
    StoreUnavailable,
    http_exception_response,
)
from .estimates import LISTING_FLAG
from .models import Job, JobStatus, StoredResponse, is_valid_job_id
from .replay import replay_response
from .schemas import (
    ErrorSchema,
    JobPageSchema,
    JobSchema,
    ListArgsSchema,
    ResultArgsSchema,
    WaitArgsSchema,
)
from .serving import max_wait, wait_until_final, wait_while_serving
from .stores.base import NO_OWNER
from .trigger import JOB_ID_HEADER, MAX_WAIT_HEADER

if t.TYPE_CHECKING:
    from .state import JobifyState

_View = t.Callable[..., t.Any]
_SEE_OTHER_HEADERS = {"Location": {"description": "The job's result URL", "required": True,
                                   "schema": {"type": "string"}}}


class _DocumentingBlueprint(t.Protocol):
    """What this module uses of flask-smorest's ``Blueprint``, typed (the
    package has no annotations). Each decorator wraps a view: ``arguments``
    changes how it is called, so the wrapper is only known to be a view."""

    def register_error_handler(
        self, code_or_exception: type[Exception] | int, f: t.Callable[..., t.Any]
    ) -> None: ...

    def route(self, rule: str, **options: t.Any) -> t.Callable[[_View], _View]: ...

    def arguments(self, schema: t.Any, **options: t.Any) -> t.Callable[[_View], _View]: ...

    def response(self, status_code: int, schema: t.Any = None,
                 **options: t.Any) -> t.Callable[[_View], _View]: ...

    def alt_response(self, status_code: int,
                     **options: t.Any) -> t.Callable[[_View], _View]: ...


def _state() -> JobifyState:
    return t.cast("JobifyState", current_app.extensions["jobify"])


def _job_id(job_id: str) -> str:
    """``job_id``, if it is shaped like one; else 400."""
    if not is_valid_job_id(job_id):
        raise InvalidJobId()
    return job_id


def _visible(job: Job | None) -> Job:
    """``job``, if it exists and the caller may see it; else 404."""
    if job is None or not _state().may_see(job):
        raise JobNotFound()
    return job


def _visible_job(job_id: str) -> Job:
    """The job, if it exists and the caller may see it; else 400 or 404."""
    return _visible(_state().store.get(_job_id(job_id)))


def _visible_jobs(
    state: JobifyState, limit: int, after: tuple[float, str] | None, **filters: t.Any
) -> list[Job]:
    """Up to ``limit`` jobs the caller may see, newest first: the caller's
    own, or, for a caller without an owner (anonymous while others have
    one, or no owner loader at all), the jobs without one. One store call,
    on the store's index of that owner (see
    :meth:`~flask_jobify.stores.base.JobStore.list`)."""
    owner = state.current_owner()
    return state.store.list(owner=NO_OWNER if owner is None else owner, limit=limit,
                            after=after, app=state.name, **filters)


def _retry_after(job: Job) -> dict[str, str]:
    return {} if job.is_final else {"Retry-After": str(_state().settings.retry_after)}


def _status_headers(job: Job, capped: bool, longest: float) -> dict[str, str]:
    """``Retry-After`` for an unfinished job, and the longest wait this
    server allows when it capped the one asked (one request at a time)."""
    headers = _retry_after(job)
    if capped:
        headers[MAX_WAIT_HEADER] = f"{longest:g}"
    return headers


def _status_answer(job: Job, capped: bool, longest: float) -> tuple[Job, int, dict[str, str]]:
    """The record with :func:`_status_headers`; ``303 See Other`` to the
    result for a succeeded job of an operation with ``see_other``
    (``JOBIFY_SEE_OTHER``)."""
    headers = _status_headers(job, capped, longest)
    if job.status is JobStatus.SUCCEEDED and job.meta.get("seeOther"):
        headers["Location"] = url_for("jobify.job_result", job_id=job.id)
        return job, 303, headers
    return job, 200, headers


def _secret_keys() -> list[str | bytes]:
    """The app's ``SECRET_KEY_FALLBACKS`` then its ``SECRET_KEY``, set ones only."""
    keys = [*(current_app.config.get("SECRET_KEY_FALLBACKS") or ()), current_app.secret_key]
    return [key for key in keys if key]


def _store_unavailable(exc: StoreError) -> WerkzeugResponse:
    current_app.logger.error("Flask-Jobify store error: %s", exc)
    retry_after = str(_state().settings.retry_after)
    return StoreUnavailable(headers={"Retry-After": retry_after}).get_response()


def _await_end(
    state: JobifyState, job: Job, wait: float
) -> tuple[Job, StoredResponse | None, bool, float]:
    """Wait up to ``wait`` seconds (capped as for a status long-poll) for
    the active ``job`` to end. Return it as it is then, its stored
    response once it has ended, whether the wait was capped, and the
    longest wait allowed.

    :raises JobNotFound: the job went away meanwhile.
    """
    longest, capped = max_wait(state, request.environ)
    capped = capped and wait > longest
    # Watched before the read: no change between the read and the wait slips by.
    with state.store.watching(job.id) as wait_for_change:
        current = state.store.get(job.id)
        if current is not None:
            current = wait_until_final(state, wait_for_change, current, min(wait, longest))
    if current is None:
        raise JobNotFound()
    stored = state.store.get_result(current.id) if current.is_final else None
    return current, stored, capped, longest


def create_jobs_blueprint() -> Blueprint:
    """Build the jobs blueprint (one per app, so apps share no state)."""
    bp: _DocumentingBlueprint = Blueprint(
        "jobify", __name__, description="Jobs: status, long-poll, result, cancel and list."
    )
    bp.register_error_handler(HTTPException, http_exception_response)
    bp.register_error_handler(StoreError, _store_unavailable)
    errors = {404: "No such job (or not yours)", 400: "Not a job id"}

    @bp.route("", methods=["GET"])
    @bp.arguments(ListArgsSchema, location="query", as_kwargs=True)
    @bp.response(200, JobPageSchema)
    @bp.alt_response(422, schema=ErrorSchema, description="Invalid query argument")
    def list_jobs(limit: int, status: str | None = None, operation: str | None = None,
                  cursor: str | None = None) -> dict[str, t.Any]:
        """List jobs, newest first.

        Only the caller's own jobs when an owner loader is set.
        """
        setattr(g, LISTING_FLAG, True)
        jobs = _visible_jobs(
            _state(),
            limit + 1,
            decode_cursor(cursor, _secret_keys()) if cursor else None,
            status=JobStatus(status) if status else None,
            operation=operation,
        )
        next_cursor = encode_cursor(jobs[limit - 1], _secret_keys()) if len(jobs) > limit else None
        return {"jobs": jobs[:limit], "nextCursor": next_cursor}

    @bp.route("/<job_id>", methods=["GET"])
    @bp.arguments(WaitArgsSchema, location="query", as_kwargs=True)
    @bp.response(200, JobSchema)
    @bp.alt_response(303, schema=JobSchema, headers=_SEE_OTHER_HEADERS, description=(
        "The job succeeded and its operation answers with See Other (JOBIFY_SEE_OTHER):"
        " its result is at Location; the body is the job's record"))
    @bp.alt_response(404, schema=ErrorSchema, description=errors[404])
    @bp.alt_response(400, schema=ErrorSchema, description=errors[400])
    @bp.alt_response(422, schema=ErrorSchema, description="Invalid query argument")
    def job_status(job_id: str, wait: float, version: int | None = None) -> t.Any:
        """Get a job's record.

        With ``?wait=S`` (long-poll), answer as soon as the job's status or
        progress changes or the job ends, or after ``S`` seconds (capped by
        ``JOBIFY_MAX_WAIT``, or by ``JOBIFY_BLOCKING_MAX_WAIT`` on a server
        that serves one request at a time, which the answer's
        ``X-Job-Max-Wait`` then tells). With ``&version=N`` (the version
        the client last saw), a job already past ``N`` is answered at
        once, so no change between two polls goes unseen. A process that
        stops answers its long-polls at once, with the job as it is. A
        succeeded job answers ``303 See Other`` to its result when its
        operation asks for it (``JOBIFY_SEE_OTHER``).
        """
        state = _state()
        longest, capped = max_wait(state, request.environ)
        capped = capped and wait > longest
        wait = min(wait, longest)
        if wait <= 0 or state.stopping:
            return _status_answer(_visible_job(job_id), capped, longest)
        # Watched before the read: the wait sleeps without reading again.
        with state.store.watching(_job_id(job_id)) as wait_for_change:
            job = _visible(state.store.get(job_id))
            seen = job.version if version is None else version
            if not job.is_final and job.version == seen:
                changed = wait_while_serving(state, wait_for_change, job, wait)
                if changed is None:
                    raise JobNotFound()
                job = changed
        return _status_answer(job, capped, longest)

    @bp.route("/<job_id>/result", methods=["GET"])
    @bp.arguments(ResultArgsSchema, location="query", as_kwargs=True)
    @bp.response(200, description="The view's own response, replayed: status, headers, body")
    @bp.alt_response(202, schema=JobSchema,
                     description="With ?wait=: the job had not ended when the wait ran out")
    @bp.alt_response(409, schema=ErrorSchema, description="Not finished yet, or no result")
    @bp.alt_response(404, schema=ErrorSchema, description=errors[404])
    @bp.alt_response(400, schema=ErrorSchema, description=errors[400])
    @bp.alt_response(422, schema=ErrorSchema, description="Invalid query argument")
    def job_result(job_id: str, wait: float | None = None) -> t.Any:
        """Get the response of a finished job, as the view gave it.

        With ``?wait=S`` (long-poll), wait up to ``S`` seconds (capped as
        for the status) for the job to end, and answer with its response
        as soon as it does; a job still active then is answered with its
        record and ``202``, as the status endpoint gives it (with
        ``Location`` and ``X-Job-Id``), instead of ``409``.
        """
        state = _state()
        job, stored = state.store.get_with_result(_job_id(job_id))  # one round trip
        job = _visible(job)
        if not job.is_final and wait is not None:
            job, stored, capped, longest = _await_end(state, job, wait)
            if not job.is_final:
                headers = _status_headers(job, capped, longest)
                headers["Location"] = url_for("jobify.job_status", job_id=job.id)
                headers[JOB_ID_HEADER] = job.id
                return job, 202, headers
        if not job.is_final:
            raise JobNotFinished(
                f"Job {job.id} is {job.status.value}; ask again after Retry-After seconds.",
                headers=_retry_after(job),
            )
        if stored is None:
            raise NoResult(f"Job {job.id} ended as {job.status.value} and has no response.")
        return replay_response(stored, request.environ,
                               response_class=current_app.response_class,
                               head_only=job.method == "HEAD")

    @bp.route("/<job_id>", methods=["DELETE"])
    @bp.response(200, JobSchema, description="A pending job, now cancelled")
    @bp.alt_response(202, schema=JobSchema, description="A running job, asked to stop")
    @bp.alt_response(204, description="A finished job, now forgotten")
    @bp.alt_response(404, schema=ErrorSchema, description=errors[404])
    @bp.alt_response(400, schema=ErrorSchema, description=errors[400])
    def cancel_job(job_id: str) -> t.Any:
        """Cancel a job, or forget a finished one.

        Pending: cancelled, never runs (200). Running: cancellation
        requested; the job ends as ``cancelled`` once the view notices (202).
        Finished: removed with its result (204).
        """
        state = _state()
        job = _visible_job(job_id)
        if not job.is_final:
            changed = state.cancel(job)
            if changed is not None:
                return changed, 200 if changed.is_final else 202
        state.store.delete(job.id)
        return Response(status=204)

    return bp


__all__ = [
    "create_jobs_blueprint",
]
