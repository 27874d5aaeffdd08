"""Gunicorn settings for the demo: ``gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'``.

Long-polls (``GET /jobs/<id>?wait=S``) hold a thread while they wait, so
use threaded workers (``gthread``): each worker serves ``threads`` requests
at once, and the jobs themselves run on Flask-Jobify's own threads. Every
worker shares the SQLite job store in the instance folder, so a job
accepted by one worker can be polled, fetched and cancelled through any.
"""
import os

#: ``PORT`` and ``HOST`` override the address.
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
#: Processes; ``WEB_CONCURRENCY`` overrides.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
#: Requests served at once per worker; each long-poll holds one.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
#: Longer than the longest long-poll (``JOBIFY_MAX_WAIT``, 30 s by default).
timeout = 60
#: Covers a stopping worker's drain (its long-polls answer at once) plus
#: ``JOBIFY_SHUTDOWN_GRACE`` (10 s), so running jobs may finish and the rest
#: are failed (``shutdown``) before gunicorn's SIGKILL.
graceful_timeout = 20
#: Recycle workers (a leak guard): each one stops like on SIGTERM.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
accesslog = "-"


def on_starting(server):
    """Event streams hold a thread each and anyone may open
    ``/jobs/events``: cap them (``JOBIFY_SSE_MAX_STREAMS``, per worker) at
    half the worker's threads, so that idle streams never hold them all;
    one more stream gets ``503`` and the browser client long-polls. Read in
    the master before the workers start (``--threads`` included);
    ``JOBIFY_SSE_MAX_STREAMS`` in the environment wins."""
    os.environ.setdefault("JOBIFY_SSE_MAX_STREAMS", str(server.cfg.threads // 2))


def post_worker_init(worker):
    """Each worker sweeps expired jobs, renews its leases and recovers jobs
    of dead workers from its boot, not from its first request; its stop
    signals begin the shutdown."""
    from example_app.extensions import jobify

    jobify.start(worker.wsgi)


def post_request(worker, req, environ, resp):
    """A worker recycled by ``max_requests`` gets no signal: end its
    long-polls and refuse new jobs now."""
    if not worker.alive:
        from example_app.extensions import jobify

        jobify.begin_shutdown(worker.wsgi)


def worker_exit(server, worker):
    """Give running jobs their grace, then fail what did not finish."""
    app = getattr(worker, "wsgi", None)
    if app is not None:  # None: the worker never booted
        from example_app.extensions import jobify

        jobify.shutdown(app)
