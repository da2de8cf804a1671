"""/api/customers: viewers read; operators and admins write."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user

from app.api.body import json_body, query_int
from app.audit import Actor
from app.auth.access import allow
from app.auth.login import client_ip
from app.customers import service as customers_service
from app.db.session import db_session

bp = Blueprint("customers", __name__, url_prefix="/api/customers")

FIELDS = {"code", "name", "status", "contact_name", "contact_email", "contact_phone"}


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


@bp.get("")
@allow("viewer")
def list_customers():
    limit = query_int("limit", 100, minimum=1, maximum=1000)
    offset = query_int("offset", 0)
    rows, total = customers_service.list_customers(
        db_session(),
        status=request.args.get("status") or None,
        search=request.args.get("q") or None,
        limit=limit,
        offset=offset,
    )
    return jsonify(customers=[c.as_dict() for c in rows], total=total, limit=limit, offset=offset)


@bp.post("")
@allow("operator")
def create_customer():
    body = json_body(allowed=FIELDS, required={"code", "name"})
    db = db_session()
    customer = customers_service.create_customer(db, _actor(), **body)
    db.commit()
    return jsonify(customer=customer.as_dict()), 201


@bp.get("/<int:customer_id>")
@allow("viewer")
def get_customer(customer_id: int):
    return jsonify(customer=customers_service.get_customer(db_session(), customer_id).as_dict())


@bp.patch("/<int:customer_id>")
@allow("operator")
def update_customer(customer_id: int):
    body = json_body(allowed=FIELDS)
    db = db_session()
    customer = customers_service.get_customer(db, customer_id)
    changes = customers_service.update_customer(db, _actor(), customer, **body)
    db.commit()
    return jsonify(customer=customer.as_dict(), changed=sorted(changes))


@bp.delete("/<int:customer_id>")
@allow("operator")
def delete_customer(customer_id: int):
    db = db_session()
    customers_service.delete_customer(db, _actor(), customers_service.get_customer(db, customer_id))
    db.commit()
    return Response(status=204)
