"""Default configuration. Every key is read once, in ``Jobify.init_app``,
with ``app.config.setdefault("JOBIFY_" + name, default)``."""
from __future__ import annotations

#: Where jobs are kept, as a URL: ``memory://``, ``sqlite:///path/jobs.db``
#: or ``redis://host:port/db``. ``None`` means an SQLite file in the app's
#: instance folder, which every gunicorn worker of the app shares.
STORE = None

#: First part of every Redis key of the app's jobs, so that several apps can
#: share one Redis database. A ``?prefix=`` in ``JOBIFY_STORE`` wins.
REDIS_PREFIX = "jobify"

#: Threads that run jobs, per process.
MAX_WORKERS = 4

#: Jobs that may wait for a free thread, per process. One more gets a 503.
MAX_QUEUED = 100

#: Longest long-poll (``GET /jobs/<id>?wait=S``) and ``Prefer: wait=N``, in
#: seconds. ``0`` turns long-polling off.
MAX_WAIT = 30.0

#: Seconds a finished job and its result are kept. Per operation:
#: ``@jobify.job(result_ttl=...)``.
RESULT_TTL = 3600.0

#: Default time limit of a job, in seconds, counted from when it starts to
#: run. ``None``: no limit. Per operation: ``@jobify.job(timeout=...)``.
DEFAULT_TIMEOUT = None

#: ``Retry-After`` seconds sent with 202 answers and unfinished jobs.
RETRY_AFTER = 1

#: Make every view jobifiable, not only those decorated with ``@jobify.job``.
ALL_VIEWS = False

#: Where the jobs blueprint is mounted.
URL_PREFIX = "/jobs"

#: Seconds running jobs get to finish when the process stops.
SHUTDOWN_GRACE = 10.0

#: Seconds between two sweeps of expired jobs.
CLEANUP_INTERVAL = 60.0

#: Seconds between two looks at the store for a cancellation requested by
#: another process, from ``current_job.cancelled``.
CANCEL_CHECK_INTERVAL = 0.25

#: Put exception messages (and tracebacks) in job records. ``None``: only
#: when ``app.debug`` is on. Messages may hold secrets; keep this off in
#: production.
EXPOSE_ERRORS = None

#: Headers of a captured request to drop before the job keeps it, e.g.
#: ``("authorization", "cookie")``. The job's run then sees the request
#: without them, whatever the executor. Captured requests go to Celery's
#: broker with the Celery executor, and to the store for operations that
#: may be retried (so that another process can take them over); see
#: ``Jobify.request_filter`` to re-derive a credential instead.
DROP_HEADERS: tuple[str, ...] = ()

#: What runs jobs: ``"thread"`` (a pool of threads in each web process) or
#: ``"celery"`` (Celery workers; see ``Jobify.init_celery``).
EXECUTOR = "thread"

#: Seconds within which a job whose process died (``kill -9``, a lost
#: machine) is noticed, with a shared store: it is then queued again if its
#: operation may be retried, else failed with error type ``lost``. Each
#: process renews the leases of its jobs every quarter of this.
LEASE_SECONDS = 30.0

#: Longest wait between two runs of a job (``@jobify.job(retries=...)``).
RETRY_MAX_BACKOFF = 300.0

#: Key that signs webhooks (``X-Jobify-Signature``, HMAC-SHA256). ``None``:
#: webhooks are off and a callback URL is refused with a 400.
WEBHOOK_SECRET = None

#: Deliveries of one webhook, the first included, before giving up.
WEBHOOK_MAX_ATTEMPTS = 5

#: Seconds before the first retry; each retry doubles it (with jitter), up
#: to ``WEBHOOK_MAX_BACKOFF``.
WEBHOOK_BACKOFF = 1.0

#: Longest wait between two deliveries of one webhook, in seconds.
WEBHOOK_MAX_BACKOFF = 60.0

#: Seconds to connect and to wait for the receiver's answer.
WEBHOOK_TIMEOUT = 10.0

#: Threads that deliver webhooks, per process (not the job threads).
WEBHOOK_WORKERS = 2

#: Host names (or IP literals) a callback may point to even though they are
#: not public: loopback, private, link-local... Callback URLs to other
#: non-public addresses are refused (SSRF). Lower-case.
WEBHOOK_ALLOWED_HOSTS: tuple[str, ...] = ()

#: Serve a Swagger UI page of the jobs API at ``{URL_PREFIX}/docs``. The
#: spec itself is always at ``{URL_PREFIX}/openapi.json``.
SWAGGER_UI = False

#: Where the Swagger UI page loads ``swagger-ui.css`` and
#: ``swagger-ui-bundle.js`` from.
SWAGGER_UI_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"

#: Bytes of a captured request body kept in memory; a larger body goes to
#: an anonymous temporary file until its job no longer needs it. Bodies
#: longer than Flask's ``MAX_CONTENT_LENGTH`` get a ``413`` (JSON).
SPOOL_THRESHOLD = 1024 * 1024

#: Largest request body, in bytes, of a job whose request leaves the
#: process: sent to Celery's broker, or saved in a shared store because the
#: operation may be retried. A larger one is refused with ``413
#: content_too_large`` before anything is stored.
MAX_SAVED_BODY = 10 * 1024 * 1024

#: Which stored ``Set-Cookie`` headers a job's result keeps: ``"owner"``
#: keeps them only for jobs bound to their caller by an owner loader (only
#: that caller can fetch the result), ``"always"`` keeps them, ``"never"``
#: drops them. Dropped cookies are never written to the store. A session
#: cookie in a result is a credential: whoever fetches the result gets it.
RESULT_COOKIES = "owner"

#: Seconds a write on a background path (a job starting or ending, a
#: timeout, a lost job) is retried while the store fails, with exponential
#: backoff. A job whose end still cannot be stored is failed (error type
#: ``store_error``) as soon as the store takes a write again.
STORE_RETRY_SECONDS = 15.0
