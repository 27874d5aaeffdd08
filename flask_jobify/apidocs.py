"""Serving the jobs API's documentation: its spec at
``{prefix}/openapi.json``, Swagger UI at ``{prefix}/docs``
(``JOBIFY_SWAGGER_UI``), and the registration with the app's own
flask-smorest ``Api``, found by itself (``JOBIFY_AUTO_REGISTER_API``)."""
from __future__ import annotations

import typing as t

import flask
from flask import Flask, appcontext_pushed, current_app, render_template_string, url_for

from .config import Settings
from .openapi import JobifyPlugin, build_spec, register_api

__all__ = ["add_spec_routes", "watch_for_api"]

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


def watch_for_api(app: Flask) -> None:
    """Register the jobs endpoints in ``app``'s flask-smorest ``Api`` objects
    at the next app context pushed once one exists, whichever of the Api
    and the extension came first (``JOBIFY_AUTO_REGISTER_API``)."""
    appcontext_pushed.connect(_register_found_apis, sender=app)


def _register_found_apis(app: Flask, **_: t.Any) -> None:
    """Called at each app context pushed: cheap once every Api is done."""
    state = app.extensions.get("jobify")
    smorest = app.extensions.get("flask-smorest")
    if state is None or not state.settings.auto_register_api or not isinstance(smorest, dict):
        return
    for entry in (smorest.get("apis") or {}).values():
        api = entry.get("ext_obj") if isinstance(entry, dict) else None
        spec = getattr(api, "spec", None)
        if spec is None or any(isinstance(p, JobifyPlugin) for p in spec.plugins):
            continue
        with state.wrap_lock:  # two first requests at once register once
            register_api(app, state, api, auto=True)


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
        spec_url=url_for("jobify.openapi_json"),
    )
