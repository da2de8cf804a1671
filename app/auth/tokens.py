"""Opaque tokens: sessions and API tokens carry 256 random bits; only a SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "backoffice_session"
API_TOKEN_PREFIX = "bo_"  # makes a leaked token recognisable to secret scanners


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps. A fast hash suffices: the token has 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_for(secret_key: str, session_token: str) -> str:
    """Derived from the session token, so it needs no storage and changes on every login."""
    return hmac.new(secret_key.encode(), b"csrf:" + session_token.encode(), "sha256").hexdigest()


def csrf_matches(secret_key: str, session_token: str, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(
        csrf_token_for(secret_key, session_token), offered or ""
    )
