"""Curated data in the browser: a partial file's preview shows each stored value from -> to and
names the columns left as stored; the transform keeps them; a revert asks first, then puts
the rows back; each row's page shows its versions; the customer's rows are browsable."""

from __future__ import annotations

import re
import uuid

from tests.conftest import create_user
from tests.web.browser import JOB_WAIT, create_customer, path_of, upload, wait_for_outcome

FULL = (
    "sku,name,category,weight_kg,unit_price,currency,barcode\n"
    "P1,Kettle,kitchen,1.2,9.99,EUR,4006381333931\n"
    "P2,Toaster,kitchen,2.5,19.99,EUR,4006381333948\n"
)
PARTIAL = "sku,name,unit_price,currency\nP1,Kettle,10.49,EUR\nP2,Toaster,19.99,EUR\nP3,Fan,15,EUR\n"


def staged(v, tmp_path, code: str, content: str, name: str) -> int:
    upload(v, tmp_path, code, content, name)
    wait_for_outcome(v, v.page.get_by_role("heading", name="Staged rows"))
    return int(path_of(v.page).rsplit("/", 1)[1])


def transform_now(v) -> int:
    v.page.get_by_role("button", name="Transform").click()
    assert re.fullmatch(r"/transforms/\d+", path_of(v.page))
    wait_for_outcome(v, v.page.locator("section[aria-labelledby=counts]"))
    return int(path_of(v.page).rsplit("/", 1)[1])


def cells(table) -> list[list[str]]:
    return [row.locator("td").all_inner_texts() for row in table.locator("tbody tr").all()]


def test_preview_transform_revert_and_a_rows_history(visit, factory, worker, tmp_path, shots):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"H{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    staged(v, tmp_path, code, FULL, "full.csv")
    first = transform_now(v)

    staged(v, tmp_path, code, PARTIAL, "prices.csv")
    assert v.page.get_by_label("barcode", exact=True).input_value() == ""  # "(none)"
    v.page.get_by_role("button", name="Preview").click()
    assert v.page.url.endswith("#preview"), "the browser is taken to the preview"
    preview = v.page.locator("#preview")
    assert "Left as stored" in preview.inner_text()
    assert "category" in preview.locator("dl.details").inner_text()
    changes = preview.locator("#preview-changes")
    assert cells(changes) == [["2", "P1", "unit_price", "9.99", "10.49"]]
    assert changes.is_visible() and preview.bounding_box()["y"] < 900, "in view, not far below"
    v.page.screenshot(path=shots / "preview-changes-1280.png")

    second = transform_now(v)
    figures = dict(
        zip(
            v.page.locator("dl.figures dt").all_inner_texts(),
            v.page.locator("dl.figures dd").all_inner_texts(),
            strict=True,
        )
    )
    assert (figures["inserted"], figures["updated"], figures["unchanged"]) == ("1", "1", "1")
    assert "category" in v.page.locator("dl.details").inner_text()  # named as left as stored

    # The customer's rows, and one row's history.
    v.page.get_by_role("link", name="products of this customer").click()
    rows = v.page.locator("#dataset-rows")
    assert [r[0] for r in cells(rows)] == ["P1", "P2", "P3"]
    assert cells(rows)[0][2] == "kitchen", "the partial file kept the category"
    v.page.get_by_label("sku starts with").fill("P2")
    v.page.get_by_role("button", name="Search").click()
    assert [r[0] for r in cells(rows)] == ["P2"]
    v.page.get_by_label("sku starts with").fill("")
    v.page.get_by_role("button", name="Search").click()
    v.page.get_by_role("link", name="P1", exact=True).click()
    versions = v.page.locator("#versions thead th.version")
    assert versions.count() == 2
    now, before = versions.nth(0).inner_text(), versions.nth(1).inner_text()
    assert now.startswith("Now") and f"from transform #{second}" in now
    assert f"Before transform #{second}" in before and f"from transform #{first}" in before
    assert operator.display_name in before
    price = v.page.locator("#versions tbody tr", has_text="unit_price").locator("td")
    assert price.all_inner_texts() == ["10.49", "9.99"]
    assert price.nth(0).locator("mark").count() == 1, "the changed value is marked"
    v.page.screenshot(path=shots / "row-history-1280.png", full_page=True)

    # Revert: asked first, nothing done before the confirmation.
    v.page.goto(f"/transforms/{second}")
    v.page.get_by_role("link", name="Revert").click()
    assert path_of(v.page) == f"/transforms/{second}/revert"
    assert "2 rows of products go back" in v.page.get_by_role("main").inner_text()
    v.page.screenshot(path=shots / "revert-confirm-1280.png")
    v.page.get_by_role("link", name="Cancel").click()
    assert "Reverted by" not in v.page.get_by_role("main").inner_text()
    v.page.get_by_role("link", name="Revert").click()
    v.page.get_by_role("button", name="Revert").click()
    assert re.fullmatch(r"/transforms/\d+", path_of(v.page))
    counts = v.page.locator("section[aria-labelledby=counts]")
    counts.wait_for(timeout=JOB_WAIT)
    assert f"reverted transform #{second}" in v.page.get_by_role("main").inner_text()
    v.page.goto(f"/transforms/{second}")
    assert "Reverted by" in v.page.get_by_role("main").inner_text()
    assert v.page.get_by_role("link", name="Revert").count() == 0

    # The first transform cannot be reverted while... nothing stands on it now: it can.
    customer_id = _customer_of(v)
    v.page.goto(f"/datasets/products?customer={customer_id}")
    assert [r[0] for r in cells(v.page.locator("#dataset-rows"))] == ["P1", "P2"]
    assert cells(v.page.locator("#dataset-rows"))[0][7] == "9.99"
    assert first < second
    assert v.console_errors == []
    assert v.foreign_requests() == []

    # At 400 px the key stays in view and the versions scroll sideways in their box.
    narrow = visit(width=400)
    narrow.sign_in(operator.email)
    narrow.page.goto(f"/datasets/products?customer={customer_id}")
    assert narrow.page.get_by_role("link", name="P1", exact=True).is_visible()
    narrow.page.screenshot(path=shots / "dataset-rows-400.png", full_page=True)
    narrow.page.get_by_role("link", name="P1", exact=True).click()
    assert narrow.page.locator("#versions").is_visible()
    narrow.page.screenshot(path=shots / "row-history-400.png", full_page=True)


def _customer_of(v) -> str:
    """The customer id of the rows page linked from the transform page."""
    href = v.page.get_by_role("link", name="products of this customer").get_attribute("href")
    return href.rsplit("customer=", 1)[1]


def test_a_viewer_sees_no_revert_and_a_forged_one_is_refused(visit, factory, worker, tmp_path):
    operator, viewer = create_user(factory, "operator"), create_user(factory, "viewer")
    v = visit()
    v.sign_in(operator.email)
    code = f"R{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    staged(v, tmp_path, code, FULL, "full.csv")
    done = transform_now(v)
    w = visit()
    w.sign_in(viewer.email)
    w.page.goto(f"/transforms/{done}")
    assert w.page.get_by_role("link", name="Revert").count() == 0
    answer = w.page.request.post(f"/transforms/{done}/revert", form={"csrf_token": "x"})
    assert answer.status == 403
    shown = w.page.goto(f"/transforms/{done}/revert")
    assert shown.status == 403
