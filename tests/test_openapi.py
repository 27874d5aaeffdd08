"""The OpenAPI spec: served by Flask-Jobify, or merged into a smorest Api's."""
from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields
from openapi_spec_validator import validate

from flask_jobify import ConfigWarning, Jobify

JOB_PARAMS = [
    {"$ref": "#/components/parameters/JobFlag"},
    {"$ref": "#/components/parameters/Prefer"},
    {"$ref": "#/components/parameters/JobCallback"},
    {"$ref": "#/components/parameters/IdempotencyKey"},
]
JOB_RESPONSES = {
    "202": {"$ref": "#/components/responses/JobAccepted"},
    "400": {"$ref": "#/components/responses/InvalidJobHeader"},
    "422": {"$ref": "#/components/responses/IdempotencyKeyReused"},
    "429": {"$ref": "#/components/responses/TooManyJobs"},
    "503": {"$ref": "#/components/responses/JobQueueFull"},
}
JOBS_PATHS = {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result"}
ERROR_REF = {"$ref": "#/components/schemas/JobifyError"}


class ReportSchema(Schema):
    year = fields.Integer(required=True)


def plain_app(**config: t.Any) -> tuple[Flask, Jobify]:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://", **config)
    jobify = Jobify(app)

    @app.post("/reports/<int:year>")
    @jobify.job
    def make_report(year: int) -> dict[str, int]:
        """Make a report.

        Slow: ask for a job.
        """
        return {"year": year}

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    return app, jobify


def api_app(*, register_first: bool) -> Flask:
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE="memory://", API_TITLE="Reports", API_VERSION="1",
        OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/",
    )
    api = Api(app)
    jobify = Jobify(app)
    blp = Blueprint("reports", __name__, url_prefix="/reports")

    @blp.route("/<int:year>", methods=["POST"])
    @blp.response(200, ReportSchema)
    @jobify.job
    def make_report(year: int) -> dict[str, int]:
        """Make a report."""
        return {"year": year}

    @blp.route("/latest")
    @blp.response(200, ReportSchema)
    def latest() -> dict[str, int]:
        return {"year": 2026}

    if register_first:
        jobify.register_api(api)
        api.register_blueprint(blp)
    else:
        api.register_blueprint(blp)
        jobify.register_api(api)
    return app


def get_spec(app: Flask, url: str) -> dict[str, t.Any]:
    response = app.test_client().get(url)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec = response.get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    return spec


def assert_jobs_endpoints(spec: dict[str, t.Any]) -> None:
    paths = spec["paths"]
    assert set(paths) >= JOBS_PATHS
    assert set(paths["/jobs/{job_id}"]) >= {"get", "delete"}
    status = paths["/jobs/{job_id}"]["get"]
    assert status["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Job"
    }
    for code in ("400", "404", "422"):
        assert status["responses"][code]["content"]["application/json"]["schema"] == ERROR_REF
    assert status["responses"]["default"] == {"$ref": "#/components/responses/JobifyDefaultError"}
    cancel = paths["/jobs/{job_id}"]["delete"]["responses"]
    assert {"200", "202", "204", "400", "404"} <= set(cancel)
    result = paths["/jobs/{job_id}/result"]["get"]["responses"]
    assert result["409"]["content"]["application/json"]["schema"] == ERROR_REF
    listing = paths["/jobs"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobPage"
    }
    assert {p["name"] for p in listing["parameters"]} == {"status", "operation", "limit", "cursor"}
    # The spec and docs routes stay out of the spec.
    assert not any("openapi" in path or path.endswith("/docs") for path in paths)


def assert_components(spec: dict[str, t.Any]) -> None:
    components = spec["components"]
    assert {"Job", "AcceptedJob", "JobPage", "JobifyError"} <= set(components["schemas"])
    assert set(components["schemas"]["AcceptedJob"]["properties"]) == {
        "jobId", "status", "statusUrl", "resultUrl"
    }
    assert components["schemas"]["JobifyError"]["required"] == ["error"]
    assert components["parameters"]["JobFlag"] == {
        "in": "header",
        "name": "X-Job-Flag",
        "required": False,
        "schema": {"type": "string", "enum": ["ON", "OFF"]},
        "description": components["parameters"]["JobFlag"]["description"],
    }
    assert components["parameters"]["Prefer"]["in"] == "header"
    accepted = components["responses"]["JobAccepted"]
    assert accepted["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AcceptedJob"
    }
    assert set(accepted["headers"]) == {"Location", "Retry-After", "X-Job-Id", "Preference-Applied"}
    assert accepted["links"]["GetJob"] == {
        "operationId": "getJob", "parameters": {"job_id": "$response.body#/jobId"}
    }
    operation_ids = {
        operation["operationId"] for path, item in spec["paths"].items()
        if path.startswith("/jobs") for operation in item.values() if "operationId" in operation
    }
    assert operation_ids == {"listJobs", "getJob", "getJobResult", "cancelJob"}
    assert all(header["required"] for name, header in accepted["headers"].items()
               if name != "Preference-Applied")
    for name in ("InvalidJobHeader", "IdempotencyKeyReused", "JobQueueFull"):
        assert components["responses"][name]["content"]["application/json"]["schema"] == ERROR_REF


def test_openapi_plain_app_serves_spec():
    app, _ = plain_app()
    spec = get_spec(app, "/jobs/openapi.json")
    assert_jobs_endpoints(spec)
    assert_components(spec)
    assert spec["paths"]["/reports/{year}"] == {
        "parameters": [{
            "in": "path", "name": "year", "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }],
        "post": {
            "summary": "Make a report.",
            "description": "Slow: ask for a job.",
            "parameters": JOB_PARAMS,
            "responses": {"default": {"description": "The view's own response"}, **JOB_RESPONSES},
        },
    }
    assert "/ping" not in spec["paths"]


def test_openapi_all_views_documents_every_view():
    app, _ = plain_app(JOBIFY_ALL_VIEWS=True)
    spec = get_spec(app, "/jobs/openapi.json")
    assert spec["paths"]["/ping"]["get"]["parameters"] == JOB_PARAMS
    assert "/static/{filename}" not in spec["paths"]


def test_openapi_spec_route_wins_over_job_id():
    app, _ = plain_app()
    client = app.test_client()
    assert client.get("/jobs/openapi.json").status_code == 200
    response = client.get("/jobs/openapi.jsonx")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_job_id"


def test_openapi_prefix_is_followed():
    app, _ = plain_app(JOBIFY_URL_PREFIX="/api/jobs")
    spec = get_spec(app, "/api/jobs/openapi.json")
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/result"} <= set(spec["paths"])


def test_openapi_swagger_ui_off_by_default():
    app, _ = plain_app()
    response = app.test_client().get("/jobs/docs")
    assert response.status_code in (400, 404)
    assert response.get_json()["error"]["code"] in ("invalid_job_id", "job_not_found")


def test_openapi_swagger_ui_page_references_spec():
    app, _ = plain_app(
        JOBIFY_SWAGGER_UI=True, JOBIFY_SWAGGER_UI_URL="https://cdn.example.com/swagger"
    )
    response = app.test_client().get("/jobs/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '"/jobs/openapi.json"' in page
    assert "https://cdn.example.com/swagger/swagger-ui-bundle.js" in page
    assert "https://cdn.example.com/swagger/swagger-ui.css" in page


@pytest.mark.parametrize("register_first", [True, False], ids=["before", "after"])
def test_openapi_api_spec_has_jobs_and_job_operations(register_first):
    app = api_app(register_first=register_first)
    spec = get_spec(app, "/openapi.json")
    assert_jobs_endpoints(spec)
    assert_components(spec)
    operation = spec["paths"]["/reports/{year}"]["post"]
    assert operation["parameters"] == JOB_PARAMS
    assert operation["responses"] == {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}},
        },
        "default": {"$ref": "#/components/responses/DEFAULT_ERROR"},
        **JOB_RESPONSES,
    }
    latest = spec["paths"]["/reports/latest"]["get"]
    assert "parameters" not in latest
    assert "202" not in latest["responses"]
    # flask-smorest's own Error schema is left alone.
    assert "Error" in spec["components"]["schemas"]
    assert {tag["name"] for tag in spec["tags"]} == {"jobify", "reports"}


def test_openapi_register_api_twice_is_refused():
    app = api_app(register_first=True)
    api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
    with pytest.raises(RuntimeError, match="already"):
        Jobify().register_api(api)


def test_openapi_own_operation_doc_wins():
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE="memory://", API_TITLE="T", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
    )
    api = Api(app)
    jobify = Jobify(app)
    jobify.register_api(api)
    blp = Blueprint("things", __name__, url_prefix="/things")

    @blp.route("", methods=["POST"])
    @blp.response(200, ReportSchema)
    @blp.alt_response(400, schema=ReportSchema, description="Mine")
    @jobify.job
    def make() -> dict[str, int]:
        return {"year": 1}

    api.register_blueprint(blp)
    spec = get_spec(app, "/openapi.json")
    responses = spec["paths"]["/things"]["post"]["responses"]
    assert responses["400"]["description"] == "Mine"
    assert responses["202"] == JOB_RESPONSES["202"]


def test_openapi_api_all_views_documents_undecorated_and_marked_operations():
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE="memory://", JOBIFY_ALL_VIEWS=True, API_TITLE="T", API_VERSION="1",
        OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/",
    )
    api = Api(app)
    jobify = Jobify(app)
    jobify.register_api(api)
    blp = Blueprint("things", __name__, url_prefix="/things")

    @blp.route("/<int:thing_id>", methods=["GET", "PUT"])
    @blp.response(200, ReportSchema)
    @jobify.job
    def thing(thing_id: int) -> dict[str, int]:
        return {"year": thing_id}

    @blp.route("/plain")
    def plain() -> dict[str, int]:
        return {"year": 1}

    # Decorated, not marked: JOBIFY_ALL_VIEWS leaves it synchronous (its
    # decorators may be guards), and the spec says so.
    @blp.route("/decorated")
    @blp.response(200, ReportSchema)
    def decorated() -> dict[str, int]:
        return {"year": 2}

    api.register_blueprint(blp)
    with pytest.warns(ConfigWarning, match="things.decorated"):
        spec = get_spec(app, "/openapi.json")
    for path, method in [("/things/{thing_id}", "get"), ("/things/{thing_id}", "put"),
                         ("/things/plain", "get")]:
        operation = spec["paths"][path][method]
        assert operation["parameters"] == JOB_PARAMS
        assert operation["responses"]["202"] == JOB_RESPONSES["202"]
    assert "parameters" not in spec["paths"]["/things/decorated"]["get"]
    assert "202" not in spec["paths"]["/things/decorated"]["get"]["responses"]
    client = app.test_client()
    assert client.get("/things/plain", headers={"X-Job-Flag": "ON"}).status_code == 202
    assert client.get("/things/decorated", headers={"X-Job-Flag": "ON"}).status_code == 200
    # The jobs endpoints themselves are never jobifiable.
    assert not any(p in JOB_PARAMS for p in spec["paths"]["/jobs"]["get"]["parameters"])
    assert "202" not in spec["paths"]["/jobs"]["get"]["responses"]


def smorest_app(*, api_first: bool, **config: t.Any) -> tuple[Flask, Jobify, Api]:
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE="memory://", API_TITLE="T", API_VERSION="1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", **config,
    )
    if api_first:
        api = Api(app)
        jobify = Jobify(app)
    else:
        jobify = Jobify(app)
        api = Api(app)
    return app, jobify, api


def method_view_blueprint(jobify: Jobify) -> Blueprint:
    from flask.views import MethodView

    blp = Blueprint("things", __name__, url_prefix="/things")

    @blp.route("")
    class Things(MethodView):
        @blp.response(200, ReportSchema)
        def get(self) -> dict[str, int]:
            """List things."""
            return {"year": 1}

        @blp.arguments(ReportSchema)
        @blp.response(201, ReportSchema)
        @jobify.job
        def post(self, data: dict[str, int]) -> dict[str, int]:
            """Make a thing."""
            return data

    return blp


@pytest.mark.parametrize("api_first", [True, False], ids=["api-first", "jobify-first"])
def test_openapi_api_found_without_register_api(api_first):
    app, jobify, api = smorest_app(api_first=api_first)
    api.register_blueprint(method_view_blueprint(jobify))
    spec = get_spec(app, "/openapi.json")
    assert_jobs_endpoints(spec)
    assert "JobAccepted" in spec["components"]["responses"]
    # Per method: the decorated post is a job, the get is not.
    post = spec["paths"]["/things"]["post"]
    assert post["parameters"] == JOB_PARAMS
    assert post["responses"]["202"] == JOB_RESPONSES["202"]
    assert "requestBody" in post
    get = spec["paths"]["/things"]["get"]
    assert "parameters" not in get and "202" not in get["responses"]
    # ...and it runs as one.
    client = app.test_client()
    assert client.post("/things", json={"year": 5}, headers={"X-Job-Flag": "ON"}).status_code == 202
    assert client.get("/things", headers={"X-Job-Flag": "ON"}).status_code == 200
    # An explicit register_api after the automatic one changes nothing.
    jobify.register_api(api)
    assert get_spec(app, "/openapi.json") == spec


def test_openapi_api_auto_registration_can_be_turned_off():
    app, jobify, api = smorest_app(api_first=True, JOBIFY_AUTO_REGISTER_API=False)
    api.register_blueprint(method_view_blueprint(jobify))
    spec = get_spec(app, "/openapi.json")
    assert "/jobs" not in spec["paths"]
    jobify.register_api(api)
    spec = get_spec(app, "/openapi.json")
    assert_jobs_endpoints(spec)
    assert spec["paths"]["/things"]["post"]["parameters"] == JOB_PARAMS


def test_openapi_method_view_without_api():
    from flask.views import MethodView

    app = Flask(__name__)
    app.config.update(JOBIFY_STORE="memory://")
    jobify = Jobify(app)

    class Things(MethodView):
        def get(self) -> str:
            return "list"

        @jobify.job
        def put(self) -> str:
            """Replace things."""
            return "done"

    app.add_url_rule("/things", view_func=Things.as_view("things"))
    spec = get_spec(app, "/jobs/openapi.json")
    assert set(spec["paths"]["/things"]) == {"put"}
    assert spec["paths"]["/things"]["put"]["summary"] == "Replace things."


def test_openapi_nullable_nested_is_one_type():
    app, _ = plain_app()
    spec = get_spec(app, "/jobs/openapi.json")
    error = spec["components"]["schemas"]["Job"]["properties"]["error"]
    assert error["allOf"] == [{"$ref": "#/components/schemas/JobError"}]
    assert error["nullable"] is True and "anyOf" not in error


def test_openapi_documents_see_other():
    app, _ = plain_app()
    spec = get_spec(app, "/jobs/openapi.json")
    see_other = spec["paths"]["/jobs/{job_id}"]["get"]["responses"]["303"]
    assert see_other["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Job"}
    assert see_other["headers"]["Location"]["required"] is True
    job = spec["components"]["schemas"]["Job"]["properties"]
    assert {"estimatedCompletionAt", "queuePosition", "options"} <= set(job)
