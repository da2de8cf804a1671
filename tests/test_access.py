"""Deny by default: every route declares who may use it."""

from flask import Blueprint

from app import create_app
from app.auth.access import METRICS, PUBLIC, access_rule
from app.auth.services import RANK


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


def test_public_routes_are_only_login_and_health(app):
    public = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if access_rule(app.view_functions[rule.endpoint]) == PUBLIC
    )
    assert public == ["/api/auth/login", "/health/live", "/health/ready"]
