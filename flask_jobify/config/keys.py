"""The ``JOBIFY_*`` config keys: each one's default and rule, side by side.

Every key is read once, in ``Jobify.init_app``, with
``app.config.setdefault("JOBIFY_" + name, default)``, then coerced and
checked by its rule (see :mod:`flask_jobify.rules`): a value of the wrong
type or out of range raises :class:`~flask_jobify.errors.ConfigError`, a
``ValueError`` that names the key and what it accepts. Strings are coerced
(``"8"``, ``"true"``, ``"authorization, cookie"``), so values read from
environment variables work; ``True`` is not an integer, ``1`` is not a
boolean. The coerced value is written back to ``app.config``.
"""
from __future__ import annotations

from ..rules import Bool, Choice, Int, Key, Names, Seconds, Text, Url, UrlPath

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


#: Answer ``GET {URL_PREFIX}/<id>`` of a succeeded job with ``303 See
#: Other`` to its result (``Location``), the job record as the body, instead
#: of ``200``. Off by default, so that clients that read the status JSON
#: keep working. Per operation: ``@jobify.job(see_other=True)``.
SEE_OTHER = Key(False, Bool())

#: Put the jobs endpoints and the job parameters in the app's flask-smorest
#: ``Api`` spec by themselves, without ``Jobify.register_api``: done at the
#: first app context pushed after both exist. ``False``: only
#: ``register_api`` does it.
AUTO_REGISTER_API = Key(True, Bool())

#: Server-Sent Event streams (``GET {URL_PREFIX}/<id>/events`` and
#: ``{URL_PREFIX}/events``) one process serves at once. Each holds a server
#: thread (gunicorn ``gthread``: one of its ``threads``) for as long as it
#: is open; one more gets ``503 too_many_streams`` (JSON, ``Retry-After``).
SSE_MAX_STREAMS = Key(50, Int(min=0))

#: Seconds between two keep-alive comments of an idle event stream. A
#: client that went away is noticed at the next write, so this also bounds
#: how long its stream holds a thread after it left.
SSE_KEEPALIVE = Key(5.0, Seconds(min=0, positive=True))

#: Longest life of one event stream, in seconds; then it closes and the
#: browser's ``EventSource`` reconnects with ``Last-Event-ID`` (a job's
#: stream resumes where it was). On a server that serves one request at a
#: time, ``BLOCKING_MAX_WAIT`` caps it (``0``: the current state, then close).
SSE_MAX_SECONDS = Key(600.0, Seconds(min=0, positive=True))

#: Seconds between two reads of the store by the all-jobs stream
#: (``{URL_PREFIX}/events``): one reader per process, whatever the number of
#: streams, lists the active jobs and the newest ones and sends what changed.
SSE_FEED_INTERVAL = Key(0.5, Seconds(min=0, positive=True))

#: Serve the dashboard at ``{URL_PREFIX}/ui``: live jobs, cancel, re-run,
#: counts and charts. An admin surface: see ``Jobify.dashboard_access``.
DASHBOARD = Key(False, Bool())


__all__ = [
                     "ALL_VIEWS",
                     "AUTO_REGISTER_API",
                     "BLOCKING_MAX_WAIT",
                     "CANCEL_CHECK_INTERVAL",
                     "CLEANUP_INTERVAL",
                     "DASHBOARD",
                     "DEFAULT_TIMEOUT",
                     "DROP_HEADERS",
                     "EXECUTOR",
                     "EXPOSE_ERRORS",
                     "KEEP_FAILED_REQUESTS",
                     "LEASE_SECONDS",
                     "MAX_QUEUED",
    "MAX_RUNNING_PER_OWNER",
                     "MAX_SAVED_BODY",
                     "MAX_WAIT",
                     "MAX_WORKERS",
                     "METRICS",
                     "REDIS_PREFIX",
                     "RESULT_COOKIES",
                     "RESULT_TTL",
                     "RETRY_AFTER",
                     "RETRY_MAX_BACKOFF",
                     "SEE_OTHER",
                     "SHUTDOWN_GRACE",
                     "SPOOL_THRESHOLD",
                     "SSE_FEED_INTERVAL",
                     "SSE_KEEPALIVE",
                     "SSE_MAX_SECONDS",
                     "SSE_MAX_STREAMS",
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
]
