"""Signing in and out through the session cookie: shared by the JSON API and the pages."""

from __future__ import annotations

from datetime import datetime

from flask import Request, Response

from app.auth import services
from app.auth.session_cache import Principal
from app.auth.tokens import SESSION_COOKIE, token_hash
from app.config import Settings
from app.db.session import BackofficeSession
from app.errors import APIError
from app.models.primary.config import User, UserSession


def sign_in(
    session: BackofficeSession,
    settings: Settings,
    request: Request,
    *,
    email: object,
    password: object,
    client_ip: str | None,
) -> tuple[User, UserSession, str]:
    """Check the credentials and open a session; commits, refusals included (the failure
    count and the audit row stay). A session the browser held before ends: nothing from
    before a sign-in survives it."""
    try:
        user, row, token = services.login(
            session,
            settings,
            email=email,
            password=password,
            client_ip=client_ip,
            user_agent=request.headers.get("User-Agent"),
        )
    except APIError:
        session.commit()
        raise
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        old = session.query(UserSession).filter_by(token_hash=token_hash(previous)).one_or_none()
        if old is not None and old.id != row.id:
            services.end_sessions(session, session_id=old.id, reason="replaced by a new login")
    session.commit()
    return user, row, token


def sign_out(session: BackofficeSession, actor: services.Actor, principal: Principal) -> None:
    """End the caller's session, everywhere at once, and record it; commits."""
    services.end_sessions(session, session_id=principal.session_id, reason="logout")
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
