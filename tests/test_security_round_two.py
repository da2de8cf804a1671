"""The second security round: the password asked again is throttled like a sign-in and a
session that keeps guessing is ended; user management needs a session, not a token; the role
a route needs is checked before its body is read."""

import io

from prometheus_client import REGISTRY
from sqlalchemy import select

from app.models.primary.config import AuditEntry, User
from tests.conftest import PASSWORD, login

LIMIT = 5  # LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT


def throttled(check: str) -> float:
    return REGISTRY.get_sample_value("backoffice_auth_throttled_total", {"check": check}) or 0


def test_the_password_asked_again_is_throttled_and_the_guessing_session_ended(
    client, make_user, db
):
    user = make_user("viewer")
    csrf = login(client, user.email)
    headers = {"X-CSRF-Token": csrf}
    before = throttled("password_again")
    for _ in range(LIMIT):
        wrong = client.post(
            "/api/auth/tokens",
            headers=headers,
            json={"name": "x", "current_password": "not the password at all"},
        )
        assert wrong.status_code == 403 and wrong.json["error"]["code"] == "invalid_credentials"
    over = client.post(
        "/api/auth/password",
        headers=headers,
        json={"current_password": PASSWORD, "new_password": "a much better passphrase"},
    )
    assert over.status_code == 429 and over.json["error"]["code"] == "too_many_attempts"
    assert int(over.headers["Retry-After"]) > 0
    assert client.get("/api/auth/me").status_code == 401, "the guessing session is ended"
    again = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert again.status_code == 429, "and signing in from here waits like any guesser"
    assert throttled("password_again") == before + 1
    outcomes = db.scalars(
        select(AuditEntry.outcome).where(
            AuditEntry.actor_id == user.id,
            AuditEntry.action.in_(("token.create", "user.password_change")),
        )
    ).all()
    assert outcomes.count("refused") == LIMIT and "throttled" in outcomes
    assert db.get(User, user.id).password_hash, "the password did not change"


def test_a_right_password_gives_its_count_back(client, make_user):
    user = make_user("viewer")
    headers = {"X-CSRF-Token": login(client, user.email)}
    for _ in range(3):
        for password in ("not the password at all", PASSWORD):
            answer = client.post(
                "/api/auth/tokens",
                headers=headers,
                json={"name": "x", "current_password": password},
            )
            assert answer.status_code in (201, 403)
    assert client.get("/api/auth/me").status_code == 200, "a person who mistypes is not locked out"


def test_user_management_needs_a_session_and_a_token_may_only_read_rename_or_disable(
    client, make_user, db
):
    admin, other = make_user("admin"), make_user("viewer")
    csrf = login(client, admin.email)
    made = client.post(
        "/api/auth/tokens",
        headers={"X-CSRF-Token": csrf},
        json={"name": "cron", "current_password": PASSWORD},
    )
    bearer = {"Authorization": f"Bearer {made.json['secret']}"}
    token_client = client.application.test_client()
    counted = {"reason": "session_required"}
    before = REGISTRY.get_sample_value("backoffice_auth_refusals_total", counted) or 0
    refused = [
        token_client.post(
            "/api/users",
            headers=bearer,
            json={
                "email": "evil@example.com",
                "display_name": "Evil",
                "role": "admin",
                "password": "a much better passphrase",
            },
        ),
        token_client.patch(f"/api/users/{other.id}", headers=bearer, json={"role": "admin"}),
        token_client.patch(f"/api/users/{other.id}", headers=bearer, json={"is_active": True}),
        token_client.post(f"/api/users/{other.id}/reset-password", headers=bearer),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.json
        assert answer.json["error"]["code"] == "session_required"
    assert REGISTRY.get_sample_value("backoffice_auth_refusals_total", counted) == before + 4
    assert db.scalar(select(User).where(User.email == "evil@example.com")) is None
    assert db.get(User, other.id).role == "viewer"
    allowed = [
        token_client.get("/api/users", headers=bearer),
        token_client.get(f"/api/users/{other.id}", headers=bearer),
        token_client.patch(f"/api/users/{other.id}", headers=bearer, json={"display_name": "O"}),
        token_client.patch(f"/api/users/{other.id}", headers=bearer, json={"is_active": False}),
    ]
    assert [a.status_code for a in allowed] == [200, 200, 200, 200]
    needed = db.scalars(
        select(AuditEntry.details).where(
            AuditEntry.action == "access.refused", AuditEntry.actor_id == admin.id
        )
    ).all()
    assert sum(1 for d in needed if d.get("needed") == "session") == 4
    by_session = client.patch(
        f"/api/users/{other.id}", headers={"X-CSRF-Token": csrf}, json={"is_active": True}
    )
    assert by_session.status_code == 200


class Upload(io.RawIOBase):
    """A large multipart body, made as it is read, counting what the server read of it."""

    def __init__(self, csrf: str, size: int) -> None:
        head = (
            b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            + csrf.encode()
            + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\n"
        )
        tail = b"\r\n--b--\r\n"
        self.parts = [(head, 1), (b"x", size), (tail, 1)]
        self.length = len(head) + size + len(tail)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.read_bytes

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.length - self.read_bytes)
        out, at = bytearray(), self.read_bytes
        offset = 0
        for piece, times in self.parts:
            span = len(piece) * times
            if at < offset + span and len(out) < n:
                start = at - offset if at > offset else 0
                take = min(n - len(out), span - start)
                out += (piece * ((start + take) // len(piece) + 1))[start : start + take]
                at += take
            offset += span
        buffer[: len(out)] = out
        self.read_bytes += len(out)
        return len(out)


def test_a_viewers_upload_is_refused_before_its_body_is_read(client, make_user):
    viewer = make_user("viewer")
    csrf = login(client, viewer.email)
    body = Upload(csrf, 8 * 1024 * 1024)
    answer = client.post(
        "/imports/new",
        environ_overrides={
            "wsgi.input": body,
            "CONTENT_TYPE": "multipart/form-data; boundary=b",
            "CONTENT_LENGTH": str(body.length),
        },
    )
    assert answer.status_code == 403
    assert body.read_bytes <= 64 * 1024, f"{body.read_bytes:,} bytes read before the 403"
