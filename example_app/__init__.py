"""A small pet-store API that shows every Flask-Jobify feature.

Run it with gunicorn (two gthread workers sharing the default SQLite job
store)::

    gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'

and drive it with ``python -m example_app.client``. To run the jobs on
Celery workers instead of the web workers' threads::

    export JOBIFY_EXECUTOR=celery JOBIFY_STORE=redis://127.0.0.1:6379/0
    celery -A example_app.celery_worker worker --concurrency 2 &
    gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'
"""
from __future__ import annotations

import json
import os
import typing as t

from flask import Flask
from flask_smorest import Api

from . import db
from .extensions import jobify


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the demo app (app factory).

    Every ``JOBIFY_*`` environment variable becomes the config key of the
    same name (JSON values are decoded: ``JOBIFY_MAX_WORKERS=8``), as do
    ``SECRET_KEY`` and ``PETS_DATABASE``. By default the pets and the jobs
    live in the instance folder; the default job store is an SQLite file
    there, which every gunicorn worker shares.
    """
    app = Flask(__name__)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["PETS_DATABASE"] = os.environ.get(
        "PETS_DATABASE", os.path.join(app.instance_path, "pets.sqlite3")
    )
    for name, value in os.environ.items():
        if name.startswith("JOBIFY_"):
            app.config[name] = _decode(value)
    if os.environ.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]  # a string, never decoded
    app.config.update(
        API_TITLE="Flask-Jobify demo", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
    )
    app.config.update(config or {})

    api = Api(app)  # its spec (/openapi.json, Swagger UI at /docs) gets the jobs API too
    jobify.init_app(app)
    if app.config.get("JOBIFY_EXECUTOR") == "celery":
        _init_celery(app)
    db.init_app(app)

    from . import pets, reports, status

    api.register_blueprint(status.bp)
    api.register_blueprint(pets.bp)
    api.register_blueprint(reports.bp)
    return app


def _init_celery(app: Flask) -> None:
    """Run the jobs on Celery workers (``JOBIFY_EXECUTOR=celery``), with the
    broker at ``CELERY_BROKER_URL``; see :mod:`example_app.celery_worker`."""
    from celery import Celery

    broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
    celery_app = Celery(app.import_name, broker=broker)
    jobify.init_celery(celery_app, app)
    app.extensions["celery"] = celery_app


def _decode(value: str) -> t.Any:
    """``8`` -> 8, ``true`` -> True, ``["a"]`` -> ["a"]; anything else as is."""
    try:
        return json.loads(value)
    except ValueError:
        return value
