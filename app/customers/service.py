"""Customers. Functions take a session and never commit.

A status change or a deletion sends a change notice, so every process's reference checker
forgets what it knew of the customer (app/references.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, func, or_, select, text

from app.audit import Actor
from app.db.base import metadata_of
from app.db.notices import notify
from app.db.session import BackofficeSession
from app.email_address import normalize_email
from app.errors import Refused
from app.models.primary.customer import STATUSES, Customer

CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
TEXT_FIELDS = {"name": 200, "contact_name": 200, "contact_phone": 50}


def _text(name: str, value: str | None, *, required: bool) -> str | None:
    if value is None or not value.strip():
        if required:
            raise Refused(f"{name} is required", code="missing_field", status=422)
        return None
    value = value.strip()
    if len(value) > TEXT_FIELDS[name]:
        raise Refused(
            f"{name} must have at most {TEXT_FIELDS[name]} characters",
            code="invalid_field",
            status=422,
        )
    return value


def _contact_email(value: str | None) -> str | None:
    if not value:
        return None
    return normalize_email(value)


def get_customer(session: BackofficeSession, customer_id: int) -> Customer:
    return session.get_or_404(Customer, customer_id, "customer")


def find_by_code(session: BackofficeSession, code: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.code == code.strip().upper()))


def customers_by_id(session: BackofficeSession, ids: Iterable[int]) -> dict[int, Customer]:
    """The customers a page of data-engine rows names, in one query (never a join across
    engines: they may be two servers)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {row.id: row for row in session.scalars(select(Customer).where(Customer.id.in_(wanted)))}


def list_customers(
    session: BackofficeSession,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Customer], int]:
    """A page of customers by code, and how many match in all."""
    query = select(Customer)
    if status is not None:
        if status not in STATUSES:
            raise Refused(
                f"status must be one of {', '.join(STATUSES)}", code="invalid_query", status=400
            )
        query = query.where(Customer.status == status)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Customer.code.ilike(pattern), Customer.name.ilike(pattern)))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Customer.code).limit(limit).offset(offset))
    return list(rows), total or 0


def create_customer(
    session: BackofficeSession,
    actor: Actor,
    *,
    code: str,
    name: str,
    status: str | None = None,
    contact_name: str | None = None,
    contact_email: str | None = None,
    contact_phone: str | None = None,
) -> Customer:
    if not CODE.match(code.strip().upper()):
        raise Refused(
            "code must be 2 to 32 letters, digits, '-' or '_', starting with a letter or digit",
            code="invalid_code",
            status=422,
        )
    code = code.strip().upper()
    if find_by_code(session, code) is not None:
        raise Refused(f"a customer with code {code} exists", code="code_taken", status=409)
    status = status or "active"
    if status not in STATUSES:
        raise Refused(
            f"status must be one of {', '.join(STATUSES)}", code="invalid_field", status=422
        )
    customer = Customer(
        code=code,
        name=_text("name", name, required=True),
        status=status,
        contact_name=_text("contact_name", contact_name, required=False),
        contact_email=_contact_email(contact_email),
        contact_phone=_text("contact_phone", contact_phone, required=False),
    )
    session.add(customer)
    session.flush()
    notify(session, "customer", customer.id)  # a cached "unknown" for this id is now wrong
    actor.audit(
        session, "customer.create", target_type="customer", target_id=customer.id, code=code
    )
    return customer


def update_customer(
    session: BackofficeSession, actor: Actor, customer: Customer, **fields: str | None
) -> dict[str, Any]:
    """Apply the given fields (`code` never changes: files and scripts name customers by it)."""
    if "code" in fields and (fields["code"] or "").strip().upper() != customer.code:
        raise Refused("a customer's code cannot change", code="immutable_field", status=422)
    new: dict[str, Any] = {}
    if "name" in fields:
        new["name"] = _text("name", fields["name"], required=True)
    for name in ("contact_name", "contact_phone"):
        if name in fields:
            new[name] = _text(name, fields[name], required=False)
    if "contact_email" in fields:
        new["contact_email"] = _contact_email(fields["contact_email"])
    if "status" in fields:
        if fields["status"] not in STATUSES:
            raise Refused(
                f"status must be one of {', '.join(STATUSES)}", code="invalid_field", status=422
            )
        new["status"] = fields["status"]
    changes = {k: v for k, v in new.items() if getattr(customer, k) != v}
    if not changes:
        return changes
    for name, value in changes.items():
        setattr(customer, name, value)
    customer.updated_at = func.now()
    notify(session, "customer", customer.id)  # lists show its name, checks its status
    actor.audit(
        session, "customer.update", target_type="customer", target_id=customer.id, changes=changes
    )
    session.flush()
    return changes


def data_held_for(session: BackofficeSession, customer_id: int) -> dict[str, int]:
    """Rows the data engine holds for a customer, per table (every table with a customer_id)."""
    counts = {}
    conn = session.connection_for("data")
    for table in metadata_of("data").tables.values():
        column: Column | None = table.columns.get("customer_id")
        if column is None:
            continue
        found = conn.execute(
            text(f"SELECT count(*) FROM {table.schema}.{table.name} WHERE customer_id = :id"),
            {"id": customer_id},
        ).scalar()
        if found:
            counts[table.fullname] = found
    return counts


def delete_customer(session: BackofficeSession, actor: Actor, customer: Customer) -> None:
    """Refused while the data engine holds rows for the customer: deactivate it instead, or
    purge its data first. The refusal says what exists."""
    held = data_held_for(session, customer.id)
    if held:
        listing = ", ".join(f"{n} row(s) in {table}" for table, n in sorted(held.items()))
        raise Refused(
            f"customer {customer.code} still has data: {listing}; deactivate it (status "
            "inactive) or purge its data first",
            code="customer_has_data",
            status=409,
        )
    notify(session, "customer", customer.id)
    actor.audit(
        session,
        "customer.delete",
        target_type="customer",
        target_id=customer.id,
        code=customer.code,
    )
    session.delete(customer)
    session.flush()
