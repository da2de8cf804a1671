"""/api/users and /api/audit: admin-only user management, every change audited."""

import threading
import time

import pytest
from sqlalchemy import select, text

from app.audit import Actor
from app.auth.api_tokens import create_api_token
from app.db.session import session_scope
from app.models.primary.config import AuditEntry, User
from tests.conftest import PASSWORD, create_user, login


def last_audit(db) -> AuditEntry:
    return db.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))


def test_admin_creates_lists_gets_updates_and_deletes_a_user(client, as_admin, db):
    admin, headers = as_admin
    created = client.post(
        "/api/users",
        headers=headers,
        json={
            "email": "New.Person@Example.com",
            "display_name": "New Person",
            "role": "operator",
            "password": "a long enough password",
        },
    )
    assert created.status_code == 201, created.json
    user = created.json["user"]
    assert user["role"] == "operator" and "temporary_password" not in created.json
    assert "password_hash" not in user
    assert last_audit(db).action == "user.create" and last_audit(db).actor_id == admin.id

    listed = client.get("/api/users").json["users"]
    assert {user["email"] for user in listed} >= {admin.email, "New.Person@Example.com"}
    assert client.get(f"/api/users/{user['id']}").json["user"]["display_name"] == "New Person"

    patched = client.patch(
        f"/api/users/{user['id']}", headers=headers, json={"role": "viewer", "is_active": False}
    )
    assert patched.status_code == 200
    assert patched.json["changed"] == ["is_active", "role"]
    assert last_audit(db).details["changes"] == {"role": "viewer", "is_active": False}

    assert client.delete(f"/api/users/{user['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/users/{user['id']}").status_code == 404
    assert last_audit(db).action == "user.delete"


def test_a_user_created_without_a_password_gets_a_temporary_one(client, as_admin, app):
    _admin, headers = as_admin
    created = client.post(
        "/api/users",
        headers=headers,
        json={"email": "temp@example.com", "display_name": "Temp", "role": "viewer"},
    )
    temporary = created.json["temporary_password"]
    assert created.json["user"]["must_change_password"] is True
    other = app.test_client()
    login(other, "temp@example.com", temporary)
    assert other.get("/api/auth/sessions").json["error"]["code"] == "password_change_required"


def test_emails_are_unique_whatever_their_case(client, as_admin):
    admin, headers = as_admin
    response = client.post(
        "/api/users",
        headers=headers,
        json={
            "email": admin.email.upper(),
            "display_name": "Twin",
            "role": "viewer",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 409 and response.json["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    "email",
    [
        "zero\u200bwidth@example.com",
        "rtl\u202eoverride@example.com",
        "tab\t@example.com",
        "no-at-sign.example.com",
        "two@@example.com",
        "nodot@localhost",
        "a" * 250 + "@example.com",
        "",
    ],
)
def test_odd_emails_are_refused_and_nothing_is_created(client, as_admin, db, email):
    _admin, headers = as_admin
    before = db.scalars(select(User.id)).all()
    response = client.post(
        "/api/users",
        headers=headers,
        json={"email": email, "display_name": "Odd", "role": "viewer", "password": PASSWORD},
    )
    assert response.status_code == 422, response.json
    assert db.scalars(select(User.id)).all() == before


def test_bad_user_fields_are_refused(client, as_admin):
    _admin, headers = as_admin
    base = {"email": "x@example.com", "display_name": "X", "role": "viewer", "password": PASSWORD}
    for change, code in [
        ({"role": "superuser"}, "invalid_role"),
        ({"role": None}, "missing_field"),
        ({"display_name": 7}, "invalid_field"),
        ({"password": "short"}, "weak_password"),
        ({"password": "x@example.com"}, "weak_password"),
        ({"is_admin": True}, "invalid_field"),
    ]:
        response = client.post("/api/users", headers=headers, json={**base, **change})
        assert response.json["error"]["code"] == code, change
    user_id = client.post("/api/users", headers=headers, json=base).json["user"]["id"]
    response = client.patch(f"/api/users/{user_id}", headers=headers, json={"is_active": "no"})
    assert response.json["error"]["code"] == "invalid_field"
    assert client.get(f"/api/users/{2**63}").status_code == 404
    assert client.get("/api/users/999999999").status_code == 404


def test_admins_cannot_lock_themselves_out(client, as_admin):
    admin, headers = as_admin
    for body in ({"is_active": False}, {"role": "viewer"}):
        response = client.patch(f"/api/users/{admin.id}", headers=headers, json=body)
        assert response.status_code == 409
    assert client.delete(f"/api/users/{admin.id}", headers=headers).status_code == 409


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_non_admins_are_refused_and_the_refusal_is_audited(client, make_user, db, role):
    user = make_user(role)
    csrf = login(client, user.email)
    for method, url in [
        ("get", "/api/users"),
        ("get", "/api/audit"),
        ("post", "/api/users"),
        ("delete", f"/api/users/{user.id}"),
    ]:
        response = getattr(client, method)(url, headers={"X-CSRF-Token": csrf}, json={})
        assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    entry = last_audit(db)
    assert (entry.action, entry.outcome, entry.actor_id) == ("access.refused", "refused", user.id)


def test_admin_ends_a_users_sessions(client, as_admin, make_user, app):
    _admin, headers = as_admin
    user = make_user("viewer")
    phone, laptop = app.test_client(), app.test_client()
    login(phone, user.email)
    login(laptop, user.email)
    sessions = client.get(f"/api/users/{user.id}/sessions").json["sessions"]
    assert len(sessions) == 2
    one = sessions[0]["id"]
    assert client.delete(f"/api/users/{user.id}/sessions/{one}", headers=headers).status_code == 204
    assert client.delete(f"/api/users/{user.id}/sessions/{one}", headers=headers).status_code == 404
    assert sorted(
        [phone.get("/api/auth/me").status_code, laptop.get("/api/auth/me").status_code]
    ) == [200, 401]
    assert client.delete(f"/api/users/{user.id}/sessions", headers=headers).json == {
        "ended": 1,
        "revoked_tokens": 0,
    }
    assert {phone.get("/api/auth/me").status_code, laptop.get("/api/auth/me").status_code} == {401}


def test_the_audit_log_pages_newest_first_and_is_append_only(client, as_admin, db):
    admin, headers = as_admin
    for n in range(3):
        client.post(
            "/api/users",
            headers=headers,
            json={
                "email": f"p{n}@example.com",
                "display_name": "P",
                "role": "viewer",
                "password": PASSWORD,
            },
        )
    mine = f"action=user.create&actor_id={admin.id}"
    page = client.get(f"/api/audit?limit=2&{mine}").json
    assert [entry["action"] for entry in page["entries"]] == ["user.create", "user.create"]
    assert page["entries"][0]["id"] > page["entries"][1]["id"]
    rest = client.get(f"/api/audit?limit=5&{mine}&before_id={page['next_before_id']}")
    assert len(rest.json["entries"]) == 1
    assert client.get("/api/audit?limit=abc").status_code == 400
    assert client.get("/api/audit?limit=100000").status_code == 400

    conn = db.connection_for("primary")
    with pytest.raises(Exception, match="append-only"), conn.begin_nested():
        conn.execute(text("UPDATE config.audit_log SET action = 'forged'"))
    with pytest.raises(Exception, match="append-only"), conn.begin_nested():
        conn.execute(text("DELETE FROM config.audit_log"))


def make_token(db, user, name="cron") -> tuple[int, dict[str, str]]:
    """A committed API token of the user: its id, and the header that sends it."""
    token, raw = create_api_token(db, Actor(None, "tests"), user, name=name)
    db.commit()
    return token.id, {"Authorization": f"Bearer {raw}"}


CUTS = {
    "reset password": lambda user: ("POST", f"/api/users/{user.id}/reset-password", None),
    "disable": lambda user: ("PATCH", f"/api/users/{user.id}", {"is_active": False}),
    "end sessions": lambda user: ("DELETE", f"/api/users/{user.id}/sessions", None),
    "delete": lambda user: ("DELETE", f"/api/users/{user.id}", None),
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_cutting_a_user_off_revokes_their_api_tokens(client, as_admin, make_user, db, cut):
    _admin, headers = as_admin
    user = make_user("operator")
    _token_id, bearer = make_token(db, user)
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    method, path, body = CUTS[cut](user)
    response = client.open(path, method=method, json=body, headers=headers)
    assert response.status_code in (200, 204), response.json
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    if cut == "delete":
        return
    listed = client.get(f"/api/users/{user.id}/tokens").json["tokens"]
    assert listed[0]["revoked_at"] is not None
    entries = db.scalars(select(AuditEntry).where(AuditEntry.action == "token.revoke_all")).all()
    assert [entry.target_id for entry in entries] == [str(user.id)]
    assert entries[0].details["count"] == 1
    if cut == "disable":  # enabling again does not bring the tokens back
        client.patch(f"/api/users/{user.id}", headers=headers, json={"is_active": True})
        assert client.get("/api/auth/me", headers=bearer).status_code == 401
    if cut == "end sessions":
        assert response.json == {"ended": 0, "revoked_tokens": 1}


def test_admin_lists_and_revokes_a_users_tokens(client, as_admin, make_user, db):
    admin, headers = as_admin
    user, stranger = make_user("operator"), make_user("viewer")
    token_id, bearer = make_token(db, user)
    stranger_token, stranger_bearer = make_token(db, stranger)
    listed = client.get(f"/api/users/{user.id}/tokens").json["tokens"]
    assert [(token["id"], token["name"], token["revoked_at"]) for token in listed] == [
        (token_id, "cron", None)
    ]
    assert "secret" not in listed[0] and "token_hash" not in listed[0]
    assert client.get("/api/users/999999999/tokens").status_code == 404

    wrong = client.delete(f"/api/users/{user.id}/tokens/{stranger_token}", headers=headers)
    assert wrong.status_code == 404 and wrong.json["error"]["code"] == "not_found"
    assert client.get("/api/auth/me", headers=stranger_bearer).status_code == 200
    revoked = client.delete(f"/api/users/{user.id}/tokens/{token_id}", headers=headers)
    assert revoked.status_code == 204
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    entry = last_audit(db)
    assert (entry.action, entry.actor_id, entry.target_id) == (
        "token.revoke",
        admin.id,
        str(token_id),
    )
    assert entry.details["owner_id"] == user.id


def test_an_admin_token_cannot_end_sessions_or_revoke_tokens(client, as_admin, make_user, db):
    admin, _headers = as_admin
    user = make_user("viewer")
    token_id, _bearer = make_token(db, user)
    _admin_token, admin_bearer = make_token(db, admin)
    for method, path in [
        ("DELETE", f"/api/users/{user.id}/sessions"),
        ("DELETE", f"/api/users/{user.id}/sessions/1"),
        ("DELETE", f"/api/users/{user.id}/tokens/{token_id}"),
    ]:
        response = client.open(path, method=method, headers=admin_bearer)
        assert response.status_code == 403, path
        assert response.json["error"]["code"] == "session_required", path
    assert client.get(f"/api/users/{user.id}/tokens", headers=admin_bearer).status_code == 200


# -- the last active admin, under concurrency -------------------------------------------------


def waiting_backends(engine, count: int) -> None:
    """Wait until `count` backends of this database wait on a lock."""
    deadline = time.monotonic() + 10
    # Autocommit: a transaction would see pg_stat_activity as it was at its first look.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
            if waiting >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"only {waiting} of {count} requests wait on a lock")


MUTUAL = {
    "demote": lambda other: ("PATCH", f"/api/users/{other.id}", {"role": "viewer"}),
    "disable": lambda other: ("PATCH", f"/api/users/{other.id}", {"is_active": False}),
    "delete": lambda other: ("DELETE", f"/api/users/{other.id}", None),
}


@pytest.mark.parametrize("change", list(MUTUAL))
def test_two_admins_removing_each_other_at_once_leave_one_admin(committed_app, change):
    factory = committed_app.extensions["backoffice"].session_factory
    with session_scope(factory) as session:  # these two are the only active admins
        session.connection_for("primary").execute(
            text("UPDATE config.users SET is_active = false WHERE role = 'admin'")
        )
    first, second = create_user(factory, "admin"), create_user(factory, "admin")
    clients = {first.id: committed_app.test_client(), second.id: committed_app.test_client()}
    csrf = {user.id: login(clients[user.id], user.email) for user in (first, second)}
    replies: dict[int, object] = {}

    def remove(actor, other) -> None:
        method, path, body = MUTUAL[change](other)
        replies[actor.id] = clients[actor.id].open(
            path, method=method, json=body, headers={"X-CSRF-Token": csrf[actor.id]}
        )

    # Both requests are held at their audit row, after any check they make, until both are in.
    engine = committed_app.extensions["backoffice"].engines.primary
    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE config.audit_log IN SHARE MODE"))
        threads = [
            threading.Thread(target=remove, args=(first, second)),
            threading.Thread(target=remove, args=(second, first)),
        ]
        for thread in threads:
            thread.start()
        waiting_backends(engine, 2)
        holder.commit()
    for thread in threads:
        thread.join(30)

    # One wins. The other is refused as the last admin, or, when the winner's change (which
    # ends the loser's sessions) commits while the loser's request is still being
    # authenticated, finds its session ended: either way nothing of it happens.
    statuses = sorted(reply.status_code for reply in replies.values())
    assert statuses in ([200, 401], [200, 409], [204, 401], [204, 409]), [
        reply.json for reply in replies.values()
    ]
    refused = next(reply for reply in replies.values() if reply.status_code in (401, 409))
    assert refused.json["error"]["code"] in ("last_admin", "unauthenticated")
    with session_scope(factory) as session:
        admins = session.scalars(select(User.id).where(User.role == "admin", User.is_active)).all()
    assert len(admins) == 1 and admins[0] in clients
