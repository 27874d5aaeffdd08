"""OpenAPI: the jobs endpoints and every jobifiable operation, documented.

Two ways in, one description:

- With :class:`flask_smorest.Api`, ``jobify.register_api(api)`` puts the
  jobs endpoints in the Api's spec and installs :class:`JobifyPlugin`, which
  gives every jobifiable operation the ``X-Job-Flag`` and ``Prefer`` header
  parameters and the ``202``, ``400`` (invalid flag) and ``503`` (queue full)
  responses.
- Without one, ``GET {JOBIFY_URL_PREFIX}/openapi.json`` serves a spec of the
  jobs endpoints and every jobifiable operation, and, with
  ``JOBIFY_SWAGGER_UI``, ``{JOBIFY_URL_PREFIX}/docs`` a Swagger UI page.

Error bodies are :class:`~flask_jobify.schemas.ErrorSchema` everywhere
(component ``JobifyError``).
"""
from __future__ import annotations

import typing as t

import flask
from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, current_app, render_template_string, url_for
from flask_smorest.spec.plugins import FlaskPlugin
from flask_smorest.utils import load_info_from_docstring

from .idempotency import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH
from .options import looks_decorated, options_of
from .schemas import (
    AcceptedJobSchema,
    ErrorDetailSchema,
    ErrorSchema,
    JobErrorSchema,
    JobPageSchema,
    JobSchema,
    ProgressSchema,
)
from .trigger import JOB_FLAG_HEADER, JOB_ID_HEADER
from .webhooks import CALLBACK_HEADER

if t.TYPE_CHECKING:
    from flask_smorest import Api

    from .config import Settings
    from .state import JobifyState

#: OpenAPI version of the spec served at ``{prefix}/openapi.json``.
OPENAPI_VERSION = "3.0.3"

#: Component schemas, by name. ``ErrorSchema`` is ``JobifyError`` so that it
#: cannot clash with flask-smorest's own ``Error``.
SCHEMAS = (
    ("JobifyErrorDetail", ErrorDetailSchema),
    ("JobifyError", ErrorSchema),
    ("JobProgress", ProgressSchema),
    ("JobError", JobErrorSchema),
    ("Job", JobSchema),
    ("AcceptedJob", AcceptedJobSchema),
    ("JobPage", JobPageSchema),
)

_BLUEPRINT = "jobify"

#: ``operationId`` of each jobs endpoint, for client generators and links.
OPERATION_IDS = {
    "list_jobs": "listJobs",
    "job_status": "getJob",
    "job_result": "getJobResult",
    "cancel_job": "cancelJob",
}

_SWAGGER_UI_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{ title }}</title>
  <link rel="stylesheet" href="{{ assets }}swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ assets }}swagger-ui-bundle.js"></script>
  <script>
    SwaggerUIBundle({url: {{ spec_url|tojson }}, dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""


def is_jobifiable(app: Flask, endpoint: str, *, all_views: bool) -> bool:
    """Whether requests to ``endpoint`` may run as jobs."""
    if endpoint == "static" or endpoint.startswith(_BLUEPRINT + "."):
        return False
    view = app.view_functions.get(endpoint)
    return view is not None and (
        options_of(view) is not None or (all_views and not looks_decorated(view)))


def register_components(spec: APISpec, settings: Settings) -> None:
    """Add the shared schemas, header parameters and responses to ``spec``
    (once). Parameters and responses are lazy: they appear when used."""
    components = spec.components
    if "AcceptedJob" in components.schemas:
        return
    for name, schema_class in SCHEMAS:
        components.schema(name, schema=schema_class)
    headers = (
        ("JobFlag", JOB_FLAG_HEADER, {"type": "string", "enum": ["ON", "OFF"]},
         ("ON: run the request as a background job and answer 202 at once."
          " OFF: run it now, even with Prefer: respond-async.")),
        ("Prefer", "Prefer", {"type": "string", "example": "respond-async, wait=10"},
         ("RFC 7240. respond-async runs the request as a job; wait=N waits up to N"
          f" seconds (at most {settings.max_wait:g}) for it to end and then answers"
          " with its own response.")),
        ("JobCallback", CALLBACK_HEADER, {"type": "string", "format": "uri"},
         ("With a job: a public http(s) URL that gets the job record, signed, when"
          " the job ends.")),
        ("IdempotencyKey", IDEMPOTENCY_HEADER,
         {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
         ("With a job: the same key (for the same request) gets the same job back"
          " instead of a new one.")),
    )
    for component, header, schema, description in headers:
        components.parameter(component, "header", {
            "name": header, "description": description, "required": False, "schema": schema,
        }, lazy=True)
    components.response("JobAccepted", {
        "description": "Accepted as a job: poll Location, then fetch resultUrl",
        "headers": {
            "Location": {"description": "The job's status URL", "required": True,
                         "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds to wait before polling", "required": True,
                            "schema": {"type": "integer", "minimum": 0}},
            JOB_ID_HEADER: {"description": "The job's id", "required": True,
                            "schema": {"type": "string"}},
        },
        "content": {"application/json": {"schema": _ref(spec, "schema", "AcceptedJob")}},
        "links": {
            operation_id[0].upper() + operation_id[1:]: {
                "operationId": operation_id,
                "parameters": {"job_id": "$response.body#/jobId"},
            }
            for operation_id in ("getJob", "getJobResult", "cancelJob")
        },
    }, lazy=True)
    for name, description in (
        ("InvalidJobHeader", (f"{JOB_FLAG_HEADER} is neither ON nor OFF, or"
                              f" {CALLBACK_HEADER} or {IDEMPOTENCY_HEADER} was refused")),
        ("IdempotencyKeyReused", f"This {IDEMPOTENCY_HEADER} was used for another request"),
        ("JobQueueFull", ("Too many jobs are waiting, or the server is stopping;"
                          " retry after Retry-After seconds")),
        ("TooManyJobs", ("The caller has JOBIFY_MAX_RUNNING_PER_OWNER jobs that have not"
                         " finished; retry after Retry-After seconds")),
        ("JobifyDefaultError", "An error, in Flask-Jobify's error shape"),
    ):
        components.response(name, _error_response(spec, description), lazy=True)


def _ref(spec: APISpec, kind: str, name: str) -> dict[str, str]:
    return spec.components.get_ref(kind, name)


def _error_response(spec: APISpec, description: str) -> dict[str, t.Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(spec, "schema", "JobifyError")}},
    }


def document_job_operation(operation: dict[str, t.Any]) -> None:
    """Add the job header parameters and responses to one operation.

    What the operation documents itself (a header parameter of the same
    name, a response with the same status code) is kept.
    """
    parameters = operation.setdefault("parameters", [])
    names = {
        p.get("name", "").lower() for p in parameters
        if isinstance(p, dict) and p.get("in") == "header"
    }
    for ref, header in (("JobFlag", JOB_FLAG_HEADER), ("Prefer", "Prefer"),
                        ("JobCallback", CALLBACK_HEADER), ("IdempotencyKey", IDEMPOTENCY_HEADER)):
        if header.lower() not in names and ref not in parameters:
            parameters.append(ref)
    responses = operation.setdefault("responses", {})
    for status, ref in ((202, "JobAccepted"), (400, "InvalidJobHeader"),
                        (422, "IdempotencyKeyReused"), (429, "TooManyJobs"),
                        (503, "JobQueueFull")):
        if status not in responses and str(status) not in responses:
            responses[status] = ref


class JobifyPlugin(BasePlugin):
    """apispec plugin: documents jobifiable operations as they are added.

    Needs the ``rule`` that flask-smorest's ``FlaskPlugin`` passes along.
    Operations of the jobs blueprint get ``JobifyError`` as ``default``
    response.
    """

    def __init__(self, app: Flask, settings: Settings) -> None:
        super().__init__()
        self.app = app
        self.settings = settings

    def operation_helper(self, path: t.Any = None, operations: t.Any = None,
                         **kwargs: t.Any) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        if rule.endpoint.startswith(_BLUEPRINT + "."):
            operation_id = OPERATION_IDS.get(rule.endpoint.partition(".")[2])
            for operation in operations.values():
                operation.setdefault("responses", {})["default"] = "JobifyDefaultError"
                if operation_id is not None:
                    operation.setdefault("operationId", operation_id)
            return
        if is_jobifiable(self.app, rule.endpoint, all_views=self.settings.all_views):
            for method, operation in operations.items():
                if method.upper() in rule.methods:
                    document_job_operation(operation)


class _Rule:
    """A routing rule as flask-smorest's ``FlaskPlugin`` reads it: that
    plugin expects ``defaults`` to be a dict, which app routes leave ``None``."""

    def __init__(self, rule: t.Any) -> None:
        self._rule = rule
        self.defaults = rule.defaults or {}

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._rule, name)


class _DocApi:
    """What flask-smorest's doc callbacks ask of an ``Api``. No
    ``DEFAULT_ERROR`` response: the jobs endpoints document their own."""

    DEFAULT_ERROR_RESPONSE_NAME = None
    DEFAULT_REQUEST_BODY_CONTENT_TYPE = "application/json"
    DEFAULT_RESPONSE_CONTENT_TYPE = "application/json"

    def __init__(self, config: t.Mapping[str, t.Any] | None = None) -> None:
        self.config = config if config is not None else {}


def _document_jobs_blueprint(app: Flask, spec: APISpec, config: t.Any = None) -> None:
    blueprint = app.blueprints[_BLUEPRINT]
    blueprint.register_views_in_doc(  # type: ignore[attr-defined]
        _DocApi(config), app, spec, name=_BLUEPRINT, parameters=None
    )
    spec.tag({"name": _BLUEPRINT, "description": blueprint.description})  # type: ignore[attr-defined]


def register_api(app: Flask, state: JobifyState, api: Api) -> None:
    """Document the jobs endpoints and jobifiable operations in ``api``'s
    spec; see :meth:`flask_jobify.Jobify.register_api`."""
    spec = api.spec
    assert spec is not None, "call Api.init_app(app) before register_api(api)"
    if any(isinstance(plugin, JobifyPlugin) for plugin in spec.plugins):
        raise RuntimeError("The jobs endpoints are already in this Api's spec.")
    register_components(spec, state.settings)
    plugin = JobifyPlugin(app, state.settings)
    plugin.init_spec(spec)
    spec.plugins.append(plugin)
    _document_jobs_blueprint(app, spec, api.config)
    # Operations the Api documented before this call.
    paths = spec.to_dict().get("paths", {})
    for rule in app.url_map.iter_rules():
        if not is_jobifiable(app, rule.endpoint, all_views=state.settings.all_views):
            continue
        documented = paths.get(FlaskPlugin.flaskpath2openapi(rule.rule), {})
        operations = {
            method: operation for method, operation in documented.items()
            if method.upper() in (rule.methods or ()) and isinstance(operation, dict)
            and "responses" in operation
        }
        if operations:
            spec.path(rule=_Rule(rule), operations=operations)


def build_spec(app: Flask, state: JobifyState) -> dict[str, t.Any]:
    """The spec of the jobs endpoints and every jobifiable operation."""
    settings = state.settings
    spec = APISpec(
        title=app.config.get("API_TITLE") or app.name,
        version=str(app.config.get("API_VERSION") or "1"),
        openapi_version=OPENAPI_VERSION,
        plugins=[FlaskPlugin(), MarshmallowPlugin(), JobifyPlugin(app, settings)],
    )
    register_components(spec, settings)
    _document_jobs_blueprint(app, spec)
    for rule in app.url_map.iter_rules():
        if not is_jobifiable(app, rule.endpoint, all_views=settings.all_views):
            continue
        view = app.view_functions[rule.endpoint]
        info = load_info_from_docstring(view.__doc__ or "")
        operations = {
            method.lower(): {
                **info,
                "responses": {"default": {"description": "The view's own response"}},
            }
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        }
        spec.path(rule=_Rule(rule), operations=operations)
    return spec.to_dict()


def add_spec_routes(blueprint: flask.Blueprint, settings: Settings) -> None:
    """Serve the spec (and Swagger UI, when enabled) from the jobs blueprint.

    Added with Flask's own ``add_url_rule`` so that these routes stay out of
    the spec. Static rules: Werkzeug matches them before ``/<job_id>``.
    """
    add_rule = flask.Blueprint.add_url_rule
    add_rule(blueprint, "/openapi.json", "openapi_json", _openapi_json)
    if settings.swagger_ui:
        add_rule(blueprint, "/docs", "swagger_ui", _swagger_ui)


def _openapi_json() -> t.Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return flask.jsonify(build_spec(app, app.extensions["jobify"]))


def _swagger_ui() -> str:
    state = current_app.extensions["jobify"]
    return render_template_string(
        _SWAGGER_UI_PAGE,
        title=f"{current_app.name}: jobs API",
        assets=state.settings.swagger_ui_url.rstrip("/") + "/",
        spec_url=url_for(f"{_BLUEPRINT}.openapi_json"),
    )


__all__ = [
    "OPENAPI_VERSION", "OPERATION_IDS", "SCHEMAS", "JobifyPlugin", "add_spec_routes", "build_spec",
    "document_job_operation", "is_jobifiable", "register_api", "register_components",
]
