"""Who may use Flask-Jobify's admin surfaces: the dashboard and the metrics.

Both show every job the caller may see and steer them, so they are closed
unless the app says otherwise: with
:meth:`Jobify.dashboard_access <flask_jobify.Jobify.dashboard_access>`, a
function of no arguments, run in the request, that returns whether the
caller may use them. Without one, only a request from this machine
(``127.0.0.1`` or ``::1``) to an app in debug mode may, as with Flask's
debugger, and not one that came through a proxy (it carries a
``Forwarded`` or ``X-Forwarded-For`` header): a proxy on this machine
would let anyone in.
"""
from __future__ import annotations

import logging
import typing as t

from flask import current_app, request

from .errors import AccessCheckFailed, AccessDenied

__all__ = [
    "FORWARDING_HEADERS",
    "LOCAL_ADDRESSES",
    "AccessCheck",
    "admin_allowed",
    "is_local_request",
    "require_admin",
]

logger = logging.getLogger(__name__)

#: Returns whether the caller of the current request may use the admin
#: surfaces (it may be a coroutine function: Flask's ``ensure_sync`` runs it).
AccessCheck = t.Callable[[], t.Any]

#: The addresses a debug app lets in without an access check.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1"})
#: Headers a proxy adds: a request that carries one was forwarded.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def is_local_request() -> bool:
    """Whether the current request comes from this machine: its socket's
    peer (before any ``ProxyFix``) is a loopback address and it carries none
    of :data:`FORWARDING_HEADERS`, so neither a proxy on this machine
    forwarding someone else nor a caller spoofing ``X-Forwarded-For`` counts
    as local. Needs a request context.

    .. versionadded:: 0.1
    """
    environ = request.environ
    original = environ.get("werkzeug.proxy_fix.orig") or {}
    peer = original.get("REMOTE_ADDR", environ.get("REMOTE_ADDR"))
    if peer not in LOCAL_ADDRESSES:
        return False
    return not any(request.headers.get(name) for name in FORWARDING_HEADERS)


def admin_allowed(check: AccessCheck | None) -> bool:
    """Whether the caller of the current request may use the admin surfaces:
    what ``check`` returns or, without one, whether the app is in debug mode
    and the request comes from this machine (:func:`is_local_request`).
    Needs a request context.

    :raises AccessCheckFailed: (``500``, JSON) if ``check`` raises (logged).
    """
    if check is not None:
        try:
            return bool(current_app.ensure_sync(check)())
        except Exception:
            logger.exception("The admin access check (Jobify.dashboard_access) raised")
            raise AccessCheckFailed(
                "The app's access check failed, so nobody is let in; the server log has"
                " the details.") from None
    return bool(current_app.debug) and is_local_request()


def require_admin(check: AccessCheck | None) -> None:
    """Raise :class:`~flask_jobify.errors.AccessDenied` (``403``, JSON)
    unless :func:`admin_allowed`."""
    if not admin_allowed(check):
        raise AccessDenied(
            "This page is for the app's administrators: the app allows it with"
            " @jobify.dashboard_access (or, without one, in debug mode from this machine).")
