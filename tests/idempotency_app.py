"""The app of the idempotency tests; gunicorn runs it for the
cross-process test (``idempotency_app:create_app(url)``)."""
from __future__ import annotations

import os
import threading
import typing as t

from flask import Flask, request

from flask_jobify import Jobify


class Counter:
    """How many times the views ran, in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs = 0

    def add(self) -> None:
        with self.lock:
            self.runs += 1


def create_app(store: str = "memory://", **config: t.Any) -> Flask:
    """The app on the store URL ``store``, with extra ``config``."""
    app = Flask(__name__)
    # Every worker must derive the same job id from a key: same SECRET_KEY.
    app.config.update({
        "SECRET_KEY": "shared-secret",
        "JOBIFY_STORE": store,
        **config,
    })
    jobify = Jobify(app)
    counter = app.extensions["test_counter"] = Counter()

    @jobify.owner_loader
    def load_owner() -> str | None:
        return request.headers.get("X-User")

    @app.post("/orders")
    @jobify.job
    def order() -> t.Any:
        counter.add()
        return {"pid": os.getpid()}

    @app.post("/refunds")
    @jobify.job(result_ttl=0)
    def refund() -> t.Any:
        counter.add()
        return {"ok": True}

    return app
