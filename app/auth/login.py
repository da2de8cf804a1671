"""flask-login wired to our opaque tokens: who is calling, from the cache or one query."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, Request, g, request
from flask_login import LoginManager
from sqlalchemy.exc import OperationalError

from app.auth.principals import principal_for_api_token, principal_for_session
from app.auth.session_cache import Principal
from app.auth.tokens import SESSION_COOKIE, token_hash
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import DatabaseUnavailable, first_line

MAX_TOKEN_LENGTH = 200  # ours are 43 (+3) characters; longer is junk, not worth hashing

login_manager = LoginManager()
login_manager.session_protection = None  # our sessions live on the server, not in Flask's cookie


@login_manager.user_loader
def _no_cookie_sessions(_user_id: str) -> None:
    return None  # Flask's signed cookie never carries a login here


@login_manager.request_loader
def _load_from_request(req: Request) -> Principal | None:
    return load_principal(req)


def current_session_token() -> str | None:
    return g.get("session_token")


def load_principal(req: Request) -> Principal | None:
    """The caller, from `Authorization: Bearer` or the session cookie."""
    bo = current_backoffice()
    cache = bo.session_cache
    bo.notices.ensure_listening()

    header = req.headers.get("Authorization")
    if header is not None:
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw or len(raw) > MAX_TOKEN_LENGTH:
            return None
        key, load = f"t:{token_hash(raw)}", lambda db: principal_for_api_token(db, raw)
    else:
        raw = req.cookies.get(SESSION_COOKIE, "")
        if not raw or len(raw) > MAX_TOKEN_LENGTH:
            return None
        g.session_token = raw
        key = f"s:{token_hash(raw)}"

        def load(db):
            return principal_for_session(db, bo.settings, raw)

    principal = cache.get(key)
    if principal is not None and principal.expires_at and principal.expires_at <= _now():
        principal = None
    if principal is None:
        generation = cache.generation
        db = db_session()
        try:
            principal = load(db)
            db.commit()  # the session's last_seen_at
        except OperationalError as exc:
            db.rollback()
            raise DatabaseUnavailable(
                "primary" if bo.engines.split else "database",
                bo.engines.masked_url("primary"),
                first_line(exc),
            ) from None
        if principal is not None:
            cache.put(key, principal, generation)
    return principal


def _now() -> datetime:
    return datetime.now(UTC)


def client_ip() -> str | None:
    return request.remote_addr


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
