"""The request hooks and the view wrapper: where a request meets the
extension. A jobifiable view's wrapper hands a request that asks for a job
to :mod:`flask_jobify.accept`; the hooks start the process's background
work, answer routing errors under the jobs prefix in JSON, make every view
jobifiable with ``JOBIFY_ALL_VIEWS``, and add ``Vary``."""
from __future__ import annotations

import functools
import typing as t
import warnings

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from .accept import accept_if_asked
from .errors import ConfigWarning, JobifyHTTPError, http_exception_response
from .options import OPTIONS_ATTR, JobOptions, looks_decorated, options_of
from .state import JobifyState
from .trigger import VARY_HEADERS, asks_for_job

__all__ = [
    "View",
    "after_request",
    "before_request",
    "jobified",
    "render_errors",
]

View = t.Callable[..., t.Any]


def _state() -> JobifyState:
    return t.cast(JobifyState, current_app.extensions["jobify"])


def jobified(view: View, options: JobOptions) -> View:
    """``view``, run as a job of ``options`` when the request asks for one."""

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        g._jobify_vary = True  # for after_request, and for an error of a job's streamed body
        if asks_for_job(request.environ):  # else: the view, at the cost of a dict look-up
            response = accept_if_asked(_state(), options)
            if response is not None:
                return response
        return current_app.ensure_sync(view)(*args, **kwargs)

    setattr(wrapper, OPTIONS_ATTR, options)
    return wrapper


def render_errors(app: Flask) -> None:
    """Render the :class:`~flask_jobify.errors.JobifyHTTPError` raised by
    the acceptance in their JSON shape, unless the app has a handler for
    that class already.

    Flask looks for a handler by status code first, then along the
    exception's classes: an app's handler for a code (``503``) or for a
    subclass (``QueueFull``) restyles them, while a catch-all
    ``HTTPException`` handler (flask-smorest's ``Api`` registers one) does
    not reshape the errors that Flask-Jobify's clients read.
    """
    handlers = app.error_handler_spec[None][None]
    if JobifyHTTPError not in handlers:
        app.register_error_handler(JobifyHTTPError, _render)


def _render(exc: JobifyHTTPError) -> WerkzeugResponse:
    return exc.get_response()


def before_request() -> WerkzeugResponse | None:
    """Start this process's background work (a comparison once started);
    answer a routing error under the jobs prefix in JSON; wrap every view
    at the first request with ``JOBIFY_ALL_VIEWS``.

    A request that is not a job pays for a few attribute look-ups here and
    in :func:`after_request`."""
    state = _state()
    routing_error = request.routing_exception
    if routing_error is None:
        state.start()
        if state.settings.all_views and not state.all_views_wrapped:
            _wrap_all_views(state)
        return None
    prefix = state.settings.url_prefix
    # Under the jobs prefix every answer is JSON: an unknown path, a
    # wrong method, a bad Host header, a redirect to a merged slash.
    if isinstance(routing_error, HTTPException) and (
        request.path == prefix or request.path.startswith(prefix.rstrip("/") + "/")
    ):
        return http_exception_response(routing_error)
    return None


#: ``Vary`` of a response that had none: one header write instead of a
#: parse and a dump per name.
_VARY = ", ".join(VARY_HEADERS)


def after_request(response: Response) -> Response:
    """Add ``Vary: Prefer, X-Job-Flag`` to the answers of jobifiable views
    (their error responses included): their wrapper marks the request's
    ``g``, which the error response of a job's streamed body keeps too.
    One look-up on other requests; one header write on these."""
    if not g.get("_jobify_vary"):
        return response
    if "Vary" not in response.headers:
        response.headers["Vary"] = _VARY
    else:
        response.vary.update(VARY_HEADERS)
    return response


def _wrap_all_views(state: JobifyState) -> None:
    """Make every view jobifiable (``JOBIFY_ALL_VIEWS``), once per app.

    Done at the first request: Flask refuses new routes after it, so
    every view is known by then. The jobs blueprint and static files
    are left alone, and so are views that look decorated
    (:func:`~flask_jobify.options.looks_decorated`): a wrapper around a
    ``@login_required`` view would accept a job before the guard runs,
    so they stay synchronous, with one
    :class:`~flask_jobify.errors.ConfigWarning` that names them.
    """
    if state.all_views_wrapped:
        return
    with state.wrap_lock:
        if state.all_views_wrapped:
            return
        app = state.app
        options = JobOptions()
        skipped = []
        for endpoint, view in list(app.view_functions.items()):
            if endpoint == "static" or endpoint.startswith("jobify.") or options_of(view):
                continue
            if looks_decorated(view):
                skipped.append(endpoint)
                continue
            app.view_functions[endpoint] = jobified(view, options)
        state.all_views_wrapped = True
    if skipped:
        warnings.warn(
            "JOBIFY_ALL_VIEWS leaves these decorated views synchronous, because their"
            " decorators (a guard such as @login_required) must run before a job is"
            f" accepted: {', '.join(sorted(skipped))}. Put @jobify.job below the"
            " decorators of those that should run as jobs.",
            ConfigWarning, stacklevel=3)
