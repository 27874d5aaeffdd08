"""Who may use Flask-Jobify's admin surfaces: the dashboard and the metrics.

Both show every job the caller may see and steer them, so they are closed
unless the app says otherwise: with
:meth:`Jobify.dashboard_access <flask_jobify.Jobify.dashboard_access>`, a
function of no arguments, run in the request, that returns whether the
caller may use them. Without one, only a request from this machine
(``127.0.0.1`` or ``::1``) to an app in debug mode may, as with Flask's
debugger.
"""
from __future__ import annotations

import typing as t

from flask import current_app, request

from .errors import AccessDenied

__all__ = ["LOCAL_ADDRESSES", "AccessCheck", "admin_allowed", "require_admin"]

#: Returns whether the caller of the current request may use the admin
#: surfaces (it may be a coroutine function: Flask's ``ensure_sync`` runs it).
AccessCheck = t.Callable[[], t.Any]

#: The addresses a debug app lets in without an access check.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1"})


def admin_allowed(check: AccessCheck | None) -> bool:
    """Whether the caller of the current request may use the admin surfaces:
    what ``check`` returns or, without one, whether the app is in debug mode
    and the request comes from this machine. Needs a request context."""
    if check is not None:
        return bool(current_app.ensure_sync(check)())
    return bool(current_app.debug) and request.remote_addr in LOCAL_ADDRESSES


def require_admin(check: AccessCheck | None) -> None:
    """Raise :class:`~flask_jobify.errors.AccessDenied` (``403``, JSON)
    unless :func:`admin_allowed`."""
    if not admin_allowed(check):
        raise AccessDenied(
            "This page is for the app's administrators: the app allows it with"
            " @jobify.dashboard_access (or, without one, in debug mode from this machine).")
