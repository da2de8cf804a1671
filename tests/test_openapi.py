"""GET /api/openapi.json: a valid OpenAPI 3.1 document that says what every route does.

The document is checked against the routes themselves: every API route is in it and nothing
else is, and what it declares of each route's input is what the route refuses.
"""

import re

from openapi_spec_validator import validate

from tests.conftest import create_user, login

METHODS = {"get", "post", "put", "patch", "delete"}


def api_operations(app) -> set[tuple[str, str]]:
    """(path in OpenAPI's spelling, method) of every route under /api/."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule)
            found |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def documented(document) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def concrete(path: str) -> str:
    """A URL for a documented path: every path parameter 1."""
    return re.sub(r"{\w+}", "1", path)


def json_bodies(document):
    """(path, method, the body's schema) of every operation that takes a JSON body."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                yield path, method, document["components"]["schemas"][name]


def test_the_document_is_valid_and_lists_every_route_once(client, as_admin, app):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json
    validate(document)  # raises on anything OpenAPI 3.1 does not allow
    assert document["openapi"] == "3.1.0"
    assert documented(document) == api_operations(app)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_who_may_call_each_route_is_said(client, as_admin):
    document = client.get("/api/openapi.json").json
    login_route = document["paths"]["/api/auth/login"]["post"]
    assert login_route["security"] == [] and login_route["x-access"] == "public"
    users = document["paths"]["/api/users"]["get"]
    assert users["x-access"] == "admin" and users["description"].startswith("Needs the admin")
    assert {"token": []} in users["security"]
    # Creating users takes a session, as minting tokens does: a token could make an admin.
    assert document["paths"]["/api/users"]["post"]["security"] == [{"session": [], "csrf": []}]
    # Tokens are made and revoked only through a session: the document says so.
    assert document["paths"]["/api/auth/tokens"]["post"]["security"] == [
        {"session": [], "csrf": []}
    ]


def test_the_document_needs_a_signed_in_caller(client, committed_app, factory):
    anonymous = committed_app.test_client()
    refused = anonymous.get("/api/openapi.json")
    assert refused.status_code == 401 and refused.json["error"]["code"] == "unauthenticated"
    viewer = committed_app.test_client()
    login(viewer, create_user(factory, "viewer").email)
    assert viewer.get("/api/openapi.json").status_code == 200


def test_every_declared_body_refuses_a_field_it_does_not_declare(client, as_admin):
    """additionalProperties: false, held to by the route itself (before any lookup)."""
    _admin, headers = as_admin
    checked = 0
    for path, method, schema in json_bodies(client.get("/api/openapi.json").json):
        assert schema["additionalProperties"] is False, path
        response = client.open(
            concrete(path), method=method, headers=headers, json={"not_a_field": 1}
        )
        assert response.status_code == 422, (method, path, response.json)
        assert response.json["error"] == {
            "code": "invalid_field",
            "message": "unknown field(s): not_a_field",
        }, (method, path)
        checked += 1
    assert checked >= 10


def test_every_declared_required_field_is_required(client, as_admin):
    _admin, headers = as_admin
    for path, method, schema in json_bodies(client.get("/api/openapi.json").json):
        required = sorted(schema.get("required", []))
        if not required:
            continue
        response = client.open(concrete(path), method=method, headers=headers, json={})
        assert response.status_code == 422, (method, path)
        assert response.json["error"]["code"] == "missing_field"
        assert response.json["error"]["message"] == f"missing field(s): {', '.join(required)}"


def test_every_whole_number_query_parameter_refuses_text(client, as_admin):
    _admin, _headers = as_admin
    document = client.get("/api/openapi.json").json
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                types = {s.get("type") for s in schema.get("anyOf", [schema])}
                if parameter["in"] != "query" or "integer" not in types:
                    continue
                name = parameter["name"]
                response = client.open(f"{concrete(path)}?{name}=ten", method=method)
                assert response.status_code == 400, (path, name)
                assert response.json["error"] == {
                    "code": "invalid_query",
                    "message": f"{name} must be a whole number",
                }
                checked += 1
    assert checked >= 8


def test_enumerated_query_parameters_refuse_other_values(client, as_admin):
    _admin, _headers = as_admin
    document = client.get("/api/openapi.json").json
    status = next(
        p for p in document["paths"]["/api/jobs"]["get"]["parameters"] if p["name"] == "status"
    )
    assert status["schema"]["anyOf"][0]["enum"] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    refused = client.get("/api/jobs?status=lost")
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_query"
    assert client.get("/api/jobs?status=failed&limit=").status_code == 200


def test_the_upload_form_is_described_and_held_to(client, as_admin):
    _admin, headers = as_admin
    document = client.get("/api/openapi.json").json
    form = document["paths"]["/api/imports"]["post"]["requestBody"]["content"][
        "multipart/form-data"
    ]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    assert set(form["required"]) == {"customer_id", "file"}
    response = client.post(
        "/api/imports",
        headers=headers,
        data={"customer_id": "1"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and response.json["error"]["code"] == "missing_field"
