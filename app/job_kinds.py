"""Which code runs each job kind: the one place that joins `app/jobs` to the areas."""

from __future__ import annotations

from app.exports.job import ExportJob
from app.imports.job import ImportJob
from app.jobs import kinds
from app.transforms.job import TransformJob


def register_job_kinds() -> None:
    """Called by the app factory, so that a worker, the CLI and the API all find every kind."""
    kinds.register("import", ImportJob())
    kinds.register("transform", TransformJob())
    kinds.register("export", ExportJob())
