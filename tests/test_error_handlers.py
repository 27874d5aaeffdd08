"""The acceptance raises its errors: one handler renders them as JSON, and
an app's own handlers for a status code or a class restyle them."""
from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from flask_jobify import InvalidJobFlag, Jobify, JobifyHTTPError

BAD_FLAG = {"X-Job-Flag": "maybe"}


def build(register: t.Callable[[Flask], None] | None = None) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://")
    if register is not None:
        register(app)
    jobify = Jobify(app)

    @app.post("/work")
    @jobify.job
    def work() -> dict[str, bool]:
        return {"done": True}

    return app, jobify


def test_without_handlers_the_error_is_the_json_shape() -> None:
    app, jobify = build()
    answer = app.test_client().post("/work", headers=BAD_FLAG)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_job_flag"
    jobify.shutdown(app, grace=0)


@pytest.mark.parametrize("key", [400, InvalidJobFlag, JobifyHTTPError])
def test_an_app_handler_for_the_code_or_the_class_restyles_it(key: t.Any) -> None:
    def register(app: Flask) -> None:
        app.register_error_handler(key, lambda exc: ({"mine": exc.error_code}, exc.code))

    app, jobify = build(register)
    answer = app.test_client().post("/work", headers=BAD_FLAG)
    assert answer.status_code == 400
    assert answer.get_json() == {"mine": "invalid_job_flag"}
    jobify.shutdown(app, grace=0)


def test_a_catch_all_http_handler_does_not_reshape_it() -> None:
    """flask-smorest's Api renders every HTTPException its own way; the
    errors Flask-Jobify's clients read keep their shape."""
    def with_api(app: Flask) -> None:
        app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
        Api(app)

    app, jobify = build(with_api)
    generic = app.test_client().get("/nowhere")
    assert "error" not in (generic.get_json() or {})  # smorest's own shape elsewhere
    answer = app.test_client().post("/work", headers=BAD_FLAG)
    assert answer.get_json()["error"]["code"] == "invalid_job_flag"
    jobify.shutdown(app, grace=0)


def test_a_catch_all_registered_by_the_app_itself_is_left_alone() -> None:
    def register(app: Flask) -> None:
        app.register_error_handler(HTTPException, lambda exc: ({"all": exc.code}, exc.code))

    app, jobify = build(register)
    answer = app.test_client().post("/work", headers=BAD_FLAG)
    assert answer.get_json()["error"]["code"] == "invalid_job_flag"
    jobify.shutdown(app, grace=0)
