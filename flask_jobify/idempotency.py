"""Idempotency keys: a retried submission gets the first job back.

A flagged request with ``Idempotency-Key: <key>`` becomes the job whose id
is derived from the key and the caller (:func:`job_id_for_key`). Creating
a job whose id exists fails atomically in every store
(:meth:`~flask_jobify.stores.base.JobStore.create_once`), so of concurrent
submissions, in threads or processes sharing the store, exactly one
starts the work; the others, and later retries while the job is kept
(until ``result_ttl`` after it ends), get the same ``202`` back. The same
key with a different request (method, path, query or body) is a ``422``.

Why the id is an HMAC: keys are chosen by clients and often guessable
("1", an order number), and the job id is a capability when there is no
owner loader. Keyed by a key derived from the app's ``SECRET_KEY`` (never
from ``JOBIFY_WEBHOOK_SECRET``, which webhook receivers know), the id
cannot be computed by anyone else, two
owners using the same key get different jobs, and every process of the
app derives the same id, which the cross-process guarantee needs. A random
per-process salt would break that, so without a secret the key is refused
(a server misconfiguration), as Flask does for sessions: the request gets
a ``501 idempotency_unavailable`` JSON error and the server log says which
setting is missing.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import typing as t

from .errors import IdempotencyMismatch, IdempotencyUnavailable, InvalidIdempotencyKey
from .keys import IDEMPOTENCY_PURPOSE, derive_key
from .protocol import IDEMPOTENCY_HEADER

if t.TYPE_CHECKING:
    from .capture import CapturedBody, CapturedRequest
    from .models import Job
    from .options import JobOptions
    from .state import JobifyState

#: Longest key accepted.
MAX_KEY_LENGTH = 255
#: Where a job keeps the fingerprint of the request that made it.
META_KEY = "idempotency"


def idempotency_key(headers: t.Any) -> str | None:
    """The request's idempotency key, or ``None``.

    :param headers: the request's headers (a Werkzeug ``Headers``).
    :returns: the key, 1 to :data:`MAX_KEY_LENGTH` printable ASCII
        characters, surrounding spaces removed.
    :raises InvalidIdempotencyKey: if it is empty, too long or not
        printable ASCII (bytes 0x80-0xFF, control characters), or holds a
        comma (the header was sent more than once).
    """
    keys = headers.getlist(IDEMPOTENCY_HEADER)
    if not keys:
        return None
    # A WSGI server joins repeated fields with commas (RFC 9110 section
    # 5.3), so a comma is how a key sent twice shows; keys have none.
    key = ",".join(keys).strip()
    if "," in key:
        raise InvalidIdempotencyKey(
            f"Send {IDEMPOTENCY_HEADER} once, with one key and no commas."
        )
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise InvalidIdempotencyKey(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII"
            " characters; a UUID4 is a good choice."
        )
    return key


def secret_of(app_secret: str | bytes | None) -> bytes:
    """The key that derives job ids from idempotency keys: derived from
    the app's ``SECRET_KEY`` for this purpose alone (:mod:`flask_jobify.keys`).

    Never from ``JOBIFY_WEBHOOK_SECRET``: webhook receivers know that one,
    and could then compute other clients' job ids.

    :param app_secret: the app's ``SECRET_KEY``.
    :raises IdempotencyUnavailable: (501) if the app has no ``SECRET_KEY``.
    """
    if not app_secret:
        logging.getLogger("flask_jobify").error(
            "Idempotency-Key needs the app's SECRET_KEY (the same in every process)"
            " to derive unguessable job ids; JOBIFY_WEBHOOK_SECRET is not used for it."
        )
        raise IdempotencyUnavailable()
    return derive_key(app_secret, IDEMPOTENCY_PURPOSE)


#: Headers that carry a caller's credentials, besides ``JOBIFY_DROP_HEADERS``.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")


def credentials_digest(headers: t.Any, extra: t.Iterable[str] = ()) -> str:
    """A digest of the credentials a request carries (:data:`CREDENTIAL_HEADERS`
    and the ``extra`` header names, e.g. ``JOBIFY_DROP_HEADERS``): the key
    space of a caller no owner loader names. Callers that send the same
    credentials share one; callers that send none share one with every other."""
    digest = hashlib.sha256()
    for name in sorted({*CREDENTIAL_HEADERS, *(h.lower() for h in extra)}):
        for value in headers.getlist(name):
            digest.update(name.encode() + b"\0" + value.encode("latin-1", "replace") + b"\0")
    return digest.hexdigest()


def job_id_for_key(
    secret: bytes, owner: str | None, key: str, *, credentials: str = "", app: str = ""
) -> str:
    """The job id of ``key`` sent to the app named ``app`` by ``owner`` (or,
    for ``owner=None``, by a caller sending credentials whose
    :func:`credentials_digest` is ``credentials``): 128 bits of an HMAC, in
    the shape of any other job id. Another caller with the same key, or the
    same caller at another app (apps of one factory share a ``SECRET_KEY``
    and may share a store), gets another job."""
    who = f"-{credentials}" if owner is None else f"{len(owner)}:{owner}"
    message = f"flask-jobify/idempotency\0{len(app)}:{app}\0{who}\0{key}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def fingerprint(method: str, path: str, query: str, body: CapturedBody) -> str:
    """A hash of what makes two requests the same request."""
    digest = hashlib.sha256()
    for part in (method.upper(), path, query):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(body.sha256().digest())
    return digest.hexdigest()


def check_same_request(meta: t.Mapping[str, t.Any], print_: str) -> None:
    """Refuse a key reused for another request.

    :raises IdempotencyMismatch: if the job was made by a request with
        another fingerprint.
    """
    recorded = (meta.get(META_KEY) or {}).get("fingerprint")
    if recorded is None or not hmac.compare_digest(recorded, print_):
        raise IdempotencyMismatch()




def enqueue_once(
    state: JobifyState, job: Job, captured: CapturedRequest, options: JobOptions, print_: str
) -> tuple[Job, bool] | None:
    """Store ``job`` and dispatch its first run, unless its id is claimed
    already.

    Return ``(job, True)`` when this call started it, ``(existing, False)``
    when an earlier request with the same key and the same fingerprint
    did, and ``None`` when the queue is full (the claim is then released).

    :raises IdempotencyMismatch: if the earlier request was another one.
    """
    job.meta[META_KEY] = {"fingerprint": print_}
    existing = state.store.create_once(job)
    if existing is not None:
        check_same_request(existing.meta, print_)
        if existing.owner != job.owner:  # cannot happen: the owner is in the id
            raise IdempotencyMismatch()
        return existing, False
    if not state.dispatch_new(job, captured, options):
        return None
    return job, True


__all__ = [
    "CREDENTIAL_HEADERS",
    "IDEMPOTENCY_HEADER",
    "MAX_KEY_LENGTH",
    "META_KEY",
    "check_same_request",
    "credentials_digest",
    "enqueue_once",
    "fingerprint",
    "idempotency_key",
    "job_id_for_key",
    "secret_of",
]
