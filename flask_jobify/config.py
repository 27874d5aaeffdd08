"""The ``JOBIFY_*`` config keys: each one's default and rule, side by side.

Every key is read once, in ``Jobify.init_app``, with
``app.config.setdefault("JOBIFY_" + name, default)``, then coerced and
checked by its rule (see :mod:`flask_jobify.rules`): a value of the wrong
type or out of range raises :class:`~flask_jobify.errors.ConfigError`, a
``ValueError`` that names the key and what it accepts. Strings are coerced
(``"8"``, ``"true"``, ``"authorization, cookie"``), so values read from
environment variables work; ``True`` is not an integer, ``1`` is not a
boolean. The coerced value is written back to ``app.config``.

:class:`Settings` holds them once read: :meth:`Settings.from_app` applies
the rules at ``init_app``, warns about unknown keys (typos), and
:meth:`Settings.warn_if_changed` tells when a key changed after it was
read. Nothing else in the extension reads ``app.config``.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import types
import typing as t
import warnings

from .errors import ConfigError, ConfigWarning
from .rules import Bool, Choice, Int, Key, Names, Seconds, Text, Url, UrlPath

if t.TYPE_CHECKING:
    from flask import Flask

# URL schemes of the job stores (see :func:`flask_jobify.stores.store_from_url`).
STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "unix")

#: Where jobs are kept, as a URL: ``memory://``, ``sqlite:///path/jobs.db``
#: or ``redis://host:port/db``. ``None`` means an SQLite file in the app's
#: instance folder, which every gunicorn worker of the app shares.
STORE = Key(None, Url(schemes=STORE_SCHEMES, optional=True))

#: First part of every Redis key of the app's jobs, so that several apps can
#: share one Redis database. A ``?prefix=`` in ``JOBIFY_STORE`` wins.
REDIS_PREFIX = Key("jobify", Text())

#: Threads that run jobs, per process.
MAX_WORKERS = Key(4, Int(min=1))

#: Jobs that may wait for a free thread, per process. One more gets a 503.
MAX_QUEUED = Key(100, Int(min=1))

#: Most jobs one caller (an owner the owner loader names) may have that have
#: not finished (``pending`` or ``running``), across every process that
#: shares the store; one more gets a ``429 too_many_jobs`` with
#: ``Retry-After``. ``None``: no limit. Jobs without an owner are not limited.
MAX_RUNNING_PER_OWNER = Key(None, Int(min=1, optional=True))

#: Longest long-poll (``GET /jobs/<id>?wait=S``) and ``Prefer: wait=N``, in
#: seconds. ``0`` turns long-polling off.
MAX_WAIT = Key(30.0, Seconds(min=0))

#: Longest wait, in seconds, on a server that serves one request at a time
#: per process (``wsgi.multithread`` false: gunicorn's ``sync`` worker,
#: uWSGI without ``--threads``), where a waiting request blocks every other
#: client of the process and, past gunicorn's ``timeout`` (30 s, the
#: default ``MAX_WAIT``), gets its worker killed. ``0``: such waits answer
#: at once. A capped answer carries ``X-Job-Max-Wait``.
BLOCKING_MAX_WAIT = Key(0.0, Seconds(min=0))

#: Seconds a finished job and its result are kept. Per operation:
#: ``@jobify.job(result_ttl=...)``.
RESULT_TTL = Key(3600.0, Seconds(min=0, positive=True))

#: Default time limit of a job, in seconds, counted from when it starts to
#: run. ``None``: no limit. Per operation: ``@jobify.job(timeout=...)``.
DEFAULT_TIMEOUT = Key(None, Seconds(min=0, positive=True, optional=True))

#: ``Retry-After`` seconds sent with 202 answers and unfinished jobs.
RETRY_AFTER = Key(1, Int(min=0))

#: Make every plain view jobifiable, not only those decorated with
#: ``@jobify.job``. Views with decorators (``@login_required``...) are left
#: synchronous, with a ``ConfigWarning``: a job must never be accepted before
#: their guards run. Put ``@jobify.job`` below their decorators instead.
ALL_VIEWS = Key(False, Bool())

#: Where the jobs blueprint is mounted.
URL_PREFIX = Key("/jobs", UrlPath())

#: Seconds running jobs get to finish when the process stops.
SHUTDOWN_GRACE = Key(10.0, Seconds(min=0))

#: Seconds between two sweeps of expired jobs.
CLEANUP_INTERVAL = Key(60.0, Seconds(min=0, positive=True))

#: Seconds between two looks at the store for a cancellation requested by
#: another process, from ``current_job.cancelled``.
CANCEL_CHECK_INTERVAL = Key(0.25, Seconds(min=0))

#: Put exception messages (and tracebacks) in job records. ``None``: only
#: when ``app.debug`` is on. Messages may hold secrets; keep this off in
#: production.
EXPOSE_ERRORS = Key(None, Bool(optional=True))

#: Headers of a captured request to drop before the job keeps it, e.g.
#: ``("authorization", "cookie")``. The job's run then sees the request
#: without them, whatever the executor. Captured requests go to Celery's
#: broker with the Celery executor, and to the store for operations that
#: may be retried (so that another process can take them over); see
#: ``Jobify.request_filter`` to re-derive a credential instead.
DROP_HEADERS = Key((), Names(kind="header"))

#: What runs jobs: ``"thread"`` (a pool of threads in each web process) or
#: ``"celery"`` (Celery workers; see ``Jobify.init_celery``).
EXECUTOR = Key("thread", Choice(choices=("thread", "celery")))

#: Seconds within which a job whose process died (``kill -9``, a lost
#: machine) is noticed, with a shared store: it is then queued again if its
#: operation may be retried, else failed with error type ``lost``. Each
#: process renews the leases of its jobs every quarter of this.
LEASE_SECONDS = Key(30.0, Seconds(min=0, positive=True))

#: Longest wait between two runs of a job (``@jobify.job(retries=...)``).
RETRY_MAX_BACKOFF = Key(300.0, Seconds(min=0))

#: Key that signs webhooks (``X-Jobify-Signature``, HMAC-SHA256). ``None``:
#: webhooks are off and a callback URL is refused with a 400.
WEBHOOK_SECRET = Key(None, Text(optional=True), secret=True)

#: Deliveries of one webhook, the first included, before giving up.
WEBHOOK_MAX_ATTEMPTS = Key(5, Int(min=1))

#: Seconds before the first retry; each retry doubles it (with jitter), up
#: to ``WEBHOOK_MAX_BACKOFF``.
WEBHOOK_BACKOFF = Key(1.0, Seconds(min=0))

#: Longest wait between two deliveries of one webhook, in seconds.
WEBHOOK_MAX_BACKOFF = Key(60.0, Seconds(min=0))

#: Seconds to connect and to wait for the receiver's answer.
WEBHOOK_TIMEOUT = Key(10.0, Seconds(min=0, positive=True))

#: Threads that deliver webhooks, per process (not the job threads).
WEBHOOK_WORKERS = Key(2, Int(min=1))

#: Host names (or IP literals) a callback may point to even though they are
#: not public: loopback, private, link-local... Callback URLs to other
#: non-public addresses are refused (SSRF). Lower-case.
WEBHOOK_ALLOWED_HOSTS = Key((), Names(kind="host"))

#: Serve a Swagger UI page of the jobs API at ``{URL_PREFIX}/docs``. The
#: spec itself is always at ``{URL_PREFIX}/openapi.json``.
SWAGGER_UI = Key(False, Bool())

#: Where the Swagger UI page loads ``swagger-ui.css`` and
#: ``swagger-ui-bundle.js`` from.
SWAGGER_UI_URL = Key("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
                     Url(schemes=("https", "http"), path_ok=True))

#: Bytes of a captured request body kept in memory; a larger body goes to
#: an anonymous temporary file until its job no longer needs it. Bodies
#: longer than Flask's ``MAX_CONTENT_LENGTH`` get a ``413`` (JSON).
SPOOL_THRESHOLD = Key(1024 * 1024, Int(min=0))

#: Largest request body, in bytes, of a job whose request leaves the
#: process: sent to Celery's broker, or saved in a shared store because the
#: operation may be retried. A larger one is refused with ``413
#: content_too_large`` before anything is stored.
MAX_SAVED_BODY = Key(10 * 1024 * 1024, Int(min=0))

#: Which stored ``Set-Cookie`` headers a job's result keeps: ``"owner"``
#: keeps them only for jobs bound to their caller by an owner loader (only
#: that caller can fetch the result), ``"always"`` keeps them, ``"never"``
#: drops them. Dropped cookies are never written to the store. A session
#: cookie in a result is a credential: whoever fetches the result gets it.
RESULT_COOKIES = Key("owner", Choice(choices=("owner", "always", "never")))

#: Keep the request of a job that ends ``failed`` (with a shared store)
#: until the job expires, so that ``flask jobs rerun`` and the dashboard
#: can run it again as a new job. The request of every job is then saved
#: in the store while it is active, not only of those that may be retried.
#: A kept request may hold credentials: drop them with ``DROP_HEADERS``.
KEEP_FAILED_REQUESTS = Key(False, Bool())

#: Serve Prometheus metrics at ``{URL_PREFIX}/metrics``, to the callers
#: ``Jobify.dashboard_access`` lets in (needs ``prometheus_client``:
#: ``pip install 'Flask-Jobify[metrics]'``). See :mod:`flask_jobify.metrics`
#: to register them in the app's own registry instead.
METRICS = Key(False, Bool())

#: Seconds a write on a background path (a job starting or ending, a
#: timeout, a lost job) is retried while the store fails, with exponential
#: backoff. A job whose end still cannot be stored is failed (error type
#: ``store_error``) as soon as the store takes a write again.
STORE_RETRY_SECONDS = Key(15.0, Seconds(min=0))


# -- reading the keys ---------------------------------------------------------
#: Prefix of every config key of the extension.
PREFIX = "JOBIFY_"

#: Every key, by name without the prefix, as declared above.
KEYS: t.Mapping[str, Key] = types.MappingProxyType(
    {name: value for name, value in dict(globals()).items() if isinstance(value, Key)}
)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``JOBIFY_*`` config keys of one app, coerced and checked once at
    ``init_app`` (:meth:`from_app`). One field per key, in lower case."""

    store: str
    redis_prefix: str
    max_workers: int
    max_queued: int
    max_running_per_owner: int | None
    max_wait: float
    blocking_max_wait: float
    result_ttl: float
    default_timeout: float | None
    retry_after: int
    all_views: bool
    url_prefix: str
    shutdown_grace: float
    cleanup_interval: float
    cancel_check_interval: float
    expose_errors: bool
    drop_headers: tuple[str, ...]
    executor: str
    lease_seconds: float
    retry_max_backoff: float
    swagger_ui: bool
    swagger_ui_url: str
    webhook_secret: str | None
    webhook_max_attempts: int
    webhook_backoff: float
    webhook_max_backoff: float
    webhook_timeout: float
    webhook_workers: int
    webhook_allowed_hosts: tuple[str, ...]
    result_cookies: str
    store_retry_seconds: float
    spool_threshold: int
    max_saved_body: int
    keep_failed_requests: bool
    metrics: bool
    #: The coerced value of each key as read, by full key, before ``None``
    #: was worked out (``STORE``, ``EXPOSE_ERRORS``): what
    #: :meth:`changed_keys` compares the config with.
    read: t.Mapping[str, t.Any] = dataclasses.field(
        default_factory=dict, repr=False, compare=False)
    #: The unknown ``JOBIFY_*`` keys :meth:`from_app` warned about.
    unknown: frozenset[str] = dataclasses.field(
        default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_app(cls, app: Flask) -> Settings:
        """Read every ``JOBIFY_*`` key of ``app``: set the missing ones to
        their defaults, coerce and check each value, and write the coerced
        value back to ``app.config``. Unknown ``JOBIFY_*`` keys get a
        :class:`~flask_jobify.errors.ConfigWarning` that suggests the
        closest known key.

        ``JOBIFY_STORE = None`` becomes an SQLite file in the app's instance
        folder; ``JOBIFY_EXPOSE_ERRORS = None`` becomes ``app.debug``.

        :raises ConfigError: for the first key whose value breaks its rule
            (a ``ValueError``; its message names the key and what it accepts).
        """
        read: dict[str, t.Any] = {}
        for name, key in KEYS.items():
            full = PREFIX + name
            read[full] = app.config[full] = key.read(full, app.config.get(full, key.default))
        unknown = unknown_keys(app.config)
        for message in unknown.values():
            warnings.warn(message, ConfigWarning, stacklevel=_caller_stacklevel())
        values = {full[len(PREFIX):].lower(): value for full, value in read.items()}
        if values["store"] is None:
            values["store"] = "sqlite:///" + os.path.join(app.instance_path, "jobify.sqlite3")
        if values["expose_errors"] is None:
            values["expose_errors"] = bool(app.debug)
        return cls(**values, read=types.MappingProxyType(read), unknown=frozenset(unknown))

    def changed_keys(self, config: t.Mapping[str, t.Any]) -> list[str]:
        """The keys whose value in ``config`` is no longer the one read (or
        no longer valid, or removed), compared after coercion: ``"8"``
        for ``8`` is no change."""
        changed = []
        for full, was in self.read.items():
            if full not in config:
                changed.append(full)
                continue
            try:
                now = KEYS[full[len(PREFIX):]].read(full, config[full])
            except ConfigError:
                now = dataclasses.MISSING
            if now != was:
                changed.append(full)
        return changed

    def warn_if_changed(self, config: t.Mapping[str, t.Any]) -> None:
        """Warn (:class:`~flask_jobify.errors.ConfigWarning`) about each key
        changed since :meth:`from_app` read it, and each unknown key added
        since: both are ignored. Meant to run once per process, at its first request or
        job, not on every request."""
        for full in self.changed_keys(config):
            warnings.warn(
                f"{full} was changed after Jobify.init_app() read it; the change is"
                " ignored. Set JOBIFY_* keys before Jobify(app) or init_app(app).",
                ConfigWarning, stacklevel=2)
        for full, message in unknown_keys(config).items():
            if full not in self.unknown:
                warnings.warn(message, ConfigWarning, stacklevel=2)


def unknown_keys(config: t.Mapping[str, t.Any]) -> dict[str, str]:
    """Each ``JOBIFY_*`` key of ``config`` that no setting has, with a
    message that names the closest known key when one is close (a typo)."""
    messages = {}
    for full in config:
        if not isinstance(full, str) or not full.startswith(PREFIX) or full[len(PREFIX):] in KEYS:
            continue
        close = difflib.get_close_matches(full[len(PREFIX):], KEYS, n=1)
        hint = f" Did you mean {PREFIX}{close[0]}?" if close else ""
        messages[full] = f"{full} is not a Flask-Jobify config key and is ignored.{hint}"
    return messages


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside Flask-Jobify, so that a
    warning points at the app's ``Jobify(app)`` or ``init_app(app)`` line."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.dirname(
            os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


__all__ = [
    "ALL_VIEWS",
    "BLOCKING_MAX_WAIT",
    "CANCEL_CHECK_INTERVAL",
    "CLEANUP_INTERVAL",
    "DEFAULT_TIMEOUT",
    "DROP_HEADERS",
    "EXECUTOR",
    "EXPOSE_ERRORS",
    "KEEP_FAILED_REQUESTS",
    "KEYS",
    "LEASE_SECONDS",
    "MAX_QUEUED",
    "MAX_RUNNING_PER_OWNER",
    "MAX_SAVED_BODY",
    "MAX_WAIT",
    "MAX_WORKERS",
    "METRICS",
    "PREFIX",
    "REDIS_PREFIX",
    "RESULT_COOKIES",
    "RESULT_TTL",
    "RETRY_AFTER",
    "RETRY_MAX_BACKOFF",
    "SHUTDOWN_GRACE",
    "SPOOL_THRESHOLD",
    "STORE",
    "STORE_RETRY_SECONDS",
    "STORE_SCHEMES",
    "SWAGGER_UI",
    "SWAGGER_UI_URL",
    "URL_PREFIX",
    "WEBHOOK_ALLOWED_HOSTS",
    "WEBHOOK_BACKOFF",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_MAX_BACKOFF",
    "WEBHOOK_SECRET",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_WORKERS",
    "Settings",
    "unknown_keys",
]
