"""A small pet-store API that shows every Flask-Jobify feature.

Run it with gunicorn (two gthread workers sharing the default SQLite job
store)::

    gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'

and open http://127.0.0.1:8000/ (a page that runs the long ping with the
browser client) and http://127.0.0.1:8000/jobs/ui/ (the dashboard), or
drive it with ``python -m example_app.client``. To run the jobs on
Celery workers instead of the web workers' threads::

    export JOBIFY_EXECUTOR=celery JOBIFY_STORE=redis://127.0.0.1:6379/0
    celery -A example_app.celery_worker worker --concurrency 2 &
    gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'
"""
from __future__ import annotations

import json
import os
import secrets
import time
import typing as t

from flask import Flask
from flask_smorest import Api

from flask_jobify.access import is_local_request

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
    app.config.setdefault("JOBIFY_DASHBOARD", True)
    # A string from the environment is never decoded; else one the workers share.
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or _instance_secret(app)
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

    from . import pets, reports, status, web

    app.register_blueprint(web.bp)  # the browser page at /, not in the spec
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


@jobify.dashboard_access
def _local_callers_only() -> bool:
    """The demo lets callers on this machine use the dashboard (not those a
    proxy or tunnel on this machine forwards). A real app checks its user
    here (``current_user.is_admin``)."""
    return is_local_request()


def _instance_secret(app: Flask) -> str:
    """A random ``SECRET_KEY`` kept in the instance folder, so that every
    gunicorn worker signs the session (and the dashboard's CSRF tokens)
    with the same key. ``SECRET_KEY`` in the environment wins."""
    path = os.path.join(app.instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:  # the first worker writes it
            file.write(secrets.token_urlsafe(32))
    for _ in range(50):  # another worker may be writing it
        with open(path) as file:
            key = file.read().strip()
        if key:
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it and start again.")


def _decode(value: str) -> t.Any:
    """``8`` -> 8, ``true`` -> True, ``["a"]`` -> ["a"]; anything else as is."""
    try:
        return json.loads(value)
    except ValueError:
        return value
