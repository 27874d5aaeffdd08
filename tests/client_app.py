"""The app the client tests drive; gunicorn runs it too
(``client_app:create_app(url)``)."""
from __future__ import annotations

import collections
import hashlib
import os
import threading
import typing as t

from flask import Flask, abort, request

from flask_jobify import Jobify, current_job
from flask_jobify.stores.memory import MemoryStore

#: 64 KiB of bytes that are not valid UTF-8, for the binary view.
BINARY = hashlib.sha256(b"seed").digest() * 2048


class SpyStore(MemoryStore):
    """A memory store that tells when a long-poll waits on a job's current
    version: from then on, no change of that job can go unseen."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting = threading.Condition()
        self._waits: collections.Counter[tuple[str, int]] = collections.Counter()

    def wait(self, job_id: str, version: int, timeout: float) -> t.Any:
        with self._waiting:
            self._waits[job_id, version] += 1
            self._waiting.notify_all()
        return super().wait(job_id, version, timeout)

    def wait_for_waiter(self, job_id: str, timeout: float = 10.0) -> bool:
        """Block until a long-poll waits on ``job_id``'s current version."""
        with self._waiting:
            return self._waiting.wait_for(
                lambda: self._waits[job_id, self.get(job_id).version] > 0, timeout  # type: ignore[union-attr]
            )


class Gates:
    """Named events the test opens to let a job go on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = collections.defaultdict(threading.Event)

    def event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def open(self, name: str) -> None:
        self.event(name).set()


class Requests:
    """What the server saw: a log of (method, path, headers), and how many
    status polls to fail with a 503 before answering."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.fail_polls = 0
        self.seen = threading.Condition(self.lock)

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.log if m == method and p.startswith(prefix))

    def wait_for(self, method: str, prefix: str, n: int, timeout: float = 10.0) -> bool:
        with self.seen:
            return self.seen.wait_for(
                lambda: sum(1 for m, p, _ in self.log if m == method and p.startswith(prefix)) >= n,
                timeout,
            )


def create_app(store: str = "memory://", **config: t.Any) -> Flask:
    """The test app on the store URL ``store``, with extra ``config``.
    ``spy=True`` uses a :class:`SpyStore` instead (memory, one process)."""
    spy = config.pop("spy", False)
    app = Flask(__name__)
    app.config.update({"JOBIFY_STORE": store, **config})
    store = SpyStore() if spy else None
    jobify = Jobify(app, store=store)
    gates = app.extensions["gates"] = Gates()
    seen = app.extensions["requests"] = Requests()
    app.extensions["store"] = store

    @jobify.owner_loader
    def owner() -> str | None:
        return request.headers.get("Authorization")

    @app.before_request
    def record() -> t.Any:
        with seen.seen:
            seen.log.append((request.method, request.path, dict(request.headers)))
            seen.seen.notify_all()
            fail = (request.method == "GET" and request.path.startswith("/jobs/")
                    and not request.path.endswith("/result") and seen.fail_polls > 0)
            if fail:
                seen.fail_polls -= 1
        if fail:
            return {"error": {"code": "flaky", "message": "try again"}}, 503
        return None

    @app.post("/echo")
    @jobify.job(timeout=30)
    def echo() -> t.Any:
        return {"json": request.get_json(silent=True), "args": request.args.to_dict(),
                "user": request.headers.get("X-User"), "pid": os.getpid()}

    @app.get("/binary")
    @jobify.job
    def binary() -> t.Any:
        return BINARY, 200, {"Content-Type": "application/octet-stream", "X-Digest": "sha256"}

    @app.post("/teapot")
    @jobify.job
    def teapot() -> t.Any:
        return {"error": "I'm a teapot"}, 418, {"X-Brewing": "no"}

    @app.post("/boom")
    @jobify.job
    def boom() -> t.Any:
        raise RuntimeError("boom")

    @app.get("/missing")
    @jobify.job
    def missing() -> t.Any:
        abort(404)

    @app.post("/plain")
    def plain() -> t.Any:
        return {"plain": True}

    @app.post("/steps")
    @jobify.job(timeout=30)
    def steps() -> t.Any:
        """Publish progress, waiting each time until a long-poll has seen it
        (with a SpyStore) so that every step reaches the client."""
        count = int(request.args.get("n", 5))
        for step in range(count):
            current_job.progress(100 * step / count, f"step {step}")
            if store is not None:
                store.wait_for_waiter(t.cast(str, current_job.id))
        return {"steps": count}

    @app.post("/gate/<name>")
    @jobify.job(timeout=30)
    def gate(name: str) -> t.Any:
        """Run until the test opens gate ``name``, or the job is cancelled."""
        current_job.progress(0, "waiting")
        gates.started[name].set()
        event = gates.event(name)
        while not event.wait(0.01):
            if current_job.cancelled:
                return {"gate": name, "cancelled": True}
        return {"gate": name}

    @app.post("/sleep")
    @jobify.job(timeout=60)
    def sleep() -> t.Any:
        """Run ``?seconds=`` seconds, publishing no progress."""
        seconds = float(request.args.get("seconds", 1))
        if not threading.Event().wait(seconds):
            return {"slept": seconds}
        return {}  # pragma: no cover

    @app.post("/overtime")
    @jobify.job(timeout=0.1)
    def overtime() -> t.Any:
        """Outlive its time limit, until the server stops it."""
        while not current_job.cancelled:
            threading.Event().wait(0.01)
        return {"late": True}

    return app
