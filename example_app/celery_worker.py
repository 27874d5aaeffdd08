"""The demo's Celery worker (``JOBIFY_EXECUTOR=celery``)::

    celery -A example_app.celery_worker worker --concurrency 2

It builds the same Flask app as the web servers, so the worker runs the
views with the app's own config, hooks and error handlers.
"""
from __future__ import annotations

from . import create_app

flask_app = create_app()
try:
    celery_app = flask_app.extensions["celery"]
except KeyError:
    raise RuntimeError(
        "Set JOBIFY_EXECUTOR=celery (and JOBIFY_STORE=redis://...) to run the demo on Celery."
    ) from None
