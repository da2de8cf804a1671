"""/api/customers: viewers read; operators and admins write."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify
from flask_login import current_user
from pydantic import Field, StringConstraints

from app.api.boundary import Body, Limit, Offset, Query, Text, takes
from app.audit import Actor
from app.auth.access import allow, require_role
from app.auth.login import client_ip
from app.backoffice import current_backoffice
from app.customers import service as customers_service
from app.customers.purge import purge_customer_data
from app.db.session import db_session

bp = Blueprint("customers", __name__, url_prefix="/api/customers")

PURGE_SECONDS = 20  # a call stops between batches after this long (under gunicorn's timeout)
PURGE_WAIT_SECONDS = 10  # for the customer's running jobs to stop
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


class CustomerDelete(Query):
    purge: bool = Field(
        default=False,
        description="admin: first remove the customer's data from the data engine",
    )


@bp.delete("/<int:customer_id>")
@allow("operator")
@takes(query=CustomerDelete)
def delete_customer(customer_id: int, query: CustomerDelete):
    """Refused (409 customer_has_data) while the data engine holds rows for the customer,
    unless `purge=true` (admin): its data goes first, in batches, for up to 20 s per call; 202
    with what went so far when more is left (call again), else 200 with the counts once the
    customer is deleted."""
    db = db_session()
    customer = customers_service.get_customer(db, customer_id)
    purged = None
    if query.purge:
        require_role("admin")
        db.rollback()  # no transaction held open while the purge runs its own
        outcome = purge_customer_data(
            current_backoffice(),
            _actor(),
            customer_id,
            wait_seconds=PURGE_WAIT_SECONDS,
            deadline=time.monotonic() + PURGE_SECONDS,
        )
        if not outcome.done:
            return jsonify(done=False, purged=outcome.counts), 202
        purged = outcome.counts
        customer = customers_service.get_customer(db, customer_id)
    customers_service.delete_customer(db, _actor(), customer)
    db.commit()
    if purged is None:
        return Response(status=204)
    return jsonify(done=True, purged=purged)
