"""Datasets: each one's columns, types, rules and key, and a header-only CSV to fill in."""

from __future__ import annotations

import csv
import io

from flask import Response, flash, redirect, render_template, request, url_for

from app.auth.access import allow
from app.backoffice import current_backoffice
from app.customers import service as customers
from app.datasets import DATASETS
from app.db.session import db_session
from app.errors import NotFound, Refused
from app.transforms import history
from app.web.forms import sentence
from app.web.pages import bp, whole_number


@bp.get("/datasets")
@allow("viewer")
def datasets_list():
    return render_template("datasets/list.html", title="Datasets", datasets=DATASETS.values())


@bp.get("/datasets/<name>/template.csv")
@allow("viewer")
def dataset_template(name: str):
    """The dataset's columns as a CSV header row: a file that transforms with no mapping."""
    dataset = _dataset(name)
    out = io.StringIO()
    csv.writer(out).writerow(f.name for f in dataset.fields)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{dataset.name}-template.csv"'},
    )


ROWS_PAGE = 50


@bp.get("/datasets/<name>")
@allow("viewer")
def dataset_rows(name: str):
    """A customer's rows of the dataset (`?customer=ID`), in key order, keyset-paged (`after`:
    the last key shown), searchable by the start of the key (`q`)."""
    dataset = _dataset(name)
    db = db_session()
    customer_id = whole_number("customer")
    customer = None
    if customer_id is not None:
        customer = customers.customers_by_id(db, [customer_id]).get(customer_id)
    if customer is None:
        choices, _ = customers.list_customers(db, limit=1000)
        return render_template(
            "datasets/rows.html",
            title=f"{dataset.name}",
            dataset=dataset,
            customer=None,
            choices=choices,
            rows=[],
            next_after=None,
            q="",
        )
    q = (request.args.get("q") or "").strip()[:200]
    after = request.args.get("after")
    try:
        rows, last = history.rows_page(
            db.connection_for("data"),
            dataset,
            customer.id,
            limit=ROWS_PAGE,
            after=after,
            starts=q or None,
        )
    except Refused as exc:
        flash(sentence(exc.message), "error")
        return redirect(url_for("web.dataset_rows", name=dataset.name, customer=customer.id))
    return render_template(
        "datasets/rows.html",
        title=f"{dataset.name} of {customer.name}",
        dataset=dataset,
        customer=customer,
        rows=rows,
        q=q,
        first_page=after is None,
        next_after=history.encode_cursor(last) if last else None,
        row_url=lambda row: url_for(
            "web.dataset_row",
            name=dataset.name,
            customer=customer.id,
            **{k: row[k] if row[k] is not None else "" for k in dataset.key},
        ),
    )


@bp.get("/datasets/<name>/row")
@allow("viewer")
def dataset_row(name: str):
    """One row's versions, newest first (`?customer=ID&<key column>=<value>...`)."""
    dataset = _dataset(name)
    db = db_session()
    customer_id = whole_number("customer")
    customer = (
        customers.customers_by_id(db, [customer_id]).get(customer_id) if customer_id else None
    )
    if customer is None:
        raise NotFound("choose a customer: ?customer=ID")
    key = history.key_from(dataset, request.args)
    found = history.versions(db.connection_for("data"), dataset, customer.id, key)
    if not found:
        raise NotFound(f"{customer.name} has no {dataset.name} row with that key")
    return render_template(
        "datasets/row.html",
        title=f"{dataset.name} {' · '.join(v or '—' for v in key.values())}",
        dataset=dataset,
        customer=customer,
        key=key,
        versions=history.attributed(db, current_backoffice().references, found),
    )


def _dataset(name: str):
    dataset = DATASETS.get(name)
    if dataset is None:
        raise NotFound(f"no dataset named {name!r}")
    return dataset
