"""The app ``bench_scale.py`` serves and runs on Celery, configured from env vars.

- ``SCALE_EXECUTOR``: ``thread`` (default) or ``celery`` (Flask-Jobify's
  Celery executor), or ``none`` (a plain Celery worker: no Flask app).
- ``SCALE_STORE``: the job store (``redis://127.0.0.1:6379/12``).
- ``SCALE_BROKER``: the Celery broker (``redis://127.0.0.1:6379/10``).
- ``SCALE_BACKEND``: the Celery result backend, for plain Celery only
  (Flask-Jobify keeps results in its store and sets none).
- ``SCALE_COUNT_DIR``: if set, every Redis command and round trip this
  process sends is counted (:func:`install_counter`) and the counts are
  written to ``{dir}/{role}-{pid}.json`` every 0.1 s.
- ``SCALE_ROLE``: the name of the process in those counts (``web``, ``worker``).

gunicorn serves ``scale_app:create_app()``; Celery runs
``-A scale_app:celery_app`` (built on first access).
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
import typing as t

from celery import Celery
from flask import Flask

STORE = os.environ.get("SCALE_STORE", "redis://127.0.0.1:6379/12")
BROKER = os.environ.get("SCALE_BROKER", "redis://127.0.0.1:6379/10")


# -- counting Redis traffic, client side ---------------------------------------
# One Counter per process: "db command" -> commands sent, "db #label" -> round
# trips (one socket write, answered by the server), labelled by what they
# carried: a command's name, "MULTI..EXEC" or "PIPE(A+B)".
_counts: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_local = threading.local()
_installed = False


def _name(args: t.Sequence[t.Any]) -> str:
    first = args[0]
    return (first.decode() if isinstance(first, bytes) else str(first)).upper()


def install_counter(directory: str | None, role: str) -> None:
    """Count, per Redis DB, the commands and round trips that redis-py sends
    from this process (and its forked children); write them to
    ``directory`` (none: only in memory, see :func:`counts`)."""
    global _installed
    if _installed:
        return
    _installed = True
    from redis.connection import AbstractConnection

    send_packed = AbstractConnection.send_packed_command
    send_command = AbstractConnection.send_command
    pack_commands = AbstractConnection.pack_commands

    def bump(db: t.Any, keys: t.Iterable[str]) -> None:
        with _lock:
            for key in keys:
                _counts[f"{db} {key}"] += 1

    def counted_send_packed(self: t.Any, command: t.Any, check_health: bool = True) -> t.Any:
        label = getattr(_local, "label", None) or "?"
        _local.label = None
        bump(self.db, ["#" + label])
        return send_packed(self, command, check_health)

    def counted_send_command(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        name = _name(args)
        bump(self.db, [name])
        _local.label = name
        return send_command(self, *args, **kwargs)

    def counted_pack_commands(self: t.Any, commands: t.Any) -> t.Any:
        commands = list(commands)
        names = [_name(args) for args in commands]
        bump(self.db, names)
        if names and names[0] == "MULTI":
            _local.label = "MULTI..EXEC"
        else:
            _local.label = "PIPE(" + "+".join(names) + ")"
        return pack_commands(self, commands)

    AbstractConnection.send_packed_command = counted_send_packed  # type: ignore[method-assign]
    AbstractConnection.send_command = counted_send_command  # type: ignore[method-assign]
    AbstractConnection.pack_commands = counted_pack_commands  # type: ignore[method-assign]
    if directory is None:
        return

    def restart() -> None:  # in a forked child: its own counts, its own writer
        global _lock
        _lock = threading.Lock()
        _counts.clear()
        threading.Thread(target=write, daemon=True, name="scale-counts").start()

    def write() -> None:
        path = os.path.join(directory, f"{role}-{os.getpid()}.json")
        written: dict[str, int] = {}
        while True:
            current = counts()
            if current != written:
                with open(path + ".tmp", "w") as out:
                    json.dump(current, out)
                os.replace(path + ".tmp", path)
                written = current
            time.sleep(0.1)

    os.register_at_fork(after_in_child=restart)
    threading.Thread(target=write, daemon=True, name="scale-counts").start()


def counts() -> dict[str, int]:
    """This process's counts so far."""
    with _lock:
        return dict(_counts)


if os.environ.get("SCALE_COUNT_DIR"):
    install_counter(os.environ["SCALE_COUNT_DIR"], os.environ.get("SCALE_ROLE", "proc"))


# -- the apps --------------------------------------------------------------------
def create_celery(broker: str = BROKER, backend: str | None = None) -> Celery:
    """A Celery app with the plain task ``scale.trivial``; results go to
    ``backend`` (none: ignored)."""
    app = Celery("scale_app", broker=broker, backend=backend)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        task_ignore_result=backend is None,
        result_expires=600,
        worker_hijack_root_logger=False,
    )

    @app.task(name="scale.trivial")
    def trivial() -> dict[str, bool]:
        return {"ok": True}

    return app


def create_app(celery_app: Celery | None = None) -> Flask:
    """``/plain`` and ``/trivial`` (the same view, jobifiable), on the store
    ``SCALE_STORE`` and the executor ``SCALE_EXECUTOR``."""
    from bench_app import add_views
    from flask_jobify import Jobify

    executor = os.environ.get("SCALE_EXECUTOR", "thread")
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE=STORE,
        JOBIFY_EXECUTOR=executor,
        JOBIFY_MAX_QUEUED=1_000_000,  # measure throughput, not backpressure
        JOBIFY_RESULT_TTL=600,
    )
    jobify = Jobify(app)
    if executor == "celery":
        jobify.init_celery(celery_app or create_celery(), app)
    add_views(app, jobify)
    return app


_worker_app: Celery | None = None


def __getattr__(name: str) -> t.Any:
    """``celery_app``: the worker's Celery app, built on first access (a
    Flask-Jobify worker also builds the Flask app, which registers its task)."""
    global _worker_app
    if name != "celery_app":
        raise AttributeError(name)
    if _worker_app is None:
        _worker_app = create_celery(BROKER, os.environ.get("SCALE_BACKEND") or None)
        if os.environ.get("SCALE_EXECUTOR", "thread") == "celery":
            _worker_app.flask_app = create_app(_worker_app)  # type: ignore[attr-defined]
    return _worker_app
