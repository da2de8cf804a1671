"""/api/customers: viewers read; operators and admins write."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify
from flask_login import current_user
from pydantic import Field, StringConstraints

from app.api.boundary import Body, Limit, Offset, Query, Text, takes
from app.audit import Actor
from app.auth.access import allow
from app.auth.login import client_ip
from app.customers import service as customers_service
from app.db.session import db_session

bp = Blueprint("customers", __name__, url_prefix="/api/customers")

Status = Literal["active", "inactive"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Contact = Annotated[str, StringConstraints(max_length=200)]
Phone = Annotated[str, StringConstraints(max_length=50)]


class CustomerList(Query):
    status: Status | None = None
    q: str | None = Field(default=None, description="part of the code or the name")
    limit: Limit = 100
    offset: Offset = 0


class NewCustomer(Body):
    refusal_codes = {"code": "invalid_code"}
    code: Text = Field(description="2 to 32 letters, digits, '-' or '_'; kept upper-case")
    name: Name
    status: Status = "active"
    contact_name: Contact | None = None
    contact_email: Contact | None = None
    contact_phone: Phone | None = None


class CustomerChanges(Body):
    """Only the fields sent change; `null` clears a contact field. `code` never changes."""

    code: str | None = None
    name: Name | None = None
    status: Status | None = None
    contact_name: Contact | None = None
    contact_email: Contact | None = None
    contact_phone: Phone | None = None


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


@bp.get("")
@allow("viewer")
@takes(query=CustomerList)
def list_customers(query: CustomerList):
    rows, total = customers_service.list_customers(
        db_session(), status=query.status, search=query.q, limit=query.limit, offset=query.offset
    )
    return jsonify(
        customers=[c.as_dict() for c in rows], total=total, limit=query.limit, offset=query.offset
    )


@bp.post("")
@allow("operator")
@takes(body=NewCustomer)
def create_customer(body: NewCustomer):
    db = db_session()
    customer = customers_service.create_customer(db, _actor(), **body.model_dump())
    db.commit()
    return jsonify(customer=customer.as_dict()), 201


@bp.get("/<int:customer_id>")
@allow("viewer")
def get_customer(customer_id: int):
    return jsonify(customer=customers_service.get_customer(db_session(), customer_id).as_dict())


@bp.patch("/<int:customer_id>")
@allow("operator")
@takes(body=CustomerChanges)
def update_customer(customer_id: int, body: CustomerChanges):
    db = db_session()
    customer = customers_service.get_customer(db, customer_id)
    changes = customers_service.update_customer(db, _actor(), customer, **body.given())
    db.commit()
    return jsonify(customer=customer.as_dict(), changed=sorted(changes))


@bp.delete("/<int:customer_id>")
@allow("operator")
def delete_customer(customer_id: int):
    db = db_session()
    customers_service.delete_customer(db, _actor(), customers_service.get_customer(db, customer_id))
    db.commit()
    return Response(status=204)
