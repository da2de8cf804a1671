"""The exports and jobs pages in a real headless Chromium: export, follow, download, cancel.

The transform pages are not part of this module: reference rows are published through the
transform service, as tests/test_exports.py does, from an import uploaded on the page.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app import audit, create_app
from app.db.session import session_scope
from app.exports import service as exports
from app.jobs import queue
from app.transforms import service as transforms
from tests.conftest import create_user
from tests.web.browser import JOB_WAIT, Visit, create_customer, path_of, upload, wait_for_outcome

# A spreadsheet would run B-2's name as a formula.
PRODUCTS = "sku,name,unit_price,currency\nA-1,Anvil,10.50,EUR\nB-2,=SUM(1),0.20,EUR\n"
DATASET_HEADER = [
    "sku",
    "name",
    "category",
    "weight_kg",
    "length_cm",
    "width_cm",
    "height_cm",
    "unit_price",
    "currency",
    "barcode",
    "active",
    "updated_at",
]


@pytest.fixture(scope="module")
def bo(committed_env):
    application = create_app(committed_env)
    yield application.extensions["backoffice"]
    application.extensions["backoffice"].close()


def wait_for_job(bo, job_id: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with bo.session_factory() as session:
            status = queue.get_job(session, job_id).status
        if status in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def customer_with_products(v: Visit, bo, tmp_path, prefix: str) -> tuple[str, int]:
    """A customer made on the pages, its file uploaded and staged there, then published into
    reference.products through the transform service. Returns its code and id."""
    code = f"{prefix}{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    customer_id = int(path_of(v.page).rsplit("/", 1)[1])
    upload(v, tmp_path, code, PRODUCTS)
    import_id = int(path_of(v.page).rsplit("/", 1)[1])
    wait_for_outcome(v, v.page.get_by_role("heading", name="Staged rows"))
    with session_scope(bo.session_factory) as session:
        t = transforms.create(
            session, bo.references, import_id=import_id, dataset="products", created_by=None
        )
        job_id = t.job_id
    assert wait_for_job(bo, job_id) == "succeeded"
    return code, customer_id


def new_export(v: Visit, code: str, fmt: str = "csv", neutralize: bool = False) -> int:
    v.page.goto("/exports/new")
    v.page.get_by_label("Dataset").select_option("products")
    v.page.get_by_label("Customer").select_option(label=f"{code} · {code} Trading")
    v.page.get_by_label("Format").select_option(fmt)
    if neutralize:
        v.page.get_by_label("Neutralize spreadsheet formulas").check()
    v.page.get_by_role("button", name="Export").click()
    assert re.fullmatch(r"/exports/\d+", path_of(v.page)), path_of(v.page)
    return int(path_of(v.page).rsplit("/", 1)[1])


def download(v: Visit) -> tuple[str, bytes]:
    """Click "Download" once the page shows it (it reloads by itself when the job ends)."""
    link = v.page.get_by_role("link", name="Download")
    link.wait_for(timeout=JOB_WAIT)
    with v.page.expect_download() as info:
        link.click()
    got = info.value
    with open(got.path(), "rb") as handle:
        return got.suggested_filename, handle.read()


def job_of_export(bo, export_id: int) -> int:
    with bo.session_factory() as session:
        return exports.get(session, export_id).job_id


def audit_rows(bo, action: str, target_id: int) -> list:
    with bo.session_factory() as session:
        return [r for r in audit.entries(session, action=action) if r.target_id == str(target_id)]


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_operator_exports_follows_and_downloads_csv_and_gzip(
    visit, factory, bo, worker, tmp_path, shots
):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code, customer_id = customer_with_products(v, bo, tmp_path, "X")

    # The customer's page offers an export prefilled with the customer.
    v.page.goto(f"/customers/{customer_id}")
    v.page.get_by_role("link", name="New export").click()
    assert path_of(v.page) == f"/exports/new?customer={customer_id}"
    assert v.page.get_by_label("Customer").input_value() == str(customer_id)
    assert v.page.get_by_label("Format").locator("option").all_inner_texts() == ["csv", "csv.gz"]
    v.page.get_by_label("Dataset").select_option("products")
    v.page.screenshot(path=shots / "export-new-1280.png", full_page=True)

    export_id = new_export(v, code)
    name, data = download(v)
    assert name == f"products-{code}-{export_id}.csv"
    rows = rows_of(data)
    assert rows[0] == DATASET_HEADER
    assert [(r[0], r[1], r[7], r[8]) for r in rows[1:]] == [
        ("A-1", "Anvil", "10.50", "EUR"),
        ("B-2", "=SUM(1)", "0.20", "EUR"),
    ]
    assert v.page.locator(".heading .status").inner_text() == "succeeded"
    v.page.screenshot(path=shots / "export-1280.png", full_page=True)

    gz_id = new_export(v, code, fmt="csv.gz", neutralize=True)
    name, data = download(v)
    assert name == f"products-{code}-{gz_id}.csv.gz"
    rows = rows_of(gzip.decompress(data))
    assert [r[1] for r in rows[1:]] == ["Anvil", "'=SUM(1)"]

    # Audited exactly as the API's: who created which export, and who downloaded it.
    for action, target, details in [
        ("export.create", export_id, {"dataset": "products", "format": "csv"}),
        ("export.create", gz_id, {"format": "csv.gz", "neutralize_formulas": True}),
        ("export.download", export_id, {"dataset": "products"}),
        ("export.download", gz_id, {"dataset": "products"}),
    ]:
        (row,) = audit_rows(bo, action, target)
        assert (row.actor_id, row.actor_email) == (operator.id, operator.email)
        assert row.details["customer_id"] == customer_id
        assert details.items() <= row.details.items(), (action, row.details)

    # The list names the customer, and the customer's page lists its exports.
    v.page.goto("/exports")
    row = v.page.locator("tbody tr").filter(has=v.page.get_by_role("link", name=f"#{gz_id}"))
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == f"{code} Trading {code}"
    assert cells[2:6] == ["products", "csv.gz", "succeeded", "2"]
    v.page.screenshot(path=shots / "exports-1280.png", full_page=True)
    v.page.goto(f"/customers/{customer_id}")
    listed = v.page.locator("section[aria-labelledby=exports] tbody tr")
    assert listed.count() == 2
    assert v.console_errors == []
    assert v.foreign_requests() == []


def test_the_jobs_list_shows_progress_and_filters(visit, factory, bo, worker, tmp_path, shots):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code, _ = customer_with_products(v, bo, tmp_path, "J")
    export_id = new_export(v, code)
    v.page.get_by_role("link", name="Download").wait_for(timeout=JOB_WAIT)
    job_id = job_of_export(bo, export_id)

    v.page.get_by_role("link", name="Jobs", exact=True).click()
    assert path_of(v.page) == "/jobs"
    rows = v.page.locator("tbody tr").filter(has_text=f"{code} Trading")
    kinds = [r.locator("td").nth(1).inner_text() for r in rows.all()]
    assert kinds == ["export", "transform", "import"]
    for row in rows.all():  # each with its bar, full
        assert "succeeded" in row.inner_text()
        bar = row.locator("progress")
        assert bar.get_attribute("value") == bar.get_attribute("max")
    v.page.screenshot(path=shots / "jobs-1280.png", full_page=True)

    v.page.get_by_label("Kind").select_option("export")
    v.page.get_by_label("Status").select_option("succeeded")
    v.page.get_by_role("button", name="Filter").click()
    assert path_of(v.page) == "/jobs?status=succeeded&kind=export"
    shown = v.page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert shown and set(shown) == {"export"}

    # A job's page links to what it made, and shows its parameters to operators.
    v.page.goto(f"/jobs/{job_id}")
    assert v.page.get_by_role("heading", name="Parameters").is_visible()
    v.page.screenshot(path=shots / "job-1280.png", full_page=True)
    v.page.get_by_role("link", name=f"Export #{export_id}").click()
    assert path_of(v.page) == f"/exports/{export_id}"

    narrow = visit(width=400)
    narrow.sign_in(operator.email)
    narrow.page.goto("/jobs")
    narrow.page.screenshot(path=shots / "jobs-400.png", full_page=True)
    assert narrow.page.evaluate("document.documentElement.scrollWidth") <= 400
    narrow.page.goto(f"/exports/{export_id}")
    narrow.page.screenshot(path=shots / "export-400.png", full_page=True)
    assert narrow.page.evaluate("document.documentElement.scrollWidth") <= 400
    assert v.console_errors == [] and narrow.console_errors == []
    assert v.foreign_requests() == [] and narrow.foreign_requests() == []


@contextmanager
def paused(process) -> Iterator[None]:
    """No job is claimed meanwhile: what is queued stays queued."""
    process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.signal(signal.SIGCONT)


def test_viewer_cannot_export_or_cancel_and_an_operator_cancels_a_queued_job(
    visit, factory, bo, worker
):
    operator, viewer = create_user(factory, "operator"), create_user(factory, "viewer")
    staff = visit()
    staff.sign_in(operator.email)
    code = f"C{uuid.uuid4().hex[:6].upper()}"
    create_customer(staff, code)
    customer_id = int(path_of(staff.page).rsplit("/", 1)[1])
    with paused(worker):
        export_id = new_export(staff, code)
        job_id = job_of_export(bo, export_id)
        flashed = staff.page.get_by_role("status").inner_text()
        assert flashed == f"Export #{export_id} of products for {code} queued."
        assert "queued" in staff.page.locator("#job-progress").inner_text()

        reader = visit()
        reader.sign_in(viewer.email)
        reader.page.goto("/exports")
        assert reader.page.get_by_role("link", name=f"#{export_id}").is_visible()
        assert reader.page.get_by_role("link", name="New export").count() == 0
        reader.page.goto(f"/customers/{customer_id}")
        assert reader.page.get_by_role("link", name="New export").count() == 0
        reader.page.goto("/jobs")
        row = reader.page.locator("tbody tr").filter(
            has=reader.page.get_by_role("link", name=f"#{job_id}", exact=True)
        )
        assert "queued" in row.inner_text()
        assert reader.page.get_by_role("button", name="Cancel").count() == 0
        # Viewers see a job's progress, never its parameters (as the API shows it).
        reader.page.goto(f"/jobs/{job_id}")
        assert reader.page.get_by_role("heading", name="Parameters").count() == 0
        assert "export_id" not in reader.page.content()
        assert reader.page.get_by_role("button", name="Cancel").count() == 0
        # The viewer's own CSRF token on well-formed forms: refused all the same.
        token = reader.page.locator("input[name=csrf_token]").first.get_attribute("value")
        for path, form in [
            (f"/jobs/{job_id}/cancel", {}),
            ("/exports/new", {"dataset": "products", "customer": str(customer_id)}),
        ]:
            forged = reader.page.request.post(path, form={"csrf_token": token, **form})
            assert forged.status == 403, path
            assert "operator" in forged.text()
        assert wait_for_job(bo, job_id, timeout=0) == "queued"

        staff.page.goto("/jobs?status=queued")
        row = staff.page.locator("tbody tr").filter(
            has=staff.page.get_by_role("link", name=f"#{job_id}", exact=True)
        )
        row.get_by_role("button", name="Cancel").click()
        assert path_of(staff.page) == "/jobs?status=queued"
        assert staff.page.get_by_role("status").inner_text() == f"Job #{job_id} cancelled."
        staff.page.goto(f"/jobs/{job_id}")
        assert staff.page.locator(".heading .status").inner_text() == "cancelled"
        assert staff.page.get_by_role("button", name="Cancel").count() == 0
        staff.page.goto(f"/exports/{export_id}")
        assert staff.page.locator(".heading .status").inner_text() == "cancelled"
        assert staff.page.get_by_role("link", name="Download").count() == 0

    (row,) = audit_rows(bo, "job.cancel", job_id)
    assert (row.actor_id, row.details["customer_id"], row.details["kind"]) == (
        operator.id,
        customer_id,
        "export",
    )
    assert wait_for_job(bo, job_id, timeout=0) == "cancelled"


def test_cancel_through_the_api_is_audited_like_the_page_s(visit, factory, bo, worker):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"A{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    with paused(worker):
        job_id = job_of_export(bo, new_export(v, code))
        token = v.page.locator("input[name=csrf_token]").first.get_attribute("value")
        answer = v.page.request.post(f"/api/jobs/{job_id}/cancel", headers={"X-CSRF-Token": token})
        assert answer.status == 202 and answer.json()["job"]["status"] == "cancelled"
        # Cancelling again, from the page: refused with the reason, nothing recorded twice.
        v.page.goto(f"/jobs/{job_id}")
        again = v.page.request.post(f"/jobs/{job_id}/cancel", form={"csrf_token": token})
        assert again.ok  # redirected back to the job, with the reason
        assert "has already ended (cancelled)" in again.text()
    (row,) = audit_rows(bo, "job.cancel", job_id)
    assert (row.actor_id, row.details["kind"]) == (operator.id, "export")


def test_a_new_export_without_choices_keeps_them_and_names_the_fields(visit, factory):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    v.page.goto("/exports/new")
    v.page.get_by_label("Format").select_option("csv.gz")
    v.page.get_by_role("button", name="Export").click()
    assert v.page.locator("#dataset-error").inner_text() == "Choose a dataset."
    assert v.page.locator("#customer-error").inner_text() == "Choose a customer."
    assert v.page.get_by_label("Format").input_value() == "csv.gz"
    # An export not yet made cannot be downloaded: a page that says so, not a traceback.
    response = v.page.goto("/exports/987654/download")
    assert response.status == 404
    assert v.page.get_by_role("heading", name="Not found").is_visible()
