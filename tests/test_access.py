"""Deny by default: every route declares who may use it."""

from flask import Blueprint

from app import create_app
from app.auth.access import METRICS, PUBLIC, access_rule
from app.auth.roles import RANK


def test_every_route_declares_who_may_use_it(app):
    undeclared = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if access_rule(app.view_functions[rule.endpoint]) not in (PUBLIC, METRICS, *RANK)
    ]
    assert undeclared == []
    assert len(list(app.url_map.iter_rules())) > 20


def test_a_route_without_a_declaration_is_refused(make_env):
    application = create_app(make_env("undeclared"))
    extra = Blueprint("extra", __name__)

    @extra.get("/api/forgotten")
    def forgotten():
        return {"secret": "data"}

    application.register_blueprint(extra)
    try:
        response = application.test_client().get("/api/forgotten")
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"
    finally:
        application.extensions["backoffice"].close()


def test_public_routes_are_only_sign_in_health_and_static_files(app):
    public = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if access_rule(app.view_functions[rule.endpoint]) == PUBLIC
    )
    assert public == [
        "/api/auth/login",
        "/health/live",
        "/health/ready",
        "/login",
        "/static/<path:filename>",
    ]


def test_a_page_without_a_declaration_is_refused_with_a_page(make_env):
    application = create_app(make_env("undeclared"))
    extra = Blueprint("extra", __name__)

    @extra.get("/forgotten-page")
    def forgotten():
        return "<p>secret</p>"

    application.register_blueprint(extra)
    try:
        response = application.test_client().get("/forgotten-page")
        assert response.status_code == 403
        assert response.mimetype == "text/html"
        assert "secret" not in response.get_data(as_text=True)
    finally:
        application.extensions["backoffice"].close()


def test_static_files_cannot_leave_their_folder(client):
    assert client.get("/static/style.css").status_code == 200
    for path in ("/static/../__init__.py", "/static/%2e%2e/pages.py", "/static/..%2fpages.py"):
        assert client.get(path).status_code == 404, path
