"""Datasets: each one's columns, types, rules and key, and a header-only CSV to fill in."""

from __future__ import annotations

import csv
import io

from flask import Response, render_template

from app.auth.access import allow
from app.datasets import DATASETS
from app.errors import NotFound
from app.web.pages import bp


@bp.get("/datasets")
@allow("viewer")
def datasets_list():
    return render_template("datasets/list.html", title="Datasets", datasets=DATASETS.values())


@bp.get("/datasets/<name>/template.csv")
@allow("viewer")
def dataset_template(name: str):
    """The dataset's columns as a CSV header row: a file that transforms with no mapping."""
    dataset = DATASETS.get(name)
    if dataset is None:
        raise NotFound(f"no dataset named {name!r}")
    out = io.StringIO()
    csv.writer(out).writerow(f.name for f in dataset.fields)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{dataset.name}-template.csv"'},
    )
