"""GET /api/openapi.json: the API described for scripts, as OpenAPI 3.1.

Nothing here is written twice: paths and methods come from the URL map, who may call a route
from its `@allow` rule, and its query, body and form from the models it `@takes`
(app/api/boundary.py). `tests/test_openapi.py` checks the document against every route.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel

from app.auth.access import PUBLIC, UNSAFE_METHODS, allow
from app.auth.tokens import SESSION_COOKIE

bp = Blueprint("openapi", __name__)
PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
SCHEMAS = "#/components/schemas/{model}"
CONVERTED = {"int": {"type": "integer"}, "float": {"type": "number"}}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, for scripts"},
                "message": {"type": "string", "description": "one line, for people"},
            },
        }
    },
}


@bp.get("/api/openapi.json")
@allow("viewer")
def openapi_document():
    """This document. Any signed-in role may read it (an API token will do)."""
    document = current_app.extensions.get("openapi")
    if document is None:  # the routes never change while the app runs
        document = current_app.extensions["openapi"] = describe(current_app)
    return jsonify(document)


def describe(app: Flask) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        view = app.view_functions[rule.endpoint]
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        path = PARAMETER.sub(r"{\2}", rule.rule)
        for method in methods:
            operation = _operation(rule.rule, rule.endpoint, view, method, schemas)
            if len(methods) > 1:
                operation["operationId"] += f"_{method.lower()}"
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backoffice API",
            "version": _version(),
            "description": "JSON in and out. A session (cookie, with X-CSRF-Token on writes) "
            "or an API token (Authorization: Bearer). Errors: {error: {code, message}}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backoffice")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def _operation(
    rule: str, endpoint: str, view: Any, method: str, schemas: dict[str, Any]
) -> dict[str, Any]:
    details = " ".join((view.__doc__ or "").split())
    access = getattr(view, "access_rule", None)
    takes = getattr(view, "takes", {})
    operation: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "tags": [endpoint.split(".")[0]],
        "summary": endpoint.split(".")[-1].replace("_", " ").capitalize(),
        "x-access": access,
        "security": _security(access, method, session_only=getattr(view, "session_only", False)),
        "parameters": _path_parameters(rule) + _query_parameters(takes.get("query")),
        "responses": {
            "2XX": {"description": "done; the body (if any) is JSON"},
            "4XX": _error("refused: the error's code says why"),
            "5XX": _error("a database is unavailable (503) or an internal error"),
        },
    }
    if details:
        operation["description"] = details
    if access and access != PUBLIC:
        operation["description"] = (
            f"Needs the {access} role. " + operation.get("description", "")
        ).strip()
    if takes.get("body") is not None:
        operation["requestBody"] = {
            "required": not takes.get("body_optional"),
            "content": {"application/json": {"schema": _schema(takes["body"], schemas)}},
        }
    elif takes.get("form") is not None:
        form = takes["form"]
        schema = form.model_json_schema(ref_template=SCHEMAS)
        for name in form.files:
            schema["properties"][name] = {"type": "string", "format": "binary"}
            schema.setdefault("required", []).append(name)
        operation["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    return operation


def _security(access: str | None, method: str, *, session_only: bool) -> list[dict[str, list]]:
    if access == PUBLIC:
        return []
    session = {"session": [], "csrf": []} if method in UNSAFE_METHODS else {"session": []}
    return [session] if session_only else [session, {"token": []}]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": SCHEMAS.format(model="Error")}}},
    }


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": CONVERTED.get(converter or "", {"type": "string"}),
        }
        for converter, name in PARAMETER.findall(rule)
    ]


def _query_parameters(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=SCHEMAS)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required, "schema": field}
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    return parameters


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """The model's schema under components (the models it refers to as well); its $ref."""
    schema = model.model_json_schema(ref_template=SCHEMAS)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": SCHEMAS.format(model=model.__name__)}
