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

__all__ = ["FORWARDING_HEADERS", "LOCAL_ADDRESSES", "AccessCheck", "admin_allowed",
           "require_admin"]

logger = logging.getLogger(__name__)

#: Returns whether the caller of the current request may use the admin
#: surfaces (it may be a coroutine function: Flask's ``ensure_sync`` runs it).
AccessCheck = t.Callable[[], t.Any]

#: The addresses a debug app lets in without an access check.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1"})
#: Headers of a request that came through a proxy: no access check lets it in.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For")


def admin_allowed(check: AccessCheck | None) -> bool:
    """Whether the caller of the current request may use the admin surfaces:
    what ``check`` returns or, without one, whether the app is in debug mode
    and the request comes from this machine, not through a proxy. Needs a
    request context.

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
    return (bool(current_app.debug) and request.remote_addr in LOCAL_ADDRESSES
            and not any(name in request.headers for name in FORWARDING_HEADERS))


def require_admin(check: AccessCheck | None) -> None:
    """Raise :class:`~flask_jobify.errors.AccessDenied` (``403``, JSON)
    unless :func:`admin_allowed`."""
    if not admin_allowed(check):
        raise AccessDenied(
            "This page is for the app's administrators: the app allows it with"
            " @jobify.dashboard_access (or, without one, in debug mode from this machine).")
