"""CSRF tokens for the dashboard's forms (cancel, re-run).

A token is a random value kept in the app's session, signed with
itsdangerous (which Flask itself uses for its session) under the app's
``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``): a form posted from another
site carries no token its session signed, so it is refused. Bound to the
session rather than a double-submit cookie because the session is already
signed by the same key, so a sibling subdomain that can set cookies still
cannot forge one. Tokens last :data:`MAX_AGE` seconds.
"""
from __future__ import annotations

import hmac
import secrets

from flask import current_app, session
from itsdangerous import BadData, URLSafeTimedSerializer

from ..errors import CsrfFailed

#: Session key of the random value the tokens sign.
SESSION_KEY = "_jobify_csrf"
#: Form field that carries the token.
FIELD = "csrf_token"
#: Seconds a token stays valid.
MAX_AGE = 12 * 3600
_SALT = "flask-jobify.dashboard.csrf"


def _serializer() -> URLSafeTimedSerializer | None:
    keys = [*(current_app.config.get("SECRET_KEY_FALLBACKS") or ()), current_app.secret_key]
    keys = [key for key in keys if key]
    if not keys or not current_app.secret_key:
        return None
    return URLSafeTimedSerializer(keys, salt=_SALT)


def csrf_token() -> str | None:
    """A token for the current session's forms; ``None`` when the app has
    no ``SECRET_KEY`` (no session: the dashboard is then read-only)."""
    serializer = _serializer()
    if serializer is None:
        return None
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(18)
    return serializer.dumps(session[SESSION_KEY])


def check_csrf(token: str | None) -> None:
    """Return if ``token`` was signed for the current session.

    :raises CsrfFailed: (403, JSON) otherwise, or without a ``SECRET_KEY``.
    """
    serializer = _serializer()
    if serializer is None:
        raise CsrfFailed("The dashboard's actions need the app's SECRET_KEY (for the CSRF"
                         " token in its session); set it.")
    expected = session.get(SESSION_KEY)
    try:
        value = serializer.loads(token or "", max_age=MAX_AGE)
    except BadData:
        raise CsrfFailed() from None
    if not isinstance(expected, str) or not isinstance(value, str) or not hmac.compare_digest(
            value, expected):
        raise CsrfFailed()

__all__ = [
    "FIELD",
    "MAX_AGE",
    "SESSION_KEY",
    "check_csrf",
    "csrf_token",
]
