"""Every supported server, stopped mid-job, ends the job truthfully.

Each test serves ``servers_app`` with a real server in its own process,
starts a job that runs until it is stopped, holds a long-poll on it, checks
that another client is answered meanwhile, stops the server the way
production does (a signal, ``--max-requests`` recycling, a reload), and
reads the SQLite store from here until the job ends: ``failed`` with error
type ``shutdown`` within the grace, the long-poll answered at once.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
import typing as t

import pytest
import requests
from servers import free_port, run_server

from flask_jobify.models import Job
from flask_jobify.stores.sqlite import SQLiteStore

HERE = os.path.dirname(os.path.abspath(__file__))
#: Seconds a running job gets at shutdown (``JOBIFY_SHUTDOWN_GRACE``).
GRACE = 1.0
#: Seconds from the stop to the job's final status, on top of the grace,
#: that the slowest server takes here (its own stop, interpreter exit).
SLACK = 4.0
#: A stopping process answers its long-polls within this (0.5 s checks).
LONG_POLL_END = 2.5
GUNICORN_CONF = os.path.join(HERE, "servers_gunicorn_conf.py")


@dataclasses.dataclass(frozen=True)
class Server:
    """How to start one server on ``port``, and how to stop it."""

    command: t.Callable[[int, str], list[str]]
    #: "SIGTERM", "SIGINT" (or two of them, the second within the grace),
    #: "max-requests" or "reload".
    stop: str = "SIGTERM"
    #: The server serves one request at a time: waits are capped to 0.
    blocking: bool = False
    #: Environment of the server (on top of the store and the grace).
    env: t.Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Seconds from the stop within which a waiting long-poll is answered.
    long_poll_end: float = LONG_POLL_END


def _gunicorn(*args: str) -> t.Callable[[int, str], list[str]]:
    return lambda port, _: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--pythonpath", HERE,
        "--config", GUNICORN_CONF, "--graceful-timeout", "10", *args, "servers_app:create_app()"]


def _flask(*args: str) -> t.Callable[[int, str], list[str]]:
    return lambda port, watched: [
        sys.executable, "-m", "flask", "--app", "servers_app:create_app", "run",
        "--port", str(port), *(arg.replace("{watched}", watched) for arg in args)]


def _uwsgi(port: int, _: str) -> list[str]:
    return [
        "uwsgi", "--http-socket", f"127.0.0.1:{port}", "--pythonpath", HERE,
        "--module", "servers_app:app", "--master", "--processes", "2", "--threads", "4",
        "--lazy-apps", "--need-app", "--disable-logging",
        "--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
        "--hook-master-start", "unix_signal:2 gracefully_kill_them_all"]


def _waitress(port: int, _: str) -> list[str]:
    return [sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{port}",
            "--call", "servers_app:create_app"]


SERVERS = {
    "gunicorn-gthread": Server(_gunicorn("-k", "gthread", "--threads", "4", "-w", "2")),
    "gunicorn-gthread-sigint": Server(_gunicorn("-k", "gthread", "--threads", "4"), "SIGINT"),
    "gunicorn-gthread-max-requests": Server(
        _gunicorn("-k", "gthread", "--threads", "4", "--max-requests", "30",
                  "--max-requests-jitter", "0"), "max-requests"),
    "gunicorn-gevent": Server(_gunicorn("-k", "gevent", "-w", "2")),
    "gunicorn-gevent-preload": Server(_gunicorn("-k", "gevent", "-w", "2", "--preload")),
    "gunicorn-sync": Server(_gunicorn("-k", "sync", "-w", "3"), blocking=True),
    # uWSGI ends its long-polls only as they time out: JOBIFY_MAX_WAIT short.
    "uwsgi": Server(_uwsgi, env={"JOBIFY_MAX_WAIT": "2"}, long_poll_end=2.5),
    "uwsgi-sigint": Server(_uwsgi, "SIGINT", env={"JOBIFY_MAX_WAIT": "2"}, long_poll_end=2.5),
    "waitress": Server(_waitress),
    "waitress-sigint": Server(_waitress, "SIGINT"),
    "flask-run": Server(_flask()),
    "flask-run-sigint": Server(_flask(), "SIGINT"),
    # A second signal during the grace cuts it short, never the shutdown.
    "flask-run-sigint-twice": Server(_flask(), "SIGINT,SIGINT"),
    "waitress-sigterm-twice": Server(_waitress, "SIGTERM,SIGTERM"),
    "gunicorn-gthread-sigterm-sigquit": Server(
        _gunicorn("-k", "gthread", "--threads", "4"), "SIGTERM,SIGQUIT"),
    "flask-run-reload": Server(_flask("--reload", "--extra-files", "{watched}"), "reload"),
}


@pytest.mark.parametrize("name", list(SERVERS))
def test_servers_stop_mid_job_fails_it_within_the_grace(name, tmp_path):
    server = SERVERS[name]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    watched = tmp_path / "watched.txt"
    watched.write_text("0")
    db = tmp_path / "jobs.db"
    env = {"JOBIFY_STORE": f"sqlite:///{db}", "JOBIFY_SHUTDOWN_GRACE": str(GRACE),
           "SERVERS_APP_EAGER": "1", "PYTHONPATH": os.pathsep.join(
               [HERE, os.environ.get("PYTHONPATH", "")]), **server.env}
    with run_server(server.command(port, str(watched)), url, env=env) as process:
        accepted = requests.post(url + "/sleep", headers={"X-Job-Flag": "ON"}, timeout=10)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["jobId"]
        store = SQLiteStore(str(db))
        # Running, and past its first progress write: the long-poll below
        # must wait for the stop, not return on that change.
        _wait_for(lambda: store.get(job_id).progress.message == "sleeping", 10, "job running")

        long_poll: dict[str, t.Any] = {}
        poller = threading.Thread(target=_long_poll, args=(url, job_id, long_poll))
        poller.start()
        assert requests.get(url + "/ping", timeout=5).status_code == 200  # others answered
        if server.blocking:  # capped: answered at once, and told so
            poller.join(5)
            assert long_poll["headers"].get("X-Job-Max-Wait") == "0"
            assert long_poll["took"] < 1.0
        else:
            time.sleep(0.3)  # the long-poll is waiting in the server
            assert poller.is_alive()

        stopped_at = time.monotonic()
        _stop(server.stop, process, url, watched)
        job = _wait_for(lambda: _final(store, job_id), GRACE + SLACK + 5, "job final")
        took = time.monotonic() - stopped_at
        poller.join(LONG_POLL_END + 5)

    assert job.status.value == "failed" and job.error is not None, job
    assert job.error.type == "shutdown", job.error
    assert took < GRACE + SLACK, f"{name}: final after {took:.2f} s"
    if not server.blocking:
        assert long_poll["at"] - stopped_at < server.long_poll_end, long_poll
        assert long_poll["status"] in (200, 503), long_poll
    print(f"\n{name}: stop to final status {took:.2f} s,"
          f" long-poll answered after {long_poll['at'] - stopped_at:.2f} s")


def _long_poll(url: str, job_id: str, out: dict[str, t.Any]) -> None:
    began = time.monotonic()
    try:
        answer = requests.get(f"{url}/jobs/{job_id}?wait=20", timeout=30)
        out.update(status=answer.status_code, headers=dict(answer.headers))
    except requests.ConnectionError as exc:  # the server closed it: not an answer
        out.update(status=None, error=str(exc), headers={})
    out.update(at=time.monotonic(), took=time.monotonic() - began)


def _stop(how: str, process: t.Any, url: str, watched: t.Any) -> None:
    if how.startswith("SIG"):  # "SIGTERM", or "SIGTERM,SIGQUIT": the second in the grace
        for n, name in enumerate(how.split(",")):
            if n:
                time.sleep(GRACE / 3)
            process.send_signal(getattr(signal, name))
    elif how == "max-requests":  # the worker recycles after the 30th request
        for _ in range(40):
            try:
                requests.get(url + "/ping", timeout=5)
            except requests.ConnectionError:
                break
    elif how == "reload":
        watched.write_text("1")
        later = time.time() + 5
        os.utime(watched, (later, later))
    else:
        raise AssertionError(how)


def _final(store: SQLiteStore, job_id: str) -> Job | None:
    job = store.get(job_id)
    return job if job is not None and job.is_final else None


def _wait_for(check: t.Callable[[], t.Any], timeout: float, what: str) -> t.Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
