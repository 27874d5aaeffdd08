"""Stop signals and one-request-at-a-time servers (``flask_jobify.serving``).

The real servers are in ``test_servers.py``; these check the parts a
server cannot show: one handler for many apps, and what the environ says."""
from __future__ import annotations

import signal
import typing as t

import pytest
from flask import Flask

from flask_jobify import Jobify
from flask_jobify.serving import serves_one_at_a_time


@pytest.fixture
def sigterm() -> t.Iterator[list[int]]:
    """A server's SIGTERM handler, recording calls; restored afterwards."""
    calls: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGTERM, before)


def _app() -> Flask:
    app = Flask(__name__)
    app.config["JOBIFY_STORE"] = "memory://"
    Jobify(app)
    return app


def test_serving_one_sigterm_handler_stops_every_app_then_the_servers(sigterm):
    first, second = _app(), _app()
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    assert handler.previous is not signal.SIG_DFL  # type: ignore[union-attr]
    assert set(handler.states) == {  # type: ignore[union-attr]
        first.extensions["jobify"], second.extensions["jobify"]}  # one handler, both apps
    handler(signal.SIGTERM, None)
    assert first.extensions["jobify"].stopping and second.extensions["jobify"].stopping
    assert sigterm == [signal.SIGTERM]  # the server's handler ran, once


def test_serving_sigterm_without_a_handler_exits_in_order():
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        app = _app()
        with pytest.raises(SystemExit):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert app.extensions["jobify"].closed
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize(("environ", "blocking"), [
    ({"wsgi.multithread": False, "SERVER_SOFTWARE": "gunicorn/23"}, True),
    ({"wsgi.multithread": False, "uwsgi.version": b"2.0"}, True),
    ({"wsgi.multithread": True, "SERVER_SOFTWARE": "waitress"}, False),
    ({"wsgi.multithread": False}, False),  # Werkzeug's test client
])
def test_serving_one_request_at_a_time_from_the_environ(environ, blocking):
    assert serves_one_at_a_time(environ) is blocking


def test_serving_a_caught_ctrl_c_ends_long_polls_and_keeps_taking_jobs():
    """Python's own SIGINT handler raises KeyboardInterrupt, which a REPL or
    `flask shell` catches and lives on: jobs must still be taken (they got
    503 for the rest of the session), while long-polls waiting then end."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app = Flask(__name__)
        app.config["JOBIFY_STORE"] = "memory://"
        jobify = Jobify(app)

        @app.post("/work")
        @jobify.job
        def work() -> t.Any:
            return {"ok": True}

        state = app.extensions["jobify"]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert not state.stopping
        assert state.long_polls_ended_at > float("-inf")
        assert app.test_client().post("/work", headers={"X-Job-Flag": "ON"}).status_code == 202
        jobify.shutdown(app, grace=1)
    finally:
        signal.signal(signal.SIGINT, before)
