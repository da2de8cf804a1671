"""The web pages in a real headless Chromium, against gunicorn: signing in, customers, imports,
the rules every page keeps. Screenshots of the main pages (1280 and 400 px wide) are saved
under the run's temporary folder; the path is printed at the end of each module."""

from __future__ import annotations

import re
import uuid

from tests.conftest import PASSWORD, create_user
from tests.web.browser import (
    JOB_WAIT,
    PRODUCTS,
    create_customer,
    path_of,
    upload,
    wait_for_outcome,
)


def test_anonymous_page_sends_to_sign_in_and_back(visit, factory):
    user = create_user(factory, "viewer")
    v = visit()
    v.page.goto("/customers?q=zz")
    assert path_of(v.page).startswith("/login?next=")
    assert v.page.title() == "Sign in · Backoffice"
    v.page.get_by_label("Email").fill(user.email)
    v.page.get_by_label("Password").fill(PASSWORD)
    v.page.get_by_role("button", name="Sign in").click()
    assert path_of(v.page) == "/customers?q=zz"
    assert v.page.get_by_role("heading", name="Customers").is_visible()
    for label in ("Dashboard", "Customers", "Account"):
        assert v.page.get_by_role("link", name=label, exact=True).is_visible()
    assert v.page.get_by_role("button", name="Sign out").is_visible()
    assert v.console_errors == []


def test_sign_in_goes_back_only_to_a_local_path(visit, factory):
    user = create_user(factory, "viewer")
    v = visit()
    v.page.goto("/login?next=https://evil.example/x")
    v.page.get_by_label("Email").fill(user.email)
    v.page.get_by_label("Password").fill(PASSWORD)
    v.page.get_by_role("button", name="Sign in").click()
    assert path_of(v.page) == "/"
    assert v.foreign_requests() == []


def test_wrong_password_and_unknown_email_read_the_same(visit, factory):
    user = create_user(factory, "viewer")
    v = visit()
    messages = []
    for email, password in ((user.email, "not the password"), ("nobody@example.com", "x" * 12)):
        v.page.goto("/login")
        v.page.get_by_label("Email").fill(email)
        v.page.get_by_label("Password").fill(password)
        v.page.get_by_role("button", name="Sign in").click()
        messages.append(v.page.get_by_role("alert").inner_text())
        assert v.page.get_by_label("Email").input_value() == email  # kept for a retry
    assert messages == ["Wrong email or password."] * 2
    assert v.console_errors == []  # a refused form is a page that loaded, not an error


def test_operator_creates_and_edits_a_customer(visit, factory, shots):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    v.page.screenshot(path=shots / "dashboard-1280.png", full_page=True)
    v.page.get_by_role("link", name="Customers", exact=True).click()
    v.page.get_by_role("link", name="New customer").click()
    code = f"W{uuid.uuid4().hex[:6].upper()}"
    v.page.get_by_label("Code").fill(code)
    v.page.get_by_label("Name", exact=True).fill("Web Widgets")
    v.page.get_by_label("Contact email").fill("not an address")
    v.page.get_by_role("button", name="Create").click()
    # Refused by the service: the message sits next to its field, the values stay.
    error = v.page.locator("#contact_email-error")
    assert "valid address" in error.inner_text()
    assert v.page.get_by_label("Code").input_value() == code
    v.page.screenshot(path=shots / "customer-new-error-1280.png", full_page=True)
    v.page.get_by_label("Contact email").fill("buyer@widgets.example")
    v.page.get_by_role("button", name="Create").click()
    assert re.fullmatch(r"/customers/\d+", path_of(v.page))
    assert v.page.get_by_role("status").inner_text() == f"Customer {code} created."
    v.page.get_by_label("Name", exact=True).fill("Web Widgets Ltd")
    v.page.get_by_role("button", name="Save").click()
    assert v.page.get_by_role("heading", level=1).inner_text() == f"{code} Web Widgets Ltd"
    v.page.get_by_role("button", name="Deactivate").click()
    assert "is now inactive" in v.page.get_by_role("status").inner_text()
    v.page.screenshot(path=shots / "customer-1280.png", full_page=True)
    v.page.goto(f"/customers?q={code}")
    assert v.page.get_by_role("cell", name="Web Widgets Ltd").is_visible()
    v.page.screenshot(path=shots / "customers-1280.png", full_page=True)
    assert v.console_errors == []
    assert v.foreign_requests() == []


def test_pages_at_400_pixels(visit, factory, shots):
    operator = create_user(factory, "operator")
    v = visit(width=400)
    v.page.goto("/login")
    v.page.screenshot(path=shots / "login-400.png", full_page=True)
    v.sign_in(operator.email)
    for name in ("dashboard", "customers", "account"):
        v.page.goto("/" if name == "dashboard" else f"/{name}")
        # Nothing but tables scrolls sideways: the page itself fits the screen.
        v.page.screenshot(path=shots / f"{name}-400.png", full_page=True)
        assert v.page.evaluate("document.documentElement.scrollWidth") <= 400, name
        v.page.screenshot(path=shots / f"{name}-400.png", full_page=True)


def test_security_headers_on_every_page(visit, base_url, factory):
    user = create_user(factory, "viewer")
    v = visit()
    response = v.page.goto("/login")
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    v.sign_in(user.email)
    for path in ("/", "/customers", "/account"):
        headers = v.page.goto(path).headers
        assert headers["content-security-policy"] == csp, path
        assert headers["cache-control"] == "no-store", path
    assert v.foreign_requests() == []
    assert v.console_errors == []


def test_viewer_sees_no_controls_and_cannot_forge_a_write(visit, factory):
    viewer = create_user(factory, "viewer")
    v = visit()
    v.sign_in(viewer.email)
    v.page.goto("/customers")
    assert v.page.get_by_role("link", name="New customer").count() == 0
    response = v.page.goto("/customers/new")
    assert response.status == 403
    assert v.page.get_by_role("heading", name="Not allowed").is_visible()
    # The viewer's own CSRF token, a well-formed form: the server refuses it all the same.
    v.page.goto("/account")
    token = v.page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = v.page.request.post(
        "/customers/new", form={"csrf_token": token, "code": "FORGED", "name": "Forged"}
    )
    assert forged.status == 403
    assert "operator" in forged.text()


def test_form_without_its_csrf_token_is_refused(visit, factory):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    refused = v.page.request.post("/customers/new", form={"code": "NOCSRF", "name": "No token"})
    assert refused.status == 403
    assert "text/html" in refused.headers["content-type"]
    v.page.goto("/customers?q=NOCSRF")
    assert v.page.get_by_role("cell", name="No token").count() == 0


def test_sign_in_posted_from_another_site_is_refused(visit, base_url, factory):
    user = create_user(factory, "viewer")
    v = visit()
    refused = v.page.request.post(
        "/login",
        form={"email": user.email, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status == 403
    assert "backoffice_session" not in refused.headers.get("set-cookie", "")


def test_disabled_user_with_an_open_browser_lands_on_sign_in(visit, factory):
    admin, user = create_user(factory, "admin"), create_user(factory, "operator")
    staff = visit()
    staff.sign_in(user.email)
    staff.page.goto("/customers")
    boss = visit()
    boss.sign_in(admin.email)
    # The admin disables the user through the API, with the browser's own session.
    token = boss.page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = boss.page.request.patch(
        f"/api/users/{user.id}", data={"is_active": False}, headers={"X-CSRF-Token": token}
    )
    assert answer.status == 200, answer.text()
    staff.page.reload()
    assert path_of(staff.page).startswith("/login?next=")


def test_sign_out_ends_the_session(visit, factory):
    user = create_user(factory, "viewer")
    v = visit()
    v.sign_in(user.email)
    v.page.get_by_role("button", name="Sign out").click()
    assert path_of(v.page) == "/login"
    assert v.page.get_by_role("status").inner_text() == "Signed out."
    v.page.goto("/")
    assert path_of(v.page).startswith("/login")


def test_must_change_password_leads_to_the_account_page(visit, factory, shots):
    user = create_user(factory, "viewer", must_change_password=True)
    v = visit()
    v.sign_in(user.email)
    assert path_of(v.page) == "/account"
    v.page.goto("/customers")
    assert path_of(v.page) == "/account"
    v.page.screenshot(path=shots / "account-1280.png", full_page=True)
    v.page.get_by_label("Current password").fill(PASSWORD)
    v.page.get_by_label("New password", exact=True).fill("short")
    v.page.get_by_label("Repeat the new password").fill("short")
    v.page.get_by_role("button", name="Change password").click()
    assert "at least 12 characters" in v.page.locator("#new_password-error").inner_text()
    new = "a much better passphrase"
    v.page.get_by_label("Current password").fill(PASSWORD)
    v.page.get_by_label("New password", exact=True).fill(new)
    v.page.get_by_label("Repeat the new password").fill(new)
    v.page.get_by_role("button", name="Change password").click()
    assert v.page.get_by_role("status").inner_text().startswith("Password changed.")
    v.page.goto("/customers")
    assert path_of(v.page) == "/customers"


def test_unknown_paths_answer_a_page_or_json_by_who_asks(visit, factory):
    v = visit()
    response = v.page.goto("/no/such/page")
    assert response.status == 404
    assert v.page.get_by_role("heading", name="Not found").is_visible()
    api = v.page.request.get("/api/no-such-thing")
    assert api.status == 404
    assert api.json()["error"]["code"] == "not_found"


def test_upload_is_followed_live_until_its_rows_show(visit, factory, worker, tmp_path, shots):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"I{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    upload(v, tmp_path, code, PRODUCTS)
    # No reload by hand: the page follows the job and shows the rows once staged.
    v.page.get_by_role("heading", name="Staged rows").wait_for(timeout=JOB_WAIT)
    assert v.page.locator(".heading .status").inner_text() == "staged"
    header = v.page.locator("section[aria-labelledby=rows] thead th").all_inner_texts()
    assert header == ["Line", "sku", "name", "unit_price", "currency", "weight_kg", "active"]
    cells = v.page.locator("section[aria-labelledby=rows] tbody tr").first.locator("td")
    assert cells.all_inner_texts()[:3] == ["2", "A-1", "Anvil"]
    assert v.page.get_by_role("cell", name="Bolt; zinc").is_visible()
    v.page.screenshot(path=shots / "import-1280.png", full_page=True)
    v.page.goto("/imports")
    row = v.page.locator("tbody tr").filter(has_text=f"{code} Trading").first
    assert "products.csv" in row.inner_text() and "5" in row.inner_text()
    v.page.screenshot(path=shots / "imports-1280.png", full_page=True)
    assert v.console_errors == []
    assert v.foreign_requests() == []


def test_a_broken_file_shows_its_line_and_column(visit, factory, worker, tmp_path):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"B{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    upload(v, tmp_path, code, 'sku,name\nA,"open quote\nB,fine\n', name="broken.csv")
    alert = v.page.get_by_role("alert")
    wait_for_outcome(v, alert)
    assert alert.inner_text().startswith("Line 2")
    assert v.page.locator(".heading .status").inner_text() == "failed"


def test_upload_without_a_file_keeps_the_choices(visit, factory):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    code = f"N{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    v.page.goto("/imports/new")
    v.page.get_by_label("Customer").select_option(label=f"{code} · {code} Trading")
    v.page.get_by_label("Delimiter").select_option(label="Semicolon ;")
    v.page.get_by_role("button", name="Upload").click()
    assert v.page.locator("#file-error").inner_text() == "Choose a CSV file."
    assert v.page.get_by_label("Delimiter").input_value() == "semicolon"


def test_sign_in_and_the_navigation_work_from_the_keyboard(visit, factory):
    user = create_user(factory, "operator")
    v = visit()
    v.page.goto("/login")
    v.page.keyboard.press("Tab")  # the skip link comes first
    v.page.keyboard.press("Tab")
    assert v.page.evaluate("document.activeElement.id") == "email"
    v.page.keyboard.type(user.email)
    v.page.keyboard.press("Tab")
    v.page.keyboard.type(PASSWORD)
    v.page.keyboard.press("Enter")
    v.page.wait_for_url("**/")
    # Focus is visible, and the links take it in order: the skip link, then the navigation.
    v.page.keyboard.press("Tab")
    assert v.page.evaluate("document.activeElement.textContent") == "Skip to content"
    v.page.keyboard.press("Tab")
    v.page.keyboard.press("Tab")
    v.page.keyboard.press("Tab")
    assert v.page.evaluate("document.activeElement.textContent") == "Customers"
    outline = v.page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    v.page.keyboard.press("Enter")
    v.page.wait_for_url("**/customers")


def test_without_javascript_an_upload_is_followed_by_the_page_refreshing_itself(
    visit, factory, worker, tmp_path
):
    operator = create_user(factory, "operator")
    v = visit(javascript=False)
    v.sign_in(operator.email)
    code = f"J{uuid.uuid4().hex[:6].upper()}"
    create_customer(v, code)
    upload(v, tmp_path, code, PRODUCTS)
    # No script runs: the page's own refresh brings the staged rows.
    v.page.get_by_role("heading", name="Staged rows").wait_for(timeout=JOB_WAIT)
    assert v.page.get_by_role("cell", name="Bolt; zinc").is_visible()
    v.page.get_by_role("button", name="Sign out").click()
    assert path_of(v.page) == "/login"
