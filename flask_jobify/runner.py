"""Running a captured request through the app, as the job's own request.

A run does what Flask's ``wsgi_app`` and a WSGI server do for the same
request, in the same order, so that the stored response is the one the
client would have received synchronously:

1. in a new :class:`contextvars.Context` (no app or request context, no
   ``g`` of an earlier run or of the executor's own), push a request
   context for the captured request: the app's ``before_request`` hooks,
   the view, its error handlers and ``after_request`` hooks run once;
2. pop it: ``teardown_request`` and ``teardown_appcontext`` run;
3. call the response as a WSGI application and read its body, as a server
   does (werkzeug sends no body for ``HEAD``, ``204`` and ``304``; a
   ``response_class`` of the app's may add headers in ``__call__``); a
   streamed generator runs then.

Every exception on the way ends in an :class:`Outcome`; nothing escapes.
"""
from __future__ import annotations

import contextvars
import dataclasses
import logging
import sys
import traceback
import typing as t

from flask import Flask, g
from werkzeug.exceptions import InternalServerError
from werkzeug.wrappers import Response

from .capture import CapturedRequest
from .context import JOB_ENVIRON_KEY, JobHandle, _current_job_var
from .errors import JobCancelled
from .models import JobError, StoredResponse

logger = logging.getLogger("flask_jobify")

#: Headers that describe one connection, not the response: never stored
#: (RFC 9110, section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade",
    }
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one run of a job's request produced."""

    #: The response to keep, or ``None`` if the run was cancelled.
    response: StoredResponse | None
    #: Why it failed, when an exception escaped the view, its body, the
    #: app's hooks or the freezing of the response.
    error: JobError | None = None
    #: The run stopped because it was cancelled (or timed out, or taken over).
    cancelled: bool = False


def run_request(
    app: Flask,
    captured: CapturedRequest,
    handle: JobHandle,
    *,
    expose_errors: bool,
    keep_cookies: bool,
) -> Outcome:
    """Run ``captured`` through ``app`` with ``current_job`` set to
    ``handle``, as described in this module, and freeze the response.

    :param expose_errors: put exception messages and tracebacks in the
        outcome's error (``JOBIFY_EXPOSE_ERRORS``).
    :param keep_cookies: keep ``Set-Cookie`` headers in the stored
        response (``JOBIFY_RESULT_COOKIES``); else they are dropped before
        anything is stored.
    """
    run = _Run(app, captured, handle, expose_errors=expose_errors, keep_cookies=keep_cookies)
    return contextvars.Context().run(run.outcome)


class _Run:
    def __init__(self, app: Flask, captured: CapturedRequest, handle: JobHandle, *,
                 expose_errors: bool, keep_cookies: bool) -> None:
        self.app = app
        self.captured = captured
        self.handle = handle
        self.expose_errors = expose_errors
        self.keep_cookies = keep_cookies
        #: The view's ``g``, kept for rendering an error of its body.
        self.g: dict[str, t.Any] = {}

    def environ(self) -> dict[str, t.Any]:
        environ = self.captured.to_environ()
        environ[JOB_ENVIRON_KEY] = self.handle  # current_job in copied contexts
        return environ

    def outcome(self) -> Outcome:
        _current_job_var.set(self.handle)
        environ = self.environ()
        try:
            response, failure = self.dispatch(environ)
            try:
                stored = freeze_response(response, environ, keep_cookies=self.keep_cookies)
            except JobCancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - a streamed body raised
                failure = failure or exc
                stored = self.render_failure(exc)
        except JobCancelled:
            return Outcome(None, cancelled=True)
        if failure is not None:
            return Outcome(stored, self.job_error(failure))
        return Outcome(stored, cancelled=self.handle.noticed_cancel)

    def dispatch(self, environ: dict[str, t.Any]) -> tuple[Response, Exception | None]:
        """Flask's ``wsgi_app`` up to the body: the response and the first
        exception that escaped the view, the app's hooks or its teardown."""
        app = self.app
        ctx = app.request_context(environ)
        error: BaseException | None = None
        failure: Exception | None = None
        response: Response | None = None
        try:
            try:
                ctx.push()
                self.g = vars(g)  # the view's g: for rendering an error of its body
                response = app.full_dispatch_request()
            except JobCancelled as exc:
                error = exc
                raise
            except Exception as exc:  # noqa: BLE001 - an after_request hook, or PROPAGATE_EXCEPTIONS
                error = failure = exc
                response = _render_exception(app, exc)
            except BaseException as exc:
                error = exc
                raise
        finally:
            if error is not None and app.should_ignore_error(error):
                error = None
            try:
                ctx.pop(error)
            except Exception as exc:  # a teardown function raised
                app.logger.error("Exception in a teardown function of a job's request",
                                 exc_info=exc)
                if failure is None:
                    # Synchronously the server answers a bare 500: the app's
                    # context is gone.
                    failure, response = exc, InternalServerError().get_response(environ)
        assert response is not None
        return response, failure

    def render_failure(self, exc: Exception) -> StoredResponse:
        """The app's rendering of an exception raised after the view
        returned (while its body was read), in a request context of its own
        that has the view's ``g``, as an error handler would synchronously."""
        environ = self.environ()
        ctx = self.app.request_context(environ)
        ctx.push()
        vars(g).update(self.g)
        try:
            response = _render_exception(self.app, exc)
            return freeze_response(response, environ, keep_cookies=self.keep_cookies)
        except Exception:
            self.app.logger.exception("Could not render the error of a job")
            return freeze_response(InternalServerError().get_response(environ), environ,
                                   keep_cookies=False)
        finally:
            try:
                ctx.pop(exc)
            except Exception:
                self.app.logger.exception("Exception in a teardown function of a job's request")

    def job_error(self, exc: Exception) -> JobError:
        if self.expose_errors:
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return JobError(type(exc).__name__, str(exc), trace)
        return JobError(
            type(exc).__name__,
            "The view raised an exception; the server log has the details.",
        )


def freeze_response(
    response: Response, environ: t.Mapping[str, t.Any], *, keep_cookies: bool = True
) -> StoredResponse:
    """Read a response whole, as a WSGI server would send it to the client
    of ``environ`` (status line, headers, body bytes), and close it.

    :raises Exception: whatever a streamed body raises.
    """
    sent: list[t.Any] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: t.Any = None) -> t.Callable[[bytes], object]:
        sent[:] = [status, headers]
        return _no_write

    app_iter = response(dict(environ), start_response)
    try:
        body = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    status, headers = sent
    kept = [
        (name, value) for name, value in headers
        if name.lower() not in HOP_BY_HOP and (keep_cookies or name.lower() != "set-cookie")
    ]
    code, _, reason = status.partition(" ")
    stored = StoredResponse(int(code), kept, body)
    if reason and reason != stored.status_line.partition(" ")[2]:
        stored = dataclasses.replace(stored, reason=reason)
    return stored


def _no_write(data: bytes) -> object:
    raise RuntimeError("A job's response must not use the WSGI write() callable.")


def _render_exception(app: Flask, exc: Exception) -> Response:
    """Render an exception as the app would in production: its error
    handlers for 500, or the default page. Never raises: if the app's own
    500 handler fails, the answer is a bare 500, as a server's would be."""
    try:
        return app.handle_exception(exc)
    except Exception:  # noqa: BLE001 - logged below; never raises
        # PROPAGATE_EXCEPTIONS (testing, debug) re-raises instead of
        # rendering; a job has nobody to propagate to.
        app.log_exception(sys.exc_info())
    try:
        rv = app.handle_http_exception(InternalServerError(original_exception=exc))
        return app.finalize_request(rv, from_error_handler=True)
    except Exception:
        app.logger.exception("The app's 500 error handler failed")
        return InternalServerError().get_response()


__all__ = [
    "HOP_BY_HOP", "Outcome", "freeze_response", "run_request",
]
