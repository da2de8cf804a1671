"""Signing in and out through the session cookie: shared by the JSON API and the pages.

`login` checks the credentials under the login throttle and opens a session; `sign_in` adds
what a browser needs (the session it held before ends) and commits.
"""

from __future__ import annotations

from datetime import datetime

from flask import Request, Response
from sqlalchemy import func

from app import audit
from app.audit import Actor
from app.auth import counters, passwords, throttle
from app.auth.session_cache import Principal
from app.auth.sessions import end_sessions, open_session
from app.auth.tokens import SESSION_COOKIE, token_hash
from app.auth.users import find_user_by_email
from app.config import Settings
from app.db.session import BackofficeSession
from app.email_address import normalize_email
from app.errors import Refused
from app.models.primary.config import User, UserSession


class LoginRefused(Refused):
    """Wrong email or password: the caller commits the failure count and the audit row."""

    status = 401
    code = "invalid_credentials"


def login(
    session: BackofficeSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    client_ip: str | None,
    user_agent: str | None,
) -> tuple[User, UserSession, str]:
    """Check the credentials and open a session; returns the user, the row and the raw token."""
    if not email or not password:
        raise Refused("email and password are required", code="missing_field", status=422)
    try:
        email = normalize_email(email)
    except Refused:
        email = email.strip()[:254]  # still counted and audited, never matches a user
    keys = throttle.keys_for(settings, email, client_ip)
    # Counted before the password is checked, so parallel attempts cannot all get checked.
    wait = throttle.reserve(session, keys, settings.login_lockout_seconds)
    if wait is not None:
        counters.THROTTLED.labels(check="sign_in").inc()
        audit.record(
            session, "auth.login", outcome="throttled", actor_email=email, client_ip=client_ip
        )
        raise Refused(
            "too many failed logins; try again later", code="too_many_attempts", status=429
        ).with_header("Retry-After", str(wait))

    user = find_user_by_email(session, email)
    valid = passwords.verify_password(user.password_hash if user else None, password)
    if not valid or user is None or not user.is_active:
        throttle.record_failure(session, keys, settings.login_lockout_seconds)
        counters.FAILURES.labels(check="sign_in").inc()
        reason = "inactive user" if valid and user is not None else "bad credentials"
        audit.record(
            session,
            "auth.login",
            outcome="failed",
            actor_email=email,
            actor_id=user.id if user else None,
            client_ip=client_ip,
            reason=reason,
        )
        raise LoginRefused("wrong email or password")

    throttle.record_success(session, keys)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = func.now()
    row, token = open_session(session, settings, user, client_ip=client_ip, user_agent=user_agent)
    audit.record(
        session, "auth.login", actor_id=user.id, actor_email=user.email, client_ip=client_ip
    )
    session.flush()
    return user, row, token


def sign_in(
    session: BackofficeSession,
    settings: Settings,
    request: Request,
    *,
    email: str,
    password: str,
    client_ip: str | None,
) -> tuple[User, UserSession, str]:
    """Check the credentials and open a session; commits, refusals included (the failure
    count and the audit row stay). A session the browser held before ends: nothing from
    before a sign-in survives it."""
    try:
        user, row, token = login(
            session,
            settings,
            email=email,
            password=password,
            client_ip=client_ip,
            user_agent=request.headers.get("User-Agent"),
        )
    except Refused:
        session.commit()
        raise
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        old = session.query(UserSession).filter_by(token_hash=token_hash(previous)).one_or_none()
        if old is not None and old.id != row.id:
            end_sessions(session, session_id=old.id, reason="replaced by a new login")
    session.commit()
    return user, row, token


def sign_out(session: BackofficeSession, actor: Actor, principal: Principal) -> None:
    """End the caller's session, everywhere at once, and record it; commits."""
    end_sessions(session, session_id=principal.session_id, reason="logout")
    actor.audit(session, "auth.logout", target_type="session", target_id=principal.session_id)
    session.commit()


def set_session_cookie(
    response: Response, settings: Settings, token: str, expires: datetime
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        expires=expires,
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
