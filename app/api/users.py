"""/api/users: user management, for admins."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user

from app.api.auth import no_store
from app.api.body import json_body
from app.auth import passwords, services
from app.auth.access import allow
from app.auth.login import client_ip
from app.db.session import db_session
from app.errors import APIError
from app.models.primary.config import UserSession

bp = Blueprint("users", __name__, url_prefix="/api/users")
bp.after_request(no_store)  # temporary passwords, and accounts: never kept by a cache


def _actor() -> services.Actor:
    return services.Actor.of(current_user, client_ip())


def password_or_temporary(body: dict) -> tuple[str, bool]:
    """The password given, or a generated temporary one (20 characters, 120 bits)."""
    password = body.get("password")
    if password is None:
        return passwords.temporary_password(), True
    if not isinstance(password, str):
        raise APIError("password must be a string", code="invalid_field", status=422)
    return password, False


@bp.get("")
@allow("admin")
def list_users():
    return jsonify(users=[u.as_dict() for u in services.list_users(db_session())])


@bp.post("")
@allow("admin")
def create_user():
    """Without a password, a temporary one is made, returned once, and must be changed."""
    body = json_body(
        allowed={"email", "display_name", "role", "password"},
        required={"email", "display_name", "role"},
    )
    password, generated = password_or_temporary(body)
    db = db_session()
    user = services.create_user(
        db,
        _actor(),
        email=body["email"],
        display_name=body["display_name"],
        role=body["role"],
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
    return jsonify(user=services.get_user(db_session(), user_id).as_dict())


@bp.patch("/<int:user_id>")
@allow("admin")
def update_user(user_id: int):
    body = json_body(allowed={"role", "is_active", "display_name"})
    db = db_session()
    user = services.get_user(db, user_id)
    changes = services.update_user(db, _actor(), user, **body)
    db.commit()
    return jsonify(user=user.as_dict(), changed=sorted(changes))


@bp.delete("/<int:user_id>")
@allow("admin")
def delete_user(user_id: int):
    db = db_session()
    services.delete_user(db, _actor(), services.get_user(db, user_id))
    db.commit()
    return Response(status=204)


@bp.post("/<int:user_id>/reset-password")
@allow("admin")
def reset_password(user_id: int):
    """Ends every session of the user; the new password is temporary unless one is given."""
    body = json_body(allowed={"password"}) if _has_body() else {}
    password, generated = password_or_temporary(body)
    db = db_session()
    user = services.get_user(db, user_id)
    services.set_password(
        db, _actor(), user, password, must_change=True, action="user.password_reset"
    )
    db.commit()
    payload = {"user": user.as_dict()}
    if generated:
        payload["temporary_password"] = password
    return jsonify(payload)


@bp.get("/<int:user_id>/sessions")
@allow("admin")
def user_sessions(user_id: int):
    db = db_session()
    services.get_user(db, user_id)
    return jsonify(sessions=[s.as_dict() for s in services.list_sessions(db, user_id)])


@bp.delete("/<int:user_id>/sessions")
@allow("admin", session_only=True)
def end_user_sessions(user_id: int):
    """Like `backoffice users end-sessions E`: the user's API tokens are revoked too."""
    db = db_session()
    services.get_user(db, user_id)
    actor = _actor()
    ended, revoked = services.end_user_access(
        db, actor, user_id=user_id, reason="ended by an admin"
    )
    actor.audit(db, "session.end_all", target_type="user", target_id=user_id, count=ended)
    db.commit()
    return jsonify(ended=ended, revoked_tokens=revoked)


@bp.delete("/<int:user_id>/sessions/<int:session_id>")
@allow("admin", session_only=True)
def end_user_session(user_id: int, session_id: int):
    db = db_session()
    row = db.get(UserSession, session_id) if session_id < 2**63 else None
    if row is None or row.user_id != user_id or row.ended_at is not None:
        raise APIError(
            f"user {user_id} has no open session {session_id}", code="not_found", status=404
        )
    services.end_sessions(db, session_id=session_id, reason="ended by an admin")
    _actor().audit(db, "session.end", target_type="session", target_id=session_id)
    db.commit()
    return Response(status=204)


@bp.get("/<int:user_id>/tokens")
@allow("admin")
def user_tokens(user_id: int):
    db = db_session()
    services.get_user(db, user_id)
    return jsonify(tokens=[t.as_dict() for t in services.list_api_tokens(db, user_id)])


@bp.delete("/<int:user_id>/tokens/<int:token_id>")
@allow("admin", session_only=True)
def revoke_user_token(user_id: int, token_id: int):
    db = db_session()
    services.get_user(db, user_id)
    token = services.find_api_token(db, user_id, token_id)
    if token is None:
        raise APIError(f"user {user_id} has no API token {token_id}", code="not_found", status=404)
    services.revoke_api_token(db, _actor(), token)
    db.commit()
    return Response(status=204)


def _has_body() -> bool:
    return bool(request.content_length) or request.is_json
