"""The bulk steps of `backoffice verify`: a small built-in file imported, transformed and
exported for the scratch customer, through the same services and jobs as real work, and the
removal of what they made.

The import's job is left queued for `worker_wait` seconds: a live worker that claims it shows
that the workers run; when none does, the job runs here, as the CLI's synchronous mode runs
one. The transform and the export run here. Each job gets one attempt, so a failure is reported
at once and no worker takes it up again after the run.
"""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from app.db.session import session_scope
from app.exports import service as exports
from app.imports import service as imports
from app.jobs.kinds import ENDED
from app.jobs.worker import run_now
from app.models.data.workspace import Export, ImportBatch, Transform
from app.transforms import service as transforms
from app.verify.steps import Scratch, StepFailed

if TYPE_CHECKING:
    from app import Backoffice
    from app.db.session import BackofficeSession

DATASET = "products"
# Pipes and LF, as one of the demo's files: three products, every one valid.
SAMPLE_NAME = "verify-products.psv"
SAMPLE = (
    b"sku|name|category|weight_kg|unit_price|currency|active|updated_at\n"
    b"VERIFY-1|Claw hammer|Hand tools|0.6|13.40|EUR|yes|2026-11-01\n"
    b"VERIFY-2|Saw, 500 mm|Hand tools|0.9|22.00|EUR|yes|2026-11-15\n"
    b"VERIFY-3|Spirit level|Measuring|0.4|9.90|EUR|no|2026-11-15\n"
)
SAMPLE_SKUS = ["VERIFY-1", "VERIFY-2", "VERIFY-3"]
JOB_SECONDS = 120.0  # the longest a job of three rows may take, a worker's or ours


class BulkChecks:
    """The import, transform and export steps; ids of what they make go in `scratch.made`."""

    def __init__(self, bo: Backoffice, scratch: Scratch, *, worker_wait: float) -> None:
        self.bo = bo
        self.scratch = scratch
        self.worker_wait = worker_wait

    def _in_session(self, work):
        with session_scope(self.bo.session_factory) as session:
            return work(session)

    def import_file(self) -> str:
        def receive(session: BackofficeSession) -> ImportBatch:
            return imports.receive(
                session,
                self.bo.references,
                customer_id=self.scratch.customer_id,
                created_by=None,
                file_name=SAMPLE_NAME,
                stream=io.BytesIO(SAMPLE),  # stored in the database: any worker can read it
                size_limit=max(self.bo.settings.max_upload_bytes, len(SAMPLE)),
                max_attempts=1,
            )

        batch = self._in_session(receive)
        self.scratch.made["import"] = batch.id
        ran_by = self.run_job(batch.job_id, offer_to_workers=True)
        staged = self._in_session(lambda s: imports.get_import(s, batch.id).as_dict())
        if staged["rows_staged"] != len(SAMPLE_SKUS):
            raise StepFailed(f"import {batch.id} staged {staged['rows_staged']} rows, not 3")
        return f"import {batch.id}: {staged['rows_staged']} rows staged {ran_by}"

    def transform(self) -> str:
        made: Transform = self._in_session(
            lambda session: transforms.create(
                session,
                self.bo.references,
                import_id=self.scratch.made["import"],
                dataset=DATASET,
                created_by=None,
                max_attempts=1,
            )
        )
        self.scratch.made["transform"] = made.id
        self.run_job(made.job_id)
        counts = self._in_session(lambda s: transforms.get(s, made.id).counts) or {}
        if counts.get("inserted") != len(SAMPLE_SKUS) or counts.get("rejected"):
            raise StepFailed(f"transform {made.id} counted {counts}, not 3 rows inserted")
        return f"transform {made.id}: 3 rows into reference.{DATASET}"

    def export(self) -> str:
        made: Export = self._in_session(
            lambda session: exports.create(
                session,
                self.bo.references,
                dataset=DATASET,
                customer_id=self.scratch.customer_id,
                created_by=None,
                max_attempts=1,
            )
        )
        self.scratch.made["export"] = made.id
        self.run_job(made.job_id)
        done = self._in_session(lambda s: exports.get(s, made.id))
        folder = exports.export_dir(self.bo.settings, self.bo.instance_path)
        path = folder / (done.file_name or "")
        with path.open(encoding="utf-8", newline="") as handle:
            skus = [row["sku"] for row in csv.DictReader(handle)]
        if skus != SAMPLE_SKUS:
            raise StepFailed(f"export {made.id} wrote {skus}, not {SAMPLE_SKUS}")
        return f"export {made.id}: 3 rows written to EXPORT_DIR and read back"

    # -- jobs -------------------------------------------------------------------------------

    def run_job(self, job_id: int, *, offer_to_workers: bool = False) -> str:
        """Run a queued job to its end; says who ran it. Offered to the workers first for
        `worker_wait` seconds when asked; a worker that claims it then is waited for."""
        job = self._job(job_id)
        deadline = time.monotonic() + (self.worker_wait if offer_to_workers else 0)
        while job["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self._job(job_id)
        ran_by = f"by worker {job['worker_id']}"
        if job["status"] == "queued":
            outcome = run_now(self.bo, job_id)
            if outcome is not None:
                ran_by = (
                    f"here (no worker took it within {self.worker_wait:g} s)"
                    if offer_to_workers and self.worker_wait
                    else "here"
                )
            job = self._job(job_id)
            if outcome is None:  # a worker claimed it at the last moment
                ran_by = f"by worker {job['worker_id']}"
        deadline = time.monotonic() + JOB_SECONDS
        while job["status"] not in ENDED and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self._job(job_id)
        if job["status"] != "succeeded":
            raise StepFailed(f"job {job_id} {job['status']} {ran_by}: {job['error']}")
        return ran_by

    def _job(self, job_id: int) -> dict[str, Any]:
        with self.bo.engines.connect("data") as conn:
            row = conn.execute(
                text("SELECT status, worker_id, error FROM workspace.jobs WHERE id = :id"),
                {"id": job_id},
            ).one()
        return dict(row._mapping)
