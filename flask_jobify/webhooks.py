"""Webhooks: tell a client's URL when its job ends, signed.

A client asks with ``X-Job-Callback: https://...`` on the flagged request
(or an operation names a default, ``@jobify.job(callback=...)``). When the
job reaches a final status, the job record (as ``GET /jobs/<id>`` gives
it, with absolute ``statusUrl`` and ``resultUrl``) is POSTed there with::

    X-Jobify-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">

keyed by the receiver's secret, as Stripe signs its events. Receivers
check it with :func:`verify`. The secret of a delivery is, first found:
what ``@jobify.callback_secret_loader`` returns for ``(url, job)``; the
operation's ``@jobify.job(callback_secret=...)`` when the URL is that
operation's own ``callback``; ``JOBIFY_WEBHOOK_SECRET``. A URL with none
of them is refused at submission (``400 invalid_callback``). Each receiver
with a secret of its own can only verify what was meant for it: a client
that names its own URL never gets a delivery signed with another
receiver's secret.

Callback URLs are checked twice against SSRF: at submission (a 400
``invalid_callback``) and again at each delivery, whose connection goes to
the very address that was checked (no second DNS lookup to rebind) and
never follows redirects.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import typing as t
from urllib.parse import urljoin, urlsplit

from flask import Flask

from .backoff import backoff_delay
from .callback_url import resolve_public, split_callback
from .errors import InvalidCallback, WebhookSignatureError
from .models import Job
from .options import options_of
from .perprocess import PerProcess
from .protocol import CALLBACK_HEADER  # re-exported: defined here before
from .schemas import JobSchema
from .signals import job_finished, webhook_delivered
from .signals import send as send_signal
from .stores.base import JobStore
from .threadpool import ThreadPool

if t.TYPE_CHECKING:
    from .config import Settings

logger = logging.getLogger("flask_jobify")

#: Header of a delivery that carries its signature.
SIGNATURE_HEADER = "X-Jobify-Signature"
#: Where a job keeps its webhook and its delivery record, in ``job.meta``.
META_KEY = "webhook"
#: ``(url, job) -> secret | None``: the secret of one receiver
#: (``@jobify.callback_secret_loader``).
SecretLoader: t.TypeAlias = "t.Callable[[str, Job], str | bytes | None]"
#: Receiver answers worth another try besides 5xx.
_RETRY_STATUSES = frozenset({408, 429})


# -- signing -------------------------------------------------------------------
def sign(payload: bytes, secret: str | bytes, timestamp: int | None = None) -> str:
    """Return the ``X-Jobify-Signature`` value for ``payload``:
    ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.payload">``.

    :param secret: the receiver's secret.
    :param timestamp: Unix seconds (default: now).
    """
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={stamp},v1={_digest(payload, secret, stamp)}"


def verify(
    payload: bytes, header: str, secret: str | bytes, tolerance: float = 300, *,
    now: float | None = None,
) -> int:
    """Check a delivery's signature, for receivers; return its timestamp.

    Use the raw body (``request.get_data()``), not parsed JSON, and the
    secret this receiver shares with the server (its own, or
    ``JOBIFY_WEBHOOK_SECRET``)::

        verify(request.get_data(), request.headers["X-Jobify-Signature"], SECRET)

    The header is read as ASCII: ``t`` is decimal digits, each ``v1`` 64
    hex digits; anything else in it is ignored.

    :param tolerance: seconds a delivery stays valid; older ones are
        refused as replays (and so are ones that far in the future).
    :returns: the delivery's timestamp, Unix seconds.
    :raises WebhookSignatureError: on a malformed header, a signature that
        does not match, or a stale timestamp.
    """
    stamp: int | None = None
    candidates: list[str] = []
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and _STAMP_RE.fullmatch(value):
            stamp = int(value)
        elif name == "v1" and _DIGEST_RE.fullmatch(value):
            candidates.append(value.lower())
    if stamp is None or not candidates:
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} must read 't=<unix seconds>,v1=<hex>'; it does not."
        )
    expected = _digest(payload, secret, stamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookSignatureError(
            "The webhook signature does not match its body: check the secret, and"
            " verify the raw body before parsing it."
        )
    age = (time.time() if now is None else now) - stamp
    if abs(age) > tolerance:
        raise WebhookSignatureError(
            f"The webhook was signed {int(age)} seconds ago, more than the {tolerance:g}"
            " seconds allowed: refused as a possible replay."
        )
    return stamp


_STAMP_RE = re.compile(r"[0-9]{1,12}")
_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}")


def _digest(payload: bytes, secret: str | bytes, stamp: int) -> str:
    message = str(stamp).encode() + b"." + payload
    key = secret if isinstance(secret, bytes) else secret.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# -- submission ----------------------------------------------------------------
def callback_meta(url: str | None, base_url: str) -> dict[str, t.Any]:
    """Check the shape of a requested callback URL and return the
    ``job.meta`` entries for it (empty without a callback). Its secret and
    its addresses are checked once the job exists
    (:meth:`WebhookDispatcher.check_callback`).

    :param base_url: the request's root URL, to make the links absolute.
    :raises InvalidCallback: if the URL is refused (see
        :func:`flask_jobify.callback_url.split_callback`).
    """
    if not url:
        return {}
    split_callback(url)
    record = {"url": url, "attempts": 0, "lastStatus": None, "delivered": False}
    return {META_KEY: {**record, "baseUrl": base_url}}


# -- delivering ------------------------------------------------------------------
class WebhookDispatcher:
    """Delivers one app's webhooks when its jobs end.

    Listens to :data:`~flask_jobify.signals.job_finished` for its app and
    hands each delivery to its own small pool of daemon threads
    (``JOBIFY_WEBHOOK_WORKERS``), so job threads never wait on a receiver.
    Retries (connection errors, timeouts, 408, 429, 5xx) sleep in that
    pool, with exponential backoff and jitter, up to
    ``JOBIFY_WEBHOOK_MAX_ATTEMPTS``. Every attempt is recorded in
    ``job.meta["webhook"]`` with :meth:`JobStore.update`; the job's status
    is never touched.

    Thread-safe. Per process: the process that ends a job delivers its
    webhook; deliveries still waiting when the process exits are lost.
    """

    def __init__(
        self, app: Flask, store: JobStore, settings: Settings, *,
        load_secret: SecretLoader | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        self._load_secret = load_secret
        self._stop_of: PerProcess[threading.Event] = PerProcess(lambda: threading.Event())
        self._executor = ThreadPool(
            settings.webhook_workers, max_queued=10_000, name="jobify-webhook"
        )
        job_finished.connect(self._on_finished, sender=app)

    @property
    def _stop(self) -> threading.Event:
        """Set at :meth:`close`; made in each process that uses it (see
        :mod:`flask_jobify.perprocess`)."""
        return self._stop_of.get()

    def close(self, grace: float = 1.0) -> None:
        """Stop delivering: retries waiting for their turn give up."""
        self._stop.set()
        self._executor.shutdown(grace)

    def secret_for(self, job: Job) -> str | bytes | None:
        """The secret that signs ``job``'s webhook, or ``None`` (not sent).

        First found: the ``callback_secret_loader``'s answer for ``(url,
        job)``; the operation's ``callback_secret`` when the URL is its
        ``callback``; ``JOBIFY_WEBHOOK_SECRET``. Call it with an app context.
        """
        url = (job.meta.get(META_KEY) or {}).get("url")
        if not url:
            return None
        if self._load_secret is not None:
            secret = self._load_secret(url, job)
            if secret:
                return secret
        options = options_of(self.app.view_functions.get(job.operation) or (lambda: None))
        if options is not None and options.callback_secret and url == options.callback:
            return options.callback_secret
        return self.settings.webhook_secret or None

    def check_callback(self, job: Job) -> None:
        """Refuse, at submission, a callback that no secret would sign or
        whose host is not public (SSRF).

        :raises InvalidCallback: (400) if :meth:`secret_for` finds no
            secret, or the host does not resolve, or resolves to an address
            that is not public (see :mod:`flask_jobify.callback_url`).
        """
        hook = job.meta.get(META_KEY)
        if not hook:
            return
        if self.secret_for(job) is None:
            raise InvalidCallback(
                "This server has no webhook secret for this callback URL"
                " (JOBIFY_WEBHOOK_SECRET is not set); drop the"
                f" {CALLBACK_HEADER} header and poll the job instead."
            )
        host, port = split_callback(hook["url"])
        try:
            resolve_public(host, port, self.settings.webhook_allowed_hosts)
        except OSError:
            raise InvalidCallback(f"The callback host {host!r} does not resolve.") from None

    def _on_finished(self, sender: t.Any, job: Job, **kwargs: t.Any) -> None:
        hook = job.meta.get(META_KEY)
        if not hook or hook.get("delivered"):
            return
        def task() -> None:
            self.deliver(job)

        if not self._executor.submit(task):
            logger.warning("Webhook of job %s dropped: the process is stopping.", job.id)

    def deliver(self, job: Job) -> bool:
        """Deliver the webhook of the finished ``job``, with retries, in the
        calling thread. Return whether the receiver took it.

        The job is the record as it ended, so its webhook goes out even if
        it expired (``result_ttl=0``) or was deleted meanwhile; attempts are
        then no longer recorded.
        """
        hook = job.meta.get(META_KEY)
        if not hook:
            return False
        with self.app.app_context():  # for the secret loader
            secret = self.secret_for(job)
        attempts = int(hook.get("attempts") or 0)
        if secret is None:
            self._record(job.id, attempts + 1, None, "No webhook secret for this URL.", False)
            return False
        body = self._payload(job, hook.get("baseUrl") or "http://localhost/")
        while attempts < self.settings.webhook_max_attempts and not self._stop.is_set():
            attempts += 1
            status, error, retry = self._attempt(hook["url"], body, job.id, secret)
            delivered = status is not None and 200 <= status < 300
            self._record(job.id, attempts, status, error, delivered)
            send_signal(webhook_delivered, self.app, job=job, delivered=delivered, status=status)
            if delivered or not retry:
                return delivered
            if attempts < self.settings.webhook_max_attempts:
                self._stop.wait(self._backoff(attempts))
        return False

    def _attempt(
        self, url: str, body: bytes, job_id: str, secret: str | bytes
    ) -> tuple[int | None, str | None, bool]:
        """POST once: ``(status, error, worth_retrying)``."""
        try:
            host, port = split_callback(url)
            address = resolve_public(host, port, self.settings.webhook_allowed_hosts)[0]
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection = _connection(parts.scheme.lower(), host, port, address,
                                     self.settings.webhook_timeout)
            try:
                connection.request("POST", target, body=body, headers={
                    "Content-Type": "application/json",
                    "User-Agent": "Flask-Jobify-Webhook",
                    "X-Job-Id": job_id,
                    SIGNATURE_HEADER: sign(body, secret),
                })
                status = connection.getresponse().status
            finally:
                connection.close()
        except InvalidCallback as exc:
            return None, str(exc.description), False
        except ValueError as exc:  # a URL http.client refuses: trying again will not help
            return None, f"{type(exc).__name__}: {exc}", False
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}", True
        retry = status >= 500 or status in _RETRY_STATUSES
        return status, None if status < 300 else f"HTTP {status}", retry

    def _record(
        self, job_id: str, attempts: int, status: int | None, error: str | None, delivered: bool
    ) -> bool:
        """Save an attempt in ``job.meta``; ``False`` if the job is gone."""
        for _ in range(3):
            job = self.store.get(job_id)
            if job is None:
                return False
            meta = dict(job.meta)
            meta[META_KEY] = {
                **meta.get(META_KEY, {}), "attempts": attempts, "lastStatus": status,
                "lastError": error, "delivered": delivered,
            }
            # On its version: another writer of meta (a re-run's claim) is not undone.
            if self.store.update(job_id, {"meta": meta}, if_status=[job.status],
                                 if_fields={"version": job.version}) is not None:
                return True
        return False

    def _backoff(self, attempts: int) -> float:
        return backoff_delay(self.settings.webhook_backoff, attempts,
                             self.settings.webhook_max_backoff)

    def _payload(self, job: Job, base_url: str) -> bytes:
        """The job record as ``GET /jobs/<id>`` gives it, links made absolute."""
        with self.app.test_request_context("/", base_url=base_url):
            record = JobSchema().dump(job)
        record.pop(META_KEY, None)
        for name in ("statusUrl", "resultUrl"):
            record[name] = urljoin(base_url, record[name])
        return json.dumps(record, separators=(",", ":")).encode()


def _connection(
    scheme: str, host: str, port: int, address: str, timeout: float
) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPSConnection(host, port, address, timeout)
    return _PinnedHTTPConnection(host, port, address, timeout)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address checked beforehand, whatever DNS says now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address; the certificate is checked for ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


__all__ = [
    "CALLBACK_HEADER",
    "META_KEY",
    "SIGNATURE_HEADER",
    "SecretLoader",
    "WebhookDispatcher",
    "callback_meta",
    "sign",
    "verify",
]
