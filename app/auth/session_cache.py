"""The per-process session-validation cache.

A validated session (or API token) is trusted for `SESSION_CACHE_TTL` seconds, so an active
session costs the primary database at most one query per process per TTL. Changes that must end
sessions send a change notice (`app/db/notices.py`) that evicts what they touch, in every
process; while the listener is down the cache is bypassed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.db.notices import Notices, TrustedCache


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user, through a session or an API token."""

    user_id: int
    email: str
    display_name: str
    role: str
    must_change_password: bool
    expires_at: datetime | None
    session_id: int | None = None
    token_id: int | None = None

    # flask-login's user interface
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.user_id)

    @property
    def via(self) -> str:
        return "session" if self.session_id is not None else "token"

    def as_user_dict(self) -> dict:
        return {
            "id": self.user_id,
            "email": self.email,
            "display_name": self.display_name,
            "role": self.role,
            "must_change_password": self.must_change_password,
        }


_STALE_BY = {"user": "user_id", "session": "session_id", "token": "token_id"}


def _stale(principal: Principal, kind: str, ident: int) -> bool:
    attribute = _STALE_BY.get(kind)
    return attribute is not None and getattr(principal, attribute) == ident


def session_cache(notices: Notices, ttl: int) -> TrustedCache[Principal]:
    """Principals by token hash, evicted by user, session and token notices."""
    return TrustedCache(notices, ttl, _stale)
