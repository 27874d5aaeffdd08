"""A small pet-store API that shows every Flask-Jobify feature.

Run it with gunicorn (two gthread workers sharing the default SQLite job
store)::

    gunicorn -c example_app/gunicorn.conf.py 'example_app:create_app()'

and drive it with ``python -m example_app.client``.
"""
from __future__ import annotations

import os
import typing as t

from flask import Flask

from . import db
from .extensions import jobify


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the demo app (app factory).

    ``JOBIFY_STORE`` and ``PETS_DATABASE`` are read from the environment;
    by default both live in the app's instance folder. The default job
    store is an SQLite file there, which every gunicorn worker shares.
    """
    app = Flask(__name__)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["PETS_DATABASE"] = os.environ.get(
        "PETS_DATABASE", os.path.join(app.instance_path, "pets.sqlite3")
    )
    if os.environ.get("JOBIFY_STORE"):
        app.config["JOBIFY_STORE"] = os.environ["JOBIFY_STORE"]
    app.config.update(config or {})

    jobify.init_app(app)
    db.init_app(app)

    from . import pets, reports, status

    app.register_blueprint(status.bp)
    app.register_blueprint(pets.bp)
    app.register_blueprint(reports.bp)
    return app
