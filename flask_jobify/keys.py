"""Keys for one purpose each, derived from the app's secrets.

Flask-Jobify never uses a configured secret directly for two things: each
use gets its own key, derived with itsdangerous' HMAC key derivation and a
purpose name as the salt, so that a value made for one purpose (a list
cursor, an idempotent job id) can never be computed or accepted for
another, and learning one derived key says nothing of the secret.

``SECRET_KEY`` is the root of everything the server alone must compute.
``JOBIFY_WEBHOOK_SECRET`` is shared with webhook receivers, so nothing but
webhook signatures is derived from it.
"""
from __future__ import annotations

import hashlib

from itsdangerous import Signer

#: Purpose of the key that derives job ids from idempotency keys.
IDEMPOTENCY_PURPOSE = "flask-jobify.idempotency-key"


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` alone, derived from ``secret``.

    It is ``HMAC-SHA256(secret, purpose + "signer")``, itsdangerous'
    ``key_derivation="hmac"`` (the scheme Flask's session signer uses with
    its own salt).

    :param secret: the root secret, e.g. the app's ``SECRET_KEY``.
    :param purpose: a name no other use of ``secret`` takes.
    :raises ValueError: if ``secret`` is empty.
    """
    if not secret:
        raise ValueError("cannot derive a key from an empty secret")
    signer = Signer(secret, salt=purpose, key_derivation="hmac", digest_method=hashlib.sha256)
    return signer.derive_key()


__all__ = ["IDEMPOTENCY_PURPOSE", "derive_key"]
