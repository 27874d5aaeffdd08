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
#: Longer than ``JOBIFY_SHUTDOWN_GRACE`` (10 s), so running jobs may finish.
graceful_timeout = 15
accesslog = "-"


def post_worker_init(worker):
    """Each worker sweeps expired jobs, renews its leases and recovers jobs
    of dead workers from its boot, not from its first request."""
    from example_app.extensions import jobify

    jobify.start(worker.wsgi)
