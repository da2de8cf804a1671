"""A file's own defects are never retried: a header row the csv module cannot read (a stray
quote, a name over its field limit) fails the import on its first attempt, naming line 1 and
the reason, like any other bad line."""

import csv

import pytest

from app.imports import service as imports
from app.jobs.worker import run_now
from tests.bulk import job_row
from tests.conftest import queue_import


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'"a"b,c\n1,2\n', "the header row is not valid CSV"),
        (b"x" * (csv.field_size_limit() + 10) + b",b\n1,2\n", "a header name is longer than"),
    ],
)
def test_a_header_the_csv_module_refuses_fails_once_naming_line_one(bo, customer, content, reason):
    import_id, job_id = queue_import(bo, customer, content)
    outcome = run_now(bo, job_id)
    assert outcome.status == "failed", outcome
    job = job_row(bo, job_id)
    assert job.attempt == 1, "not retried"
    with bo.session_factory() as session:
        batch = imports.get_import(session, import_id)
    assert batch.status == "failed"
    assert batch.error["line"] == 1 and batch.error["message"].startswith(reason)
