"""The admin surfaces' access rule (``Jobify.dashboard_access``)."""
from __future__ import annotations

import functools

import pytest
from flask import Flask

from flask_jobify import AccessDenied, Jobify

#: The access rule does not depend on the store: memory.
pytestmark = pytest.mark.stores("memory")


def create_app(store: str, *, debug: bool = False) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, DEBUG=debug)
    jobify = Jobify(app)
    return app, jobify


@pytest.fixture
def make_app(apps):
    """Build an app; shut it down afterwards."""
    return functools.partial(apps, create_app)


@pytest.mark.parametrize(("debug", "addr", "allowed"), [
    (False, "127.0.0.1", False),
    (True, "127.0.0.1", True),
    (True, "::1", True),
    (True, "10.0.0.7", False),
])
def test_without_a_check_only_local_requests_to_a_debug_app(make_app, debug, addr, allowed):
    app, jobify = make_app(debug=debug)
    with app.test_request_context(environ_base={"REMOTE_ADDR": addr}):
        if allowed:
            jobify.require_admin()
            app.extensions["jobify"].require_admin()
        else:
            with pytest.raises(AccessDenied) as info:
                app.extensions["jobify"].require_admin()
            assert info.value.code == 403
            assert info.value.get_response().get_json()["error"]["code"] == "access_denied"


def test_the_check_decides_even_after_init_app(make_app):
    app, jobify = make_app(debug=True)
    answers = iter([False, True])
    jobify.dashboard_access(lambda: next(answers))
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        with pytest.raises(AccessDenied):
            app.extensions["jobify"].require_admin()
        app.extensions["jobify"].require_admin()
