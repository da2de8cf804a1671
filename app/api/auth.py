"""/api/auth: log in and out, who am I, my sessions, my password, my API tokens."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from flask_login import current_user
from pydantic import Field

from app.api.boundary import Body, Text, takes
from app.audit import Actor
from app.auth import api_tokens, sessions, users
from app.auth.access import PUBLIC, allow
from app.auth.login import client_ip, current_session_token
from app.auth.roles import Role
from app.auth.signin import clear_session_cookie, set_session_cookie, sign_in, sign_out
from app.auth.tokens import csrf_token_for
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import NotFound, Refused

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.after_request
def no_store(response: Response) -> Response:
    """Answers here carry CSRF tokens, token secrets and account details: no cache (a browser's,
    a proxy's) may keep them."""
    response.headers["Cache-Control"] = "no-store"
    return response


class Credentials(Body):
    email: Text
    password: Text


class PasswordChange(Body):
    current_password: Text
    new_password: Text


class NewToken(Body):
    """A token's role is at most its owner's; without `expires_in_days` it never expires."""

    refusal_codes = {"role": "invalid_role"}
    name: Text
    role: Role | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    current_password: Text = Field(description="asked again: a session alone cannot mint one")


def _settings():
    return current_backoffice().settings


def _actor() -> Actor:
    return Actor.of(current_user, client_ip())


@bp.post("/login")
@allow(PUBLIC)
@takes(body=Credentials)
def login(body: Credentials):
    user, row, token = sign_in(
        db_session(),
        _settings(),
        request,
        email=body.email,
        password=body.password,
        client_ip=client_ip(),
    )
    response = jsonify(
        user=user.as_dict(), csrf_token=csrf_token_for(current_app.secret_key, token)
    )
    set_session_cookie(response, _settings(), token, row.expires_at)
    return response


@bp.post("/logout")
@allow("viewer", while_password_change_required=True)
def logout():
    if current_user.via != "session":
        raise Refused(
            "an API token has no session to end; revoke the token instead",
            code="not_a_session",
            status=400,
        )
    sign_out(db_session(), _actor(), current_user)
    response = Response(status=204)
    clear_session_cookie(response)
    return response


@bp.get("/me")
@allow("viewer", while_password_change_required=True)
def me():
    token = current_session_token()
    payload = {"user": current_user.as_user_dict(), "auth": current_user.via}
    if current_user.via == "session" and token:
        payload["csrf_token"] = csrf_token_for(current_app.secret_key, token)
    return jsonify(payload)


@bp.get("/sessions")
@allow("viewer")
def my_sessions():
    rows = sessions.list_sessions(db_session(), current_user.user_id)
    return jsonify(sessions=[row.as_dict(current_id=current_user.session_id) for row in rows])


@bp.delete("/sessions")
@allow("viewer", session_only=True)
def end_my_other_sessions():
    db = db_session()
    ended, _ = sessions.end_user_sessions(
        db,
        _actor(),
        current_user.user_id,
        keep_session_id=current_user.session_id,
        reason="ended by its user",
    )
    db.commit()
    return jsonify(ended=ended)


@bp.delete("/sessions/<int:session_id>")
@allow("viewer", session_only=True)
def end_my_session(session_id: int):
    db = db_session()
    if sessions.find_open_session(db, current_user.user_id, session_id) is None:
        raise NotFound(f"you have no open session {session_id}")
    sessions.end_session(db, _actor(), session_id, reason="ended by its user")
    db.commit()
    return Response(status=204)


@bp.post("/password")
@allow("viewer", while_password_change_required=True)
@takes(body=PasswordChange)
def change_password(body: PasswordChange):
    db = db_session()
    try:
        users.change_own_password(
            db,
            current_backoffice().settings,
            _actor(),
            current_user,
            body.current_password,
            body.new_password,
        )
    except Refused as exc:
        if exc.code in users.KEPT_REFUSALS:
            db.commit()  # the refusal is audited and counted
        raise
    db.commit()
    return jsonify(changed=True)


@bp.get("/tokens")
@allow("viewer")
def my_tokens():
    rows = api_tokens.list_api_tokens(db_session(), current_user.user_id)
    return jsonify(tokens=[token.as_dict() for token in rows])


@bp.post("/tokens")
@allow("viewer", session_only=True)
@takes(body=NewToken)
def create_token(body: NewToken):
    """The password is asked again: a borrowed browser session alone cannot mint a credential
    that outlives it."""
    db = db_session()
    try:
        token, raw = users.create_own_api_token(
            db,
            current_backoffice().settings,
            _actor(),
            current_user,
            password=body.current_password,
            name=body.name,
            role=body.role,
            expires_in_days=body.expires_in_days,
        )
    except Refused as exc:
        if exc.code in users.KEPT_REFUSALS:
            db.commit()  # the refusal is audited and counted
        raise
    db.commit()
    return jsonify(token=token.as_dict(), secret=raw), 201


@bp.delete("/tokens/<int:token_id>")
@allow("viewer", session_only=True)
def revoke_token(token_id: int):
    db = db_session()
    api_tokens.revoke_own_api_token(db, _actor(), current_user.user_id, token_id)
    db.commit()
    return Response(status=204)
