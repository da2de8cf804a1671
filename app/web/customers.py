"""Customers: list with search and paging, create, edit, deactivate, their imports and exports."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import EmailField, StringField
from wtforms.validators import InputRequired, Length, Optional

from app.audit import Actor
from app.auth.access import allow
from app.auth.login import client_ip
from app.customers import service as customers_service
from app.datasets import DATASETS
from app.db.session import db_session
from app.errors import Refused
from app.exports import service as exports
from app.imports import service as imports
from app.models.primary.customer import STATUSES
from app.web.forms import PageForm
from app.web.pages import bp, page_number, while_data_engine_up

PAGE_SIZE = 25


class CustomerForm(PageForm):
    code = StringField("Code", [InputRequired(), Length(min=2, max=32)])
    name = StringField("Name", [InputRequired(), Length(max=200)])
    contact_name = StringField("Contact name", [Optional(), Length(max=200)])
    contact_email = EmailField("Contact email", [Optional(), Length(max=254)])
    contact_phone = StringField("Contact phone", [Optional(), Length(max=50)])

    refusal_fields = {
        "invalid_email": "contact_email",
        "invalid_code": "code",
        "code_taken": "code",
    }

    def values(self) -> dict[str, str]:
        return {
            name: field.data or "" for name, field in self._fields.items() if name != "csrf_token"
        }


class EditCustomerForm(CustomerForm):
    code = None  # a customer's code never changes


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


@bp.get("/customers")
@allow("viewer")
def customers():
    page = page_number()
    status = request.args.get("status") or None
    search = (request.args.get("q") or "").strip() or None
    if status not in (None, *STATUSES):
        status = None
    rows, total = customers_service.list_customers(
        db_session(), status=status, search=search, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render_template(
        "customers/list.html",
        title="Customers",
        customers=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        q=search or "",
        status=status or "",
        statuses=STATUSES,
    )


@bp.route("/customers/new", methods=["GET", "POST"])
@allow("operator")
def new_customer():
    form = CustomerForm()
    if form.submitted and form.validate():
        db = db_session()
        try:
            customer = customers_service.create_customer(db, _actor(), **form.values())
        except Refused as exc:
            form.refused(exc)
        else:
            db.commit()
            flash(f"Customer {customer.code} created.", "success")
            return redirect(url_for("web.customer", customer_id=customer.id))
    return render_template("customers/new.html", title="New customer", form=form)


@bp.get("/customers/<int:customer_id>")
@allow("viewer")
def customer(customer_id: int):
    record = customers_service.get_customer(db_session(), customer_id)
    return _show(record, EditCustomerForm(obj=record))


@bp.post("/customers/<int:customer_id>/edit")
@allow("operator")
def edit_customer(customer_id: int):
    db = db_session()
    record = customers_service.get_customer(db, customer_id)
    form = EditCustomerForm()
    if form.validate():
        try:
            changes = customers_service.update_customer(db, _actor(), record, **form.values())
        except Refused as exc:
            form.refused(exc)
        else:
            db.commit()
            flash(f"Customer {record.code} saved." if changes else "Nothing changed.", "success")
            return redirect(url_for("web.customer", customer_id=record.id))
    return _show(record, form)


def _show(record, form: EditCustomerForm) -> str:
    return render_template(
        "customers/show.html",
        title=f"Customer {record.code}",
        customer=record,
        form=form,
        datasets=DATASETS.values(),
        imports=while_data_engine_up(
            lambda: imports.list_imports(db_session(), customer_id=record.id, limit=20)
        ),
        exports=while_data_engine_up(
            lambda: exports.list_exports(db_session(), customer_id=record.id, limit=20)
        ),
    )


@bp.post("/customers/<int:customer_id>/status")
@allow("operator")
def customer_status(customer_id: int):
    db = db_session()
    record = customers_service.get_customer(db, customer_id)
    status = "inactive" if record.is_active else "active"
    customers_service.update_customer(db, _actor(), record, status=status)
    db.commit()
    flash(f"Customer {record.code} is now {status}.", "success")
    return redirect(url_for("web.customer", customer_id=record.id))
