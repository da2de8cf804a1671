"""/api/users: user management, for admins."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask_login import current_user

from app.api.auth import no_store
from app.api.boundary import Body, Text, takes
from app.audit import Actor
from app.auth import api_tokens, passwords, sessions, users
from app.auth.access import allow, require_session
from app.auth.login import client_ip
from app.auth.roles import Role
from app.db.session import db_session
from app.errors import NotFound

bp = Blueprint("users", __name__, url_prefix="/api/users")
bp.after_request(no_store)  # temporary passwords, and accounts: never kept by a cache


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


class NewUser(Body):
    """Without a password, a temporary one is made, returned once, and must be changed."""

    refusal_codes = {"role": "invalid_role"}
    email: Text
    display_name: Text
    role: Role
    password: str | None = None


class UserChanges(Body):
    """Only the fields sent change. A role change or a disable ends the user's sessions."""

    refusal_codes = {"role": "invalid_role"}
    role: Role | None = None
    is_active: bool | None = None
    display_name: Text | None = None


class PasswordReset(Body):
    """The new password; without one (or without a body) a temporary one is made."""

    password: str | None = None


def password_or_temporary(password: str | None) -> tuple[str, bool]:
    """The password given, or a generated temporary one (20 characters, 120 bits)."""
    if password is None:
        return passwords.temporary_password(), True
    return password, False


@bp.get("")
@allow("admin")
def list_users():
    return jsonify(users=[user.as_dict() for user in users.list_users(db_session())])


@bp.post("")
@allow("admin", session_only=True)
@takes(body=NewUser)
def create_user(body: NewUser):
    """Without a password, a temporary one is made, returned once, and must be changed."""
    password, generated = password_or_temporary(body.password)
    db = db_session()
    user = users.create_user(
        db,
        _actor(),
        email=body.email,
        display_name=body.display_name,
        role=body.role,
        password=password,
        must_change_password=generated,
    )
    db.commit()
    payload = {"user": user.as_dict()}
    if generated:
        payload["temporary_password"] = password
    return jsonify(payload), 201


@bp.get("/<int:user_id>")
@allow("admin")
def get_user(user_id: int):
    return jsonify(user=users.get_user(db_session(), user_id).as_dict())


@bp.patch("/<int:user_id>")
@allow("admin")
@takes(body=UserChanges)
def update_user(user_id: int, body: UserChanges):
    given = body.given()
    if "role" in given or given.get("is_active") is True:
        require_session()  # a token may rename or disable, not promote or bring back
    db = db_session()
    user = users.get_user(db, user_id)
    changes = users.update_user(db, _actor(), user, **given)
    db.commit()
    return jsonify(user=user.as_dict(), changed=sorted(changes))


@bp.delete("/<int:user_id>")
@allow("admin")
def delete_user(user_id: int):
    db = db_session()
    users.delete_user(db, _actor(), users.get_user(db, user_id))
    db.commit()
    return Response(status=204)


@bp.post("/<int:user_id>/reset-password")
@allow("admin", session_only=True)
@takes(body=PasswordReset, body_optional=True)
def reset_password(user_id: int, body: PasswordReset):
    """Ends every session of the user; the new password is temporary unless one is given."""
    password, generated = password_or_temporary(body.password)
    db = db_session()
    user = users.get_user(db, user_id)
    users.set_password(db, _actor(), user, password, must_change=True, action="user.password_reset")
    db.commit()
    payload = {"user": user.as_dict()}
    if generated:
        payload["temporary_password"] = password
    return jsonify(payload)


@bp.get("/<int:user_id>/sessions")
@allow("admin")
def user_sessions(user_id: int):
    db = db_session()
    users.get_user(db, user_id)
    return jsonify(sessions=[row.as_dict() for row in sessions.list_sessions(db, user_id)])


@bp.delete("/<int:user_id>/sessions")
@allow("admin", session_only=True)
def end_user_sessions(user_id: int):
    """Like `backoffice users end-sessions E`: the user's API tokens are revoked too."""
    db = db_session()
    users.get_user(db, user_id)
    ended, revoked = sessions.end_user_sessions(
        db, _actor(), user_id, reason="ended by an admin", revoke_tokens=True
    )
    db.commit()
    return jsonify(ended=ended, revoked_tokens=revoked)


@bp.delete("/<int:user_id>/sessions/<int:session_id>")
@allow("admin", session_only=True)
def end_user_session(user_id: int, session_id: int):
    db = db_session()
    if sessions.find_open_session(db, user_id, session_id) is None:
        raise NotFound(f"user {user_id} has no open session {session_id}")
    sessions.end_session(db, _actor(), session_id, reason="ended by an admin")
    db.commit()
    return Response(status=204)


@bp.get("/<int:user_id>/tokens")
@allow("admin")
def user_tokens(user_id: int):
    db = db_session()
    users.get_user(db, user_id)
    return jsonify(tokens=[token.as_dict() for token in api_tokens.list_api_tokens(db, user_id)])


@bp.delete("/<int:user_id>/tokens/<int:token_id>")
@allow("admin", session_only=True)
def revoke_user_token(user_id: int, token_id: int):
    db = db_session()
    users.get_user(db, user_id)
    token = api_tokens.find_api_token(db, user_id, token_id)
    if token is None:
        raise NotFound(f"user {user_id} has no API token {token_id}")
    api_tokens.revoke_api_token(db, _actor(), token)
    db.commit()
    return Response(status=204)
