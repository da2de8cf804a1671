"""The transform pages and the datasets page in a real headless Chromium, against gunicorn and
a job worker: the form on a staged import, its preview, a transform followed live to its
counts and rejected rows, what a viewer sees, and the datasets with their templates."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text

from app import audit
from app.customers.service import find_by_code
from tests.conftest import create_user
from tests.web.browser import JOB_WAIT, PRODUCTS, create_customer, path_of, upload, wait_for_outcome

COUNTS = ("inserted", "updated", "unchanged", "rejected", "superseded")
# PRODUCTS against an empty catalogue: A-1 (its second row wins) and B-2 are new; line 4's
# price and line 6's currency and flag are refused.
EXPECTED = {"inserted": "2", "updated": "0", "unchanged": "0", "rejected": "2", "superseded": "1"}
REJECTS = [
    ("4", "unit_price", "abc", "not a number"),
    ("6", "currency", "XXX", "not an ISO 4217 currency code"),
    ("6", "active", "maybe", "not a boolean"),
]


def figures(section) -> dict[str, str]:
    """The counts a section shows: each label and its number."""
    names = section.locator("dl.figures dt").all_inner_texts()
    values = section.locator("dl.figures dd").all_inner_texts()
    return dict(zip(names, values, strict=True))


def table_rows(table) -> list[tuple[str, ...]]:
    return [tuple(row.locator("td").all_inner_texts()) for row in table.locator("tbody tr").all()]


def customer_id(factory, code: str) -> int:
    with factory() as session:
        return find_by_code(session, code).id


def stored_products(factory, code: str) -> int:
    """The customer's rows in reference.products."""
    with factory() as session:
        return (
            session.connection_for("data")
            .execute(
                text("SELECT count(*) FROM reference.products WHERE customer_id = :c"),
                {"c": customer_id(factory, code)},
            )
            .scalar()
        )


def staged_import(v, tmp_path, code: str) -> int:
    create_customer(v, code)
    upload(v, tmp_path, code, PRODUCTS)
    wait_for_outcome(v, v.page.get_by_role("heading", name="Staged rows"))
    return int(path_of(v.page).rsplit("/", 1)[1])


def test_preview_then_transform_followed_live_to_its_counts_and_rejects(
    visit, factory, worker, tmp_path, shots
):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"X{uuid.uuid4().hex[:6].upper()}"
    import_id = staged_import(v, tmp_path, code)

    # The form: the dataset the headers fit, each column pre-filled from its header.
    assert v.page.get_by_label("Dataset").input_value() == "products"
    for column, header in [("sku", "sku"), ("unit_price", "unit_price"), ("active", "active")]:
        assert v.page.get_by_label(column, exact=True).input_value() == header
    category = v.page.get_by_label("category", exact=True)
    assert category.input_value() == ""
    assert category.locator("option:checked").inner_text() == "(none)"
    options = category.locator("option").all_inner_texts()
    assert options == [
        "(none)",
        "(clear)",
        "sku",
        "name",
        "unit_price",
        "currency",
        "weight_kg",
        "active",
    ]
    # Another dataset re-fills the mapping (htmx swaps it in, the address follows).
    v.page.get_by_label("Dataset").select_option("rates")
    v.page.get_by_label("carrier", exact=True).wait_for()
    assert v.page.get_by_label("currency", exact=True).input_value() == "currency"
    v.page.wait_for_url(f"**/imports/{import_id}?dataset=rates")  # pushed once swapped in
    v.page.get_by_label("Dataset").select_option("products")
    v.page.get_by_label("sku", exact=True).wait_for()
    v.page.screenshot(path=shots / "import-transform-form-1280.png", full_page=True)

    # Preview: counts and the first rejects, nothing published.
    v.page.get_by_label("Max rejects").fill("1")
    v.page.get_by_role("button", name="Preview").click()
    preview = v.page.locator("#preview")
    assert preview.get_by_role("heading", name="Preview").is_visible()
    assert figures(preview) == EXPECTED
    assert "All 5 rows" in preview.inner_text() and "Nothing was written" in preview.inner_text()
    assert "the transform would fail" in preview.inner_text()  # 2 rejected, Max rejects 1
    shown = table_rows(preview.locator("table"))
    assert [r[:3] for r in shown] == [r[:3] for r in REJECTS]
    assert all(r[3].startswith(want[3]) for r, want in zip(shown, REJECTS, strict=True))
    assert v.page.get_by_label("Max rejects").input_value() == "1", "the form keeps its values"
    assert v.page.get_by_role("heading", name="Transforms").count() == 0
    assert stored_products(factory, code) == 0
    v.page.screenshot(path=shots / "import-preview-1280.png", full_page=True)

    # Transform, followed live to its counts and rejected rows.
    v.page.get_by_label("Max rejects").fill("")
    v.page.get_by_role("button", name="Transform").click()
    assert re.fullmatch(r"/transforms/\d+", path_of(v.page))
    transform_id = int(path_of(v.page).rsplit("/", 1)[1])
    assert v.page.get_by_role("status").inner_text().startswith(f"Transform #{transform_id}")
    counts = v.page.locator("section[aria-labelledby=counts]")
    counts.wait_for(timeout=JOB_WAIT)  # no reload by hand
    assert figures(counts) == EXPECTED
    assert v.page.locator(".heading .status").inner_text() == "succeeded"
    rejects = v.page.locator("section[aria-labelledby=rejects]")
    header = rejects.locator("thead th").all_inner_texts()
    assert header == ["Line", "sku", "Column", "Value", "Reason"], "each row's key by its line"
    rows = table_rows(rejects.locator("table"))
    assert [r[1] for r in rows] == ["C-3", "D-4", "D-4"]
    rows = [(r[0], *r[2:]) for r in rows]
    assert [r[:3] for r in rows] == [r[:3] for r in REJECTS]
    assert all(r[3].startswith(want[3]) for r, want in zip(rows, REJECTS, strict=True))
    assert rejects.get_by_role("link", name="Download rejected rows").is_visible()
    assert stored_products(factory, code) == 2
    v.page.screenshot(path=shots / "transform-1280.png", full_page=True)

    # Audited like the API's transforms: who, which customer, which import and dataset.
    with factory() as session:
        [entry] = [
            e
            for e in audit.entries(session, action="transform.create", limit=1000)
            if e.target_id == str(transform_id)
        ]
    assert entry.actor_id == operator.id
    assert entry.details["import_id"] == import_id and entry.details["dataset"] == "products"
    assert entry.details["customer_id"] == customer_id(factory, code)

    # The import's page lists it.
    v.page.get_by_role("link", name=f"#{import_id}").click()
    listed = v.page.locator("section[aria-labelledby=transforms] tbody tr").first
    assert listed.locator("td").all_inner_texts()[:5] == [
        f"#{transform_id}",
        "products",
        "succeeded",
        "2",
        "0",
    ]
    assert v.console_errors == []
    assert v.foreign_requests() == []


def test_a_refused_mapping_is_shown_on_the_form_with_its_values(visit, factory, worker, tmp_path):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    import_id = staged_import(v, tmp_path, f"M{uuid.uuid4().hex[:6].upper()}")
    v.page.get_by_label("unit_price", exact=True).select_option("(none)")
    v.page.get_by_label("weight_kg", exact=True).select_option("(none)")
    v.page.get_by_label("category", exact=True).select_option("name")
    v.page.get_by_role("button", name="Preview").click()
    assert "unit_price of products match no header" in v.page.get_by_role("alert").inner_text()
    assert v.page.get_by_label("category", exact=True).input_value() == "name"
    assert v.page.get_by_label("weight_kg", exact=True).input_value() == ""
    v.page.get_by_label("Max rejects").fill("-3")
    v.page.get_by_role("button", name="Transform").click()
    assert "at least 0" in v.page.locator("#max_rejects-error").inner_text()
    v.page.get_by_label("unit_price", exact=True).select_option("unit_price")
    v.page.get_by_label("Max rejects").fill(str(2**63))  # beyond what the database holds
    v.page.get_by_role("button", name="Transform").click()
    assert "at least 0" in v.page.locator("#max_rejects-error").inner_text()
    assert v.page.get_by_role("heading", name="Transforms").count() == 0
    assert path_of(v.page) == f"/imports/{import_id}/transform"


def test_choosing_a_dataset_works_without_javascript(
    chromium, base_url, factory, worker, visit, tmp_path
):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"J{uuid.uuid4().hex[:6].upper()}"
    import_id = staged_import(v, tmp_path, code)
    context = chromium.new_context(base_url=base_url, java_script_enabled=False)
    context.add_cookies(v.context.cookies())
    page = context.new_page()
    page.goto(f"/imports/{import_id}")
    page.get_by_label("Dataset").select_option("rates")
    page.get_by_role("button", name="Show its columns").click()
    assert path_of(page) == f"/imports/{import_id}?dataset=rates"
    assert page.get_by_label("carrier", exact=True).input_value() == ""
    assert page.get_by_label("currency", exact=True).input_value() == "currency"
    context.close()


def test_a_viewer_sees_no_transform_form_and_a_forged_one_is_refused(
    visit, factory, worker, tmp_path
):
    operator, viewer = create_user(factory, "operator"), create_user(factory, "viewer")
    v = visit()
    v.sign_in(operator.email)
    code = f"V{uuid.uuid4().hex[:6].upper()}"
    import_id = staged_import(v, tmp_path, code)
    reader = visit()
    reader.sign_in(viewer.email)
    reader.page.goto(f"/imports/{import_id}")
    assert reader.page.get_by_role("heading", name="Staged rows").is_visible()
    assert reader.page.get_by_role("heading", name="Transform").count() == 0
    assert reader.page.get_by_label("Dataset").count() == 0
    assert reader.page.get_by_role("button", name="Transform").count() == 0
    assert reader.page.get_by_role("button", name="Preview").count() == 0
    token = reader.page.locator("input[name=csrf_token]").first.get_attribute("value")
    for action in ("transform", "preview"):
        forged = reader.page.request.post(
            f"/imports/{import_id}/transform",
            form={
                "csrf_token": token,
                "dataset": "products",
                "action": action,
                "map_sku": "sku",
                "map_name": "name",
                "map_unit_price": "unit_price",
                "map_currency": "currency",
            },
        )
        assert forged.status == 403
        assert "Not allowed" in forged.text()
    reader.page.goto(f"/imports/{import_id}")
    assert reader.page.get_by_role("heading", name="Transforms").count() == 0
    assert stored_products(factory, code) == 0


def test_datasets_page_and_its_templates(visit, factory, shots, tmp_path):
    viewer = create_user(factory, "viewer")
    v = visit()
    v.sign_in(viewer.email)
    v.page.goto("/imports")
    v.page.get_by_role("link", name="Datasets").click()
    assert path_of(v.page) == "/datasets"
    assert v.page.title() == "Datasets · Backoffice"
    products = v.page.locator("section#products")
    assert "Key sku" in " ".join(products.locator("dl").inner_text().split())
    rows = {r[0]: r[1:] for r in table_rows(products.locator("table"))}
    assert rows["sku key"] == ("text", "required", "")
    assert rows["unit_price"] == ("numeric", "required", "at least 0")
    rates = {r[0]: r[1:] for r in table_rows(v.page.locator("section#rates table"))}
    assert rates["expires_date"] == ("date", "", "must be after effective_date")
    assert rates["weight_max_kg"] == ("numeric", "", "at least 0; must be at least weight_min_kg")
    v.page.screenshot(path=shots / "datasets-1280.png", full_page=True)
    with v.page.expect_download() as started:
        products.get_by_role("link", name="Download template").click()
    download = started.value
    assert download.suggested_filename == "products-template.csv"
    saved = tmp_path / "template.csv"
    download.save_as(saved)
    assert saved.read_bytes() == (
        b"sku,name,category,weight_kg,length_cm,width_cm,height_cm,unit_price,currency,"
        b"barcode,active,updated_at\r\n"
    )
    answer = v.page.request.get("/datasets/rates/template.csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="rates-template.csv"'
    assert answer.headers["content-type"].startswith("text/csv")
    assert v.page.request.get("/datasets/nope/template.csv").status == 404
    # "Datasets" is no item of the main navigation.
    assert v.page.get_by_role("navigation", name="Main").get_by_text("Datasets").count() == 0
    assert v.console_errors == []
    assert v.foreign_requests() == []


def test_transform_pages_at_400_pixels(visit, factory, worker, tmp_path, shots):
    operator = create_user(factory, "operator")
    v = visit(width=400)
    v.sign_in(operator.email)
    staged_import(v, tmp_path, f"N{uuid.uuid4().hex[:6].upper()}")
    v.page.screenshot(path=shots / "import-transform-form-400.png", full_page=True)
    assert v.page.evaluate("document.documentElement.scrollWidth") <= 400
    v.page.get_by_role("button", name="Transform").click()
    wait_for_outcome(v, v.page.locator("section[aria-labelledby=rejects]"))
    v.page.screenshot(path=shots / "transform-400.png", full_page=True)
    assert v.page.evaluate("document.documentElement.scrollWidth") <= 400
    v.page.goto("/datasets")
    v.page.screenshot(path=shots / "datasets-400.png", full_page=True)
    assert v.page.evaluate("document.documentElement.scrollWidth") <= 400
