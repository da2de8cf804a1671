"""Logging in and out, sessions, CSRF, API tokens, throttling and bad input, over HTTP."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, text

from app.auth import passwords
from app.auth.tokens import SESSION_COOKIE
from app.models.primary.config import ApiToken, AuditEntry, User, UserSession
from tests.conftest import PASSWORD, login


def cookie_value(client) -> str | None:
    cookie = client.get_cookie(SESSION_COOKIE)
    return cookie.value if cookie else None


def audit_actions(db, outcome=None) -> list[tuple[str, str]]:
    rows = db.execute(select(AuditEntry.action, AuditEntry.outcome).order_by(AuditEntry.id))
    return [tuple(row) for row in rows if outcome is None or row[1] == outcome]


def test_login_returns_the_user_and_a_csrf_token_and_sets_a_safe_cookie(client, make_user, db):
    user = make_user("operator")
    response = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200
    assert response.json["user"]["email"] == user.email
    assert response.json["user"]["role"] == "operator"
    assert len(response.json["csrf_token"]) == 64
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Expires=" in header

    token = cookie_value(client)
    assert len(token) >= 43, "at least 256 random bits, URL-safe"
    stored = db.scalars(select(UserSession.token_hash).where(UserSession.user_id == user.id)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()], "only the hash is stored"
    raw_anywhere = (
        db.connection_for("primary")
        .execute(
            text("SELECT count(*) FROM config.sessions s WHERE s::text LIKE :t"),
            {"t": f"%{token}%"},
        )
        .scalar()
    )
    assert raw_anywhere == 0, "the raw token is nowhere in the database"
    assert ("auth.login", "ok") in audit_actions(db)


def test_me_answers_who_is_logged_in(client, make_user):
    user = make_user("viewer")
    assert client.get("/api/auth/me").status_code == 401
    csrf = login(client, user.email)
    body = client.get("/api/auth/me").json
    assert body == {"user": body["user"], "auth": "session", "csrf_token": csrf}
    assert body["user"]["id"] == user.id


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "disabled user"])
def test_failed_login_is_refused_the_same_way_and_audited(client, make_user, db, case):
    user = make_user("viewer")
    email, password = user.email, PASSWORD
    if case == "wrong password":
        password = "not the password at all"
    elif case == "unknown email":
        email = "nobody@example.com"
    else:
        user.is_active = False
        db.commit()
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert response.json["error"] == {
        "code": "invalid_credentials",
        "message": "wrong email or password",
    }
    assert cookie_value(client) is None
    assert ("auth.login", "failed") in audit_actions(db)


def test_pre_login_cookie_is_worthless_after_login(client, make_user, db):
    first, second = make_user("viewer"), make_user("viewer")
    # A cookie planted before login (a fixation attempt), and a session already open.
    client.set_cookie(SESSION_COOKIE, "planted-by-an-attacker")
    assert client.get("/api/auth/me").status_code == 401
    login(client, first.email)
    earlier = cookie_value(client)
    login(client, second.email)
    later = cookie_value(client)
    assert later not in (earlier, "planted-by-an-attacker")
    client.set_cookie(SESSION_COOKIE, earlier)
    assert client.get("/api/auth/me").status_code == 401, "the session from before is ended"
    ended = db.scalar(select(UserSession.ended_reason).where(UserSession.user_id == first.id))
    assert ended == "replaced by a new login"


def test_unsafe_requests_by_cookie_need_the_csrf_header(client, make_user):
    user = make_user("viewer")
    csrf = login(client, user.email)
    assert client.post("/api/auth/logout").json["error"]["code"] == "csrf_failed"
    wrong = client.post("/api/auth/logout", headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403 and wrong.json["error"]["code"] == "csrf_failed"
    assert client.get("/api/auth/me").status_code == 200, "refused requests changed nothing"
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/auth/me").status_code == 401
    assert cookie_value(client) is None


def create_token(client, csrf, password=PASSWORD, **fields):
    body = {"name": "cron", "current_password": password, **fields}
    return client.post("/api/auth/tokens", json=body, headers={"X-CSRF-Token": csrf})


def test_api_tokens_need_no_csrf_are_capped_by_role_and_revocable(client, make_user):
    user = make_user("operator")
    csrf = login(client, user.email)
    too_much = create_token(client, csrf, role="admin")
    assert too_much.status_code == 422
    created = create_token(client, csrf, role="viewer")
    assert created.status_code == 201
    secret, token_id = created.json["secret"], created.json["token"]["id"]
    assert secret.startswith("bo_") and "secret" not in created.json["token"]
    assert client.get("/api/auth/tokens").json["tokens"][0]["id"] == token_id

    bearer = {"Authorization": f"Bearer {secret}"}
    client.delete_cookie(SESSION_COOKIE)
    me = client.get("/api/auth/me", headers=bearer).json
    assert me["auth"] == "token" and me["user"]["role"] == "viewer" and "csrf_token" not in me
    # No CSRF header needed with a bearer token; the viewer role of the token still applies.
    assert client.get("/api/auth/sessions", headers=bearer).status_code == 200
    assert client.get("/api/users", headers=bearer).status_code == 403

    csrf = login(client, user.email)
    revoked = client.delete(f"/api/auth/tokens/{token_id}", headers={"X-CSRF-Token": csrf})
    assert revoked.status_code == 204
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    assert client.get("/api/auth/me", headers={"Authorization": "Bearer junk"}).status_code == 401
    assert client.get("/api/auth/me", headers={"Authorization": "Basic x"}).status_code == 401


def test_a_limited_token_of_an_admin_cannot_mint_tokens_or_end_sessions(client, make_user, db, app):
    admin = make_user("admin")
    csrf = login(client, admin.email)
    viewer_token = create_token(client, csrf, role="viewer", expires_in_days=1).json
    other = app.test_client()
    login(other, admin.email)
    bearer = {"Authorization": f"Bearer {viewer_token['secret']}"}
    client.delete_cookie(SESSION_COOKIE)

    attempts = [
        ("POST", "/api/auth/tokens", {"name": "x", "current_password": PASSWORD}),
        ("POST", "/api/auth/tokens", {"name": "x", "role": "admin", "current_password": PASSWORD}),
        ("DELETE", f"/api/auth/tokens/{viewer_token['token']['id']}", None),
        ("DELETE", "/api/auth/sessions", None),
        ("DELETE", "/api/auth/sessions/1", None),
    ]
    for method, path, body in attempts:
        response = client.open(path, method=method, json=body, headers=bearer)
        assert response.status_code == 403, (method, path)
        assert response.json["error"]["code"] == "session_required", (method, path)
    tokens = db.scalars(select(ApiToken.role).where(ApiToken.user_id == admin.id)).all()
    assert tokens == ["viewer"], "nothing was minted"
    assert other.get("/api/auth/me").status_code == 200, "no session was ended"
    assert ("access.refused", "refused") in audit_actions(db)


def test_creating_a_token_asks_for_the_password_again(client, make_user, db):
    user = make_user("viewer")
    csrf = login(client, user.email)
    missing = client.post("/api/auth/tokens", json={"name": "cron"}, headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 422 and missing.json["error"]["code"] == "missing_field"
    assert "current_password" in missing.json["error"]["message"]
    wrong = create_token(client, csrf, password="not my password at all")
    assert wrong.status_code == 403 and wrong.json["error"]["code"] == "invalid_credentials"
    assert ("token.create", "refused") in audit_actions(db)
    assert db.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert create_token(client, csrf).status_code == 201


def test_a_token_never_outranks_or_outlives_the_credential_that_makes_it(make_user, db):
    from app.audit import Actor
    from app.auth.api_tokens import create_api_token
    from app.auth.session_cache import Principal
    from app.errors import Refused

    admin = make_user("admin")
    limit = datetime.now(UTC) + timedelta(days=1)
    caller = Principal(
        user_id=admin.id,
        email=admin.email,
        display_name="Admin",
        role="viewer",
        must_change_password=False,
        expires_at=limit,
        token_id=1,
    )
    actor = Actor.of(caller, None)
    token, _raw = create_api_token(db, actor, admin, name="derived", caller=caller)
    assert token.role == "viewer" and token.expires_at == limit
    for fields in ({"role": "admin"}, {"role": "operator"}, {"expires_in_days": 2}):
        with pytest.raises(Refused) as refused:
            create_api_token(db, actor, admin, name="more", caller=caller, **fields)
        assert refused.value.status == 422, fields


def test_a_token_of_a_user_who_must_change_the_password_is_refused(client, make_user, db):
    user = make_user("operator")
    csrf = login(client, user.email)
    bearer = {"Authorization": f"Bearer {create_token(client, csrf).json['secret']}"}
    client.delete_cookie(SESSION_COOKIE)
    user.must_change_password = True
    db.commit()
    blocked = client.get("/api/auth/sessions", headers=bearer)
    assert blocked.status_code == 403
    assert blocked.json["error"]["code"] == "password_change_required"
    assert client.get("/api/auth/me", headers=bearer).json["user"]["must_change_password"]


def test_changing_my_password_revokes_my_api_tokens(client, make_user, db):
    user = make_user("operator")
    csrf = login(client, user.email)
    bearer = {"Authorization": f"Bearer {create_token(client, csrf).json['secret']}"}
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    changed = client.post(
        "/api/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
    )
    assert changed.status_code == 200
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    assert client.get("/api/auth/tokens").json["tokens"][0]["revoked_at"] is not None
    assert ("token.revoke_all", "ok") in audit_actions(db)


def test_answers_with_secrets_are_not_stored_by_caches(client, make_user, as_admin, app):
    _admin, headers = as_admin
    user = make_user("viewer")
    logged_in = app.test_client().post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    assert logged_in.status_code == 200 and logged_in.headers["Cache-Control"] == "no-store"
    assert client.get("/api/auth/me").headers["Cache-Control"] == "no-store"
    assert create_token(client, headers["X-CSRF-Token"]).headers["Cache-Control"] == "no-store"
    reset = client.post(f"/api/users/{user.id}/reset-password", headers=headers)
    assert "temporary_password" in reset.json
    assert reset.headers["Cache-Control"] == "no-store"
    created = client.post(
        "/api/users",
        headers=headers,
        json={"email": "fresh@example.com", "display_name": "Fresh", "role": "viewer"},
    )
    assert "temporary_password" in created.json
    assert created.headers["Cache-Control"] == "no-store"
    failed = client.post("/api/auth/login", json={"email": user.email, "password": "x"})
    assert failed.status_code == 401 and failed.headers["Cache-Control"] == "no-store"


def test_failed_logins_lock_the_account_with_retry_after(client, make_user, db):
    user = make_user("viewer")
    for _ in range(5):
        response = client.post("/api/auth/login", json={"email": user.email, "password": "x"})
        assert response.status_code == 401
    locked = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json["error"]["code"] == "too_many_attempts"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert ("auth.login", "throttled") in audit_actions(db)


def test_failed_logins_from_one_client_lock_it_across_accounts(client, db):
    for n in range(20):
        email = f"guess{n}@example.com"
        response = client.post("/api/auth/login", json={"email": email, "password": "x"})
        assert response.status_code == 401
    response = client.post("/api/auth/login", json={"email": "other@example.com", "password": "x"})
    assert response.status_code == 429


def test_success_resets_the_account_count(client, make_user):
    user = make_user("viewer")
    for _ in range(4):
        client.post("/api/auth/login", json={"email": user.email, "password": "x"})
    login(client, user.email)
    for _ in range(4):
        assert (
            client.post("/api/auth/login", json={"email": user.email, "password": "x"}).status_code
            == 401
        )


def test_changing_the_password_ends_the_other_sessions(client, app, make_user):
    user = make_user("viewer")
    other = app.test_client()
    login(other, user.email)
    csrf = login(client, user.email)

    def change(current, new):
        return client.post(
            "/api/auth/password",
            headers={"X-CSRF-Token": csrf},
            json={"current_password": current, "new_password": new},
        )

    assert change("wrong password here", "a brand new password").status_code == 403
    assert change(PASSWORD, "short").json["error"]["code"] == "weak_password"
    assert change(PASSWORD, "a brand new password").status_code == 200
    assert client.get("/api/auth/me").status_code == 200, "this session stays"
    assert other.get("/api/auth/me").status_code == 401, "the others end"
    login(other, user.email, "a brand new password")


def test_a_reset_password_must_be_changed_before_anything_else(client, make_user, as_admin, app):
    _admin, headers = as_admin
    user = make_user("operator")
    victim = app.test_client()
    login(victim, user.email)
    reset = client.post(f"/api/users/{user.id}/reset-password", headers=headers)
    assert reset.status_code == 200
    temporary = reset.json["temporary_password"]
    assert victim.get("/api/auth/me").status_code == 401, "the reset ended the session"

    csrf = login(victim, user.email, temporary)
    assert victim.get("/api/auth/me").json["user"]["must_change_password"] is True
    blocked = victim.get("/api/auth/sessions")
    assert (
        blocked.status_code == 403 and blocked.json["error"]["code"] == "password_change_required"
    )
    changed = victim.post(
        "/api/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": temporary, "new_password": "mine from now on"},
    )
    assert changed.status_code == 200
    assert victim.get("/api/auth/sessions").status_code == 200


def test_idle_and_absolute_timeouts_are_enforced_on_the_server(client, make_user, db):
    user = make_user("viewer")
    login(client, user.email)
    row = db.scalar(select(UserSession).where(UserSession.user_id == user.id))
    row.last_seen_at = datetime.now(UTC) - timedelta(minutes=31)
    db.commit()
    assert client.get("/api/auth/me").status_code == 401, "idle for longer than 30 minutes"

    login(client, user.email)
    row = db.scalar(
        select(UserSession).where(
            UserSession.user_id == user.id, UserSession.ended_at.is_(None), UserSession.id != row.id
        )
    )
    row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.commit()
    assert client.get("/api/auth/me").status_code == 401, "past the absolute timeout"


def test_an_outdated_hash_is_replaced_at_login(client, make_user, db):
    user = make_user("viewer")
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    db.commit()
    assert passwords.needs_rehash(user.password_hash)
    login(client, user.email)
    db.refresh(user)
    assert not passwords.needs_rehash(user.password_hash)
    assert passwords.verify_password(user.password_hash, PASSWORD)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": "email=a&password=b"}, 415, "unsupported_media_type"),
        ({"json": ["a", "list"]}, 400, "invalid_json"),
        ({"json": {"email": "a@example.com"}}, 422, "missing_field"),
        ({"json": {"email": 5, "password": "x"}}, 422, "invalid_field"),
        ({"json": {"email": "a@example.com", "password": ["x"]}}, 422, "invalid_field"),
        (
            {"json": {"email": "a@example.com", "password": "x", "admin": True}},
            422,
            "invalid_field",
        ),
        ({"json": {"email": "a@ex\x00ample.com", "password": "x"}}, 400, "invalid_input"),
        ({"json": {"email": "' OR 1=1 --", "password": "' OR ''='"}}, 401, "invalid_credentials"),
        (
            {"json": {"email": "a@example.com", "password": "x" * 2_000_000}},
            413,
            "request_entity_too_large",
        ),
    ],
)
def test_bad_login_input_gets_a_json_4xx_and_changes_nothing(client, db, kwargs, status, code):
    users_before = db.scalar(select(func.count()).select_from(User))
    response = client.post("/api/auth/login", **kwargs)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert db.scalar(select(func.count()).select_from(User)) == users_before
    assert db.scalar(select(func.count()).select_from(UserSession)) == 0
