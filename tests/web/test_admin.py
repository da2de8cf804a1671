"""Users, audit and my account's API tokens, in a real Chromium: what admins and staff see."""

from __future__ import annotations

import re
import uuid

from tests.conftest import PASSWORD, create_user
from tests.web.browser import path_of


def secret_on_page(v) -> str:
    return v.page.locator("#secret").inner_text().strip()


def test_admin_creates_a_user_whose_temporary_password_is_shown_once(visit, factory, shots):
    admin = create_user(factory, "admin")
    v = visit()
    v.sign_in(admin.email)
    v.page.get_by_role("link", name="Users", exact=True).click()
    v.page.screenshot(path=shots / "users-1280.png", full_page=True)
    v.page.get_by_role("link", name="New user").click()
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    v.page.get_by_label("Email").fill(email)
    v.page.get_by_label("Name").fill("New Colleague")
    v.page.get_by_label("Role").select_option("operator")
    v.page.get_by_role("button", name="Create").click()
    temporary = secret_on_page(v)
    assert len(temporary) == 20
    assert v.page.get_by_role("heading", level=1).inner_text() == f"User {email} created"
    v.page.get_by_role("link", name="Done").click()
    assert re.fullmatch(r"/users/\d+", path_of(v.page))
    assert temporary not in v.page.content()  # shown once
    v.page.screenshot(path=shots / "user-1280.png", full_page=True)

    newcomer = visit()
    newcomer.sign_in(email, temporary)
    assert path_of(newcomer.page) == "/account"
    assert newcomer.page.get_by_role("alert").inner_text().startswith("Choose a new password")
    assert v.console_errors == [] and newcomer.console_errors == []


def test_a_taken_email_is_refused_next_to_its_field(visit, factory):
    admin, other = create_user(factory, "admin"), create_user(factory, "viewer")
    v = visit()
    v.sign_in(admin.email)
    v.page.goto("/users/new")
    v.page.get_by_label("Email").fill(other.email)
    v.page.get_by_label("Name").fill("Twin")
    v.page.get_by_role("button", name="Create").click()
    assert "exists" in v.page.locator("#email-error").inner_text()
    assert v.page.get_by_label("Name").input_value() == "Twin"


def test_disable_reset_and_delete_end_the_users_open_browser(visit, factory):
    admin = create_user(factory, "admin")
    boss = visit()
    boss.sign_in(admin.email)
    for action in ("Disable", "Reset password", "Delete"):
        user = create_user(factory, "operator")
        staff = visit()
        staff.sign_in(user.email)
        assert path_of(staff.page) == "/"
        boss.page.goto(f"/users/{user.id}")
        if action == "Delete":
            boss.page.get_by_role("link", name="Delete").click()
            assert boss.page.get_by_role("heading", level=1).inner_text().startswith("Delete ")
        boss.page.get_by_role("button", name=action).click()
        staff.page.goto("/customers")
        assert path_of(staff.page).startswith("/login?next="), action
    boss.page.goto("/users")
    assert boss.page.get_by_role("cell", name=user.email).count() == 0  # the deleted one


def test_an_admin_cannot_disable_themselves_and_is_told_why(visit, factory):
    admin = create_user(factory, "admin")
    v = visit()
    v.sign_in(admin.email)
    v.page.goto(f"/users/{admin.id}")
    v.page.get_by_role("button", name="Disable").click()
    assert "cannot demote or disable themselves" in v.page.locator(".flash.error").inner_text()
    v.page.goto("/customers")
    assert path_of(v.page) == "/customers"


def test_my_api_token_is_shown_once_and_an_admin_revokes_it(visit, factory, base_url, shots):
    admin, user = create_user(factory, "admin"), create_user(factory, "operator")
    v = visit()
    v.sign_in(user.email)
    v.page.goto("/account")
    v.page.get_by_label("Token name").fill("nightly export")
    v.page.get_by_label("Token role").select_option("viewer")
    v.page.get_by_label("Your password").fill("not my password")
    v.page.get_by_role("button", name="Create token").click()
    assert "wrong" in v.page.locator("#token_password-error").inner_text()
    assert v.page.get_by_label("Token name").input_value() == "nightly export"
    v.page.get_by_label("Your password").fill(PASSWORD)
    v.page.get_by_role("button", name="Create token").click()
    secret = secret_on_page(v)
    assert secret.startswith("bo_")
    script = v.context.request  # a script's call: no cookie needed with the token
    bearer = {"Authorization": f"Bearer {secret}"}
    assert script.get(f"{base_url}/api/auth/me", headers=bearer).json()["user"]["role"] == "viewer"
    # A token gets no pages: they are for people in a browser.
    anonymous = visit()
    page = anonymous.page.request.get(f"{base_url}/customers", headers=bearer)
    assert page.status == 403

    boss = visit()
    boss.sign_in(admin.email)
    boss.page.goto(f"/users/{user.id}")
    row = boss.page.locator("section[aria-labelledby=tokens] tbody tr").filter(
        has_text="nightly export"
    )
    row.get_by_role("button", name="Revoke").click()
    assert "revoked" in boss.page.get_by_role("status").inner_text()
    assert anonymous.page.request.get(f"{base_url}/api/auth/me", headers=bearer).status == 401
    v.page.goto("/account")
    v.page.screenshot(path=shots / "account-tokens-1280.png", full_page=True)
    assert "revoked" in v.page.locator("section[aria-labelledby=tokens] tbody").inner_text()


def test_audit_log_filters_by_action_and_actor(visit, factory, shots):
    admin = create_user(factory, "admin")
    v = visit()
    v.sign_in(admin.email)
    v.page.get_by_role("link", name="Audit", exact=True).click()
    assert v.page.get_by_role("cell", name="auth.login").count() > 0
    v.page.get_by_label("Action").fill("auth.login")
    v.page.get_by_label("Actor").select_option(label=admin.email)
    v.page.get_by_role("button", name="Filter").click()
    actions = v.page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    actors = v.page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert actions and set(actions) == {"auth.login"}
    assert set(actors) == {admin.email}
    v.page.screenshot(path=shots / "audit-1280.png", full_page=True)


def test_staff_see_no_admin_pages(visit, factory):
    operator = create_user(factory, "operator")
    v = visit()
    v.sign_in(operator.email)
    assert v.page.get_by_role("link", name="Users", exact=True).count() == 0
    assert v.page.get_by_role("link", name="Audit", exact=True).count() == 0
    for path in ("/users", "/users/new", "/audit"):
        assert v.page.goto(path).status == 403, path
    token = v.page.locator("input[name=csrf_token]").first.get_attribute("value")
    forged = v.page.request.post(
        "/users/new",
        form={"csrf_token": token, "email": "x@example.com", "display_name": "X", "role": "admin"},
    )
    assert forged.status == 403
