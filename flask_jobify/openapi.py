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

When the app has a flask-smorest ``Api`` (created before or after
:class:`~flask_jobify.Jobify`), the first app context pushed once both
exist registers the jobs endpoints in its spec as ``register_api`` would
(``JOBIFY_AUTO_REGISTER_API``); every request and ``flask openapi``
command pushes one.

Jobifiability is per endpoint *and method*: a ``MethodView`` whose
``post`` carries ``@jobify.job`` documents ``post`` as a job, not ``get``.

Error bodies are :class:`~flask_jobify.schemas.ErrorSchema` everywhere
(component ``JobifyError``).
"""
from __future__ import annotations

import typing as t

from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from flask_smorest.spec.plugins import FlaskPlugin
from flask_smorest.utils import load_info_from_docstring

from .idempotency import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH
from .options import looks_decorated, options_of
from .preferences import MIN_RESULT_TTL, MIN_TIMEOUT
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



def jobifiable_methods(app: Flask, endpoint: str, methods: t.Iterable[str], *,
                       all_views: bool) -> set[str]:
    """The HTTP ``methods`` (upper case) of ``endpoint`` whose requests may
    run as jobs: all of them for a decorated view (or a plain one with
    ``JOBIFY_ALL_VIEWS``); for a class-based view (``View.as_view``),
    those whose method carries ``@jobify.job`` (``HEAD`` follows ``GET``
    when the class has no ``head``)."""
    methods = {method.upper() for method in methods}
    if endpoint == "static" or endpoint.startswith(_BLUEPRINT + "."):
        return set()
    view = app.view_functions.get(endpoint)
    if view is None:
        return set()
    if options_of(view) is not None or (all_views and not looks_decorated(view)):
        return methods
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return set()
    found = set()
    for method in methods:
        handler = getattr(view_class, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = getattr(view_class, "get", None)
        if handler is not None and options_of(handler) is not None:
            found.add(method)
    return found


def is_jobifiable(app: Flask, endpoint: str, *, all_views: bool) -> bool:
    """Whether requests to ``endpoint`` may run as jobs, for some method."""
    rules = app.url_map.iter_rules(endpoint) if endpoint in app.view_functions else ()
    methods = {method for rule in rules for method in rule.methods or ()}
    return bool(jobifiable_methods(app, endpoint, methods, all_views=all_views))


def register_components(spec: APISpec, settings: Settings) -> None:
    """Add the shared schemas, header parameters and responses to ``spec``
    (once). Parameters and responses are lazy: they appear when used."""
    components = spec.components
    if "AcceptedJob" in components.schemas:
        return
    for name, schema_class in SCHEMAS:
        components.schema(name, schema=schema_class)
        if spec.openapi_version.major == 3 and spec.openapi_version.minor == 0:
            _nullable_refs(components.schemas[name])
    headers = (
        ("JobFlag", JOB_FLAG_HEADER, {"type": "string", "enum": ["ON", "OFF"]},
         ("ON: run the request as a background job and answer 202 at once."
          " OFF: run it now, even with Prefer: respond-async.")),
        ("Prefer", "Prefer", {"type": "string", "example": "respond-async, wait=10"},
         ("RFC 7240. respond-async runs the request as a job; wait=N waits up to N"
          f" seconds (at most {settings.max_wait:g}) for it to end and then answers"
          " with its own response. With a job, job-timeout=N asks for a shorter time"
          f" limit (at least {MIN_TIMEOUT:g} s, never longer than the operation's) and"
          f" job-ttl=N for how long the finished job is kept (at least {MIN_RESULT_TTL:g} s,"
          " at most the operation's); Preference-Applied answers what was applied.")),
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
            "Preference-Applied": {
                "description": "RFC 7240: the preferences honoured, with the values applied"
                               " (respond-async, job-timeout=30, job-ttl=600)",
                "required": False, "schema": {"type": "string"}},
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


def _nullable_refs(schema: dict[str, t.Any]) -> None:
    """Write a nullable nested schema as OpenAPI 3.0 says it,
    ``{"allOf": [ref], "nullable": true}``, not as apispec does,
    ``{"anyOf": [ref, {"type": "object", "nullable": true}]}``, in which
    client generators see a second, empty object type."""
    for prop in (schema.get("properties") or {}).values():
        options = prop.get("anyOf")
        if (isinstance(options, list) and len(options) == 2 and "$ref" in options[0]
                and options[1] == {"type": "object", "nullable": True}):
            del prop["anyOf"]
            prop["allOf"], prop["nullable"] = [options[0]], True


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
        #: Whether it was registered by itself (:func:`watch_for_api`).
        self.auto = False

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
        methods = jobifiable_methods(self.app, rule.endpoint, rule.methods or (),
                                     all_views=self.settings.all_views)
        for method, operation in operations.items():
            if method.upper() in methods:
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


def register_api(app: Flask, state: JobifyState, api: Api, *, auto: bool = False) -> None:
    """Document the jobs endpoints and jobifiable operations in ``api``'s
    spec; see :meth:`flask_jobify.Jobify.register_api`.

    :param auto: registered by itself (:func:`watch_for_api`): a later
        explicit call then does nothing.
    :raises RuntimeError: if ``register_api`` was called for ``api`` before.
    """
    spec = api.spec
    assert spec is not None, "call Api.init_app(app) before register_api(api)"
    for existing in spec.plugins:
        if isinstance(existing, JobifyPlugin):
            if existing.auto or auto:
                return
            raise RuntimeError("The jobs endpoints are already in this Api's spec.")
    register_components(spec, state.settings)
    plugin = JobifyPlugin(app, state.settings)
    plugin.auto = auto
    plugin.init_spec(spec)
    spec.plugins.append(plugin)
    _document_jobs_blueprint(app, spec, api.config)
    # Operations the Api documented before this call.
    paths = spec.to_dict().get("paths", {})
    for rule in app.url_map.iter_rules():
        methods = jobifiable_methods(app, rule.endpoint, rule.methods or (),
                                     all_views=state.settings.all_views)
        documented = paths.get(FlaskPlugin.flaskpath2openapi(rule.rule), {})
        operations = {
            method: operation for method, operation in documented.items()
            if method.upper() in methods and isinstance(operation, dict)
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
        methods = jobifiable_methods(app, rule.endpoint, rule.methods or (),
                                     all_views=settings.all_views)
        if not methods - {"HEAD", "OPTIONS"}:
            continue
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        operations = {
            method.lower(): {
                **load_info_from_docstring(
                    getattr(getattr(view_class, method.lower(), None), "__doc__", None)
                    or view.__doc__ or ""),
                "responses": {"default": {"description": "The view's own response"}},
            }
            for method in sorted(methods - {"HEAD", "OPTIONS"})
        }
        spec.path(rule=_Rule(rule), operations=operations)
    return spec.to_dict()


__all__ = [
    "OPENAPI_VERSION", "OPERATION_IDS", "SCHEMAS", "JobifyPlugin", "build_spec",
    "document_job_operation", "is_jobifiable", "jobifiable_methods", "register_api",
    "register_components",
]
