"""The dashboard: ``{JOBIFY_URL_PREFIX}/ui``, off unless ``JOBIFY_DASHBOARD``.

Server-rendered pages with a little JavaScript, all shipped in the
package (no build step, nothing loaded from the internet): a live table of
jobs with filters and paging, a page per job, cancel (one or several),
re-run, counts and a chart of the last hour. Live updates come from the
event streams (:mod:`flask_jobify.events`).

An admin surface: every request goes through ``state.require_admin()``
(:meth:`Jobify.dashboard_access <flask_jobify.Jobify.dashboard_access>`;
``403 access_denied`` otherwise), and shows only the jobs the owner
loader lets the caller see. Its actions are ``POST`` forms with a CSRF
token (:mod:`flask_jobify.dashboard.csrf`).
"""
from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from ..cursor import decode_cursor, encode_cursor
from ..errors import InvalidArgument, JobNotFound, StoreError, http_exception_response
from ..models import Job, JobStatus, is_valid_job_id, isoformat
from ..schemas import MAX_OPERATION_LENGTH, STATUS_VALUES
from ..stores.base import NO_OWNER
from . import stats as stats_module
from .csrf import FIELD, check_csrf, csrf_token

if t.TYPE_CHECKING:
    from ..state import JobifyState

#: Jobs per page of the table.
PAGE_SIZE = 50
#: Jobs one bulk cancel may name.
MOST_CANCELLED = 200
#: The pages' Content-Security-Policy: the package's own script, stylesheet
#: and event streams only, and no framing (clickjacking).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self';"
                           " img-src 'self' data:; connect-src 'self'; object-src 'none';"
                           " base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _state() -> JobifyState:
    return t.cast("JobifyState", current_app.extensions["jobify"])


def _owner(state: JobifyState) -> t.Any:
    owner = state.current_owner()
    return NO_OWNER if owner is None else owner


def _secret_keys() -> list[str | bytes]:
    from ..views import _secret_keys as secret_keys

    return secret_keys()


def _filters() -> tuple[str | None, str | None]:
    status, operation = request.args.get("status") or None, request.args.get("operation") or None
    if status is not None and status not in STATUS_VALUES:
        raise InvalidArgument(f"status must be one of: {', '.join(STATUS_VALUES)}.")
    if operation is not None and len(operation) > MAX_OPERATION_LENGTH:
        raise InvalidArgument(f"operation is longer than {MAX_OPERATION_LENGTH} characters.")
    return status, operation


def _visible(state: JobifyState, job_id: str) -> Job:
    job = state.store.get(job_id) if is_valid_job_id(job_id) else None
    if job is None or not state.may_see(job):
        raise JobNotFound()
    return job


def _duration(job: Job) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at if job.finished_at is not None else None
    if end is None:
        return "running"
    return f"{end - job.started_at:.2f} s"


def _back(default: str) -> str:
    """``?next=`` or the form's ``next``, when it is a path of this
    dashboard (never another site: no open redirect); else ``default``."""
    target = request.form.get("next") or ""
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return default  # a control character would not even fit a header
    parts = urlsplit(target)
    base = url_for("jobify_ui.jobs")
    if parts.scheme or parts.netloc or not parts.path.startswith(base):
        return default
    return target


def create_dashboard_blueprint() -> Blueprint:
    """Build the dashboard's blueprint (one per app), mounted at
    ``{JOBIFY_URL_PREFIX}/ui``."""
    bp = Blueprint("jobify_ui", __name__, template_folder="templates",
                   static_folder="static", static_url_path="/static")

    @bp.before_request
    def guard() -> None:
        _state().require_admin()
        if request.method == "POST":
            check_csrf(request.form.get(FIELD))

    def store_unavailable(exc: StoreError) -> WerkzeugResponse:
        from ..views import _store_unavailable

        return _store_unavailable(exc)

    @bp.after_request
    def harden(response: WerkzeugResponse) -> WerkzeugResponse:
        # An admin page: never framed (its buttons clicked for the admin by
        # another site), only its own scripts, never kept by a shared cache.
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "jobify_ui.static":
            response.headers["Cache-Control"] = "no-store"
        return response

    bp.register_error_handler(HTTPException, http_exception_response)
    bp.register_error_handler(StoreError, store_unavailable)

    @bp.context_processor
    def helpers() -> dict[str, t.Any]:
        state = _state()
        return {
            "csrf_token": csrf_token, "csrf_field": FIELD, "isoformat": isoformat,
            "duration": _duration, "statuses": STATUS_VALUES,
            "prefix": state.settings.url_prefix, "app_name": current_app.name,
        }

    @bp.get("/")
    def jobs() -> str:
        """The live table of jobs, newest first, with filters and paging."""
        state = _state()
        status, operation = _filters()
        cursor = request.args.get("cursor") or None
        after = decode_cursor(cursor, _secret_keys()) if cursor else None
        page = state.store.list(owner=_owner(state), limit=PAGE_SIZE + 1, after=after,
                                app=state.name, status=JobStatus(status) if status else None,
                                operation=operation)
        next_cursor = (encode_cursor(page[PAGE_SIZE - 1], _secret_keys())
                       if len(page) > PAGE_SIZE else None)
        events = url_for("jobify.events", status=status, operation=operation)
        return render_template("jobify/jobs.html", jobs=page[:PAGE_SIZE], status=status,
                               operation=operation, next_cursor=next_cursor,
                               first_page=cursor is None, events_url=events)

    @bp.get("/stats")
    def stats() -> str:
        """The counts and the chart (a fragment the table page refreshes)."""
        state = _state()
        figures = stats_module.compute(state, _owner(state))
        return render_template("jobify/_stats.html", stats=figures,
                               chart=Markup(stats_module.chart_svg(figures)))

    @bp.get("/<job_id>")
    def job(job_id: str) -> str:
        """One job: timeline, progress, error, webhook deliveries, result."""
        state = _state()
        record = _visible(state, job_id)
        rerunnable = (record.status is JobStatus.FAILED
                      and state.store.load_request(record.id) is not None)
        return render_template(
            "jobify/job.html", job=record, rerunnable=rerunnable,
            events_url=url_for("jobify.job_events", job_id=record.id),
            result_url=url_for("jobify.job_result", job_id=record.id),
            webhook=record.meta.get("webhook"), rerun_of=record.meta.get("rerun_of"))

    @bp.post("/cancel")
    def cancel() -> WerkzeugResponse:
        """Cancel the jobs named by the form's ``job`` fields (one or many)
        that the caller may see and that are still active."""
        state = _state()
        ids = request.form.getlist("job")[:MOST_CANCELLED]
        for job_id in ids:
            try:
                record = _visible(state, job_id)
            except JobNotFound:
                continue
            if not record.is_final:
                state.cancel(record)
        return redirect(_back(url_for("jobify_ui.jobs")), 303)

    @bp.post("/<job_id>/rerun")
    def rerun_job(job_id: str) -> WerkzeugResponse:
        """Run a failed job again from its saved request; go to the new job."""
        from ..rerun import rerun

        state = _state()
        record = _visible(state, job_id)
        new = rerun(state, record.id)
        return redirect(url_for("jobify_ui.job", job_id=new.id), 303)

    return bp


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "MOST_CANCELLED",
    "PAGE_SIZE",
    "create_dashboard_blueprint",
]
