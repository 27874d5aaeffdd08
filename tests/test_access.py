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



def create_proxied_app(store: str) -> tuple[Flask, Jobify]:
    """A debug app with the dashboard, behind ProxyFix (one proxy trusted)."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=store, DEBUG=True, JOBIFY_DASHBOARD=True,
                      SECRET_KEY="access-test")
    jobify = Jobify(app)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    return app, jobify


@pytest.mark.parametrize(("addr", "headers"), [
    # a proxy on this machine (nginx, ngrok, a tunnel) forwards an outside caller
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),
    ("::1", {"Forwarded": "for=203.0.113.9"}),
    ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}),
    # an outside caller claims to be local to an app behind ProxyFix
    ("203.0.113.9", {"X-Forwarded-For": "127.0.0.1"}),
    ("203.0.113.9", {"X-Forwarded-For": "::1"}),
])
def test_without_a_check_a_forwarded_request_is_not_local(apps, addr, headers):
    app, _ = apps(create_proxied_app)
    client = app.test_client()
    assert client.get("/jobs/ui/", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    refused = client.get("/jobs/ui/", environ_base={"REMOTE_ADDR": addr}, headers=headers)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "access_denied"
