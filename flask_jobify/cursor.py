"""List cursors: where the next page of ``GET /jobs`` starts, signed.

A cursor is the ``(created_at, id)`` of the last job of a page, serialised
by itsdangerous' :class:`~itsdangerous.URLSafeSerializer` and signed with
a key derived from the app's ``SECRET_KEY`` for this one purpose (the salt
``CURSOR_SALT``), so it cannot be confused with a session cookie or any
other signed value of the app. ``SECRET_KEY_FALLBACKS`` are honoured, so
cursors survive a key rotation.

Without a ``SECRET_KEY`` the cursor is signed with a fixed, public key
(``PUBLIC_KEY``): the signature then catches a truncated or mangled
cursor but not a forged one. That is acceptable because a cursor carries
no authority: it only says where a page starts, and every job of the page
is still checked against the caller. Either way a cursor is decoded only
after its signature and length are checked, and its contents are checked
for type and range before the store sees them.
"""
from __future__ import annotations

import math
import typing as t

from itsdangerous import BadData, URLSafeSerializer

from .errors import InvalidArgument
from .models import Job, is_valid_job_id

#: itsdangerous salt: keys cursors apart from every other use of SECRET_KEY.
CURSOR_SALT = "flask-jobify.list-cursor"
#: Signs cursors when the app has no ``SECRET_KEY``; catches corruption only.
PUBLIC_KEY = b"flask-jobify: no SECRET_KEY, cursors are checked but not secret"
#: Longest cursor read; those this module writes are under 100 characters.
MAX_CURSOR_LENGTH = 512


def encode_cursor(job: Job, secret_keys: t.Sequence[str | bytes]) -> str:
    """The cursor of the page that starts after ``job``.

    :param secret_keys: the app's keys, oldest first, newest (the one that
        signs) last; empty for none (see ``PUBLIC_KEY``).
    :returns: URL-safe ASCII, ``payload.signature``.
    """
    return _serializer(secret_keys).dumps([job.created_at, job.id])


def decode_cursor(cursor: str, secret_keys: t.Sequence[str | bytes]) -> tuple[float, str]:
    """Read a cursor made by :func:`encode_cursor`.

    :param secret_keys: as for :func:`encode_cursor`; any of them may have
        signed it.
    :returns: ``(created_at, job_id)``: POSIX seconds, finite; a job id.
    :raises InvalidArgument: (422) for anything else: too long, not
        signed by the app, not the JSON it signs (a deeply nested or
        compressed payload), a non-finite or non-numeric time, an id
        that is not shaped like one.
    """
    try:
        if len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            raise ValueError("not a cursor")
        created_at, job_id = _serializer(secret_keys).loads(cursor)
        if isinstance(created_at, bool) or not isinstance(created_at, (int, float)):
            raise TypeError("created_at is not a number")
        if not isinstance(job_id, str):
            raise TypeError("job_id is not a string")
        if not math.isfinite(created_at):
            raise ValueError("created_at is not finite")
        if not is_valid_job_id(job_id):
            raise ValueError("not a job id")
        return float(created_at), job_id
    except (BadData, ValueError, TypeError, OverflowError):  # OverflowError: 10**309
        raise InvalidArgument(
            "cursor is not a nextCursor this server gave out; start again without it.",
            details={"cursor": ["Invalid cursor."]},
        ) from None


def _serializer(secret_keys: t.Sequence[str | bytes]) -> URLSafeSerializer:
    keys = [key if isinstance(key, bytes) else key.encode() for key in secret_keys if key]
    return URLSafeSerializer(keys or [PUBLIC_KEY], salt=CURSOR_SALT)


__all__ = [
    "CURSOR_SALT",
    "MAX_CURSOR_LENGTH",
    "PUBLIC_KEY",
    "decode_cursor",
    "encode_cursor",
]
