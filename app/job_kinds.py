"""Which code runs each job kind: the one place that joins `app/jobs` to the areas."""

from __future__ import annotations

from app.jobs import kinds


def _import_job() -> kinds.Handler:
    from app.imports.job import ImportJob

    return ImportJob()


def _transform_job() -> kinds.Handler:
    from app.transforms.job import TransformJob

    return TransformJob()


def _export_job() -> kinds.Handler:
    from app.exports.job import ExportJob

    return ExportJob()


def register_job_kinds() -> None:
    """Called by the app factory, so that a worker, the CLI and the API all find every kind;
    each kind's code is loaded when a job of it first runs (a CLI import never loads the
    export's)."""
    kinds.register("import", _import_job)
    kinds.register("transform", _transform_job)
    kinds.register("export", _export_job)
