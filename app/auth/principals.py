"""Who a credential stands for: one statement per request that the cache cannot answer.

Both lookups name their columns after `Principal`'s fields, so one mapping serves both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import TextClause, text

from app.auth.session_cache import Principal
from app.auth.tokens import token_hash
from app.config import Settings
from app.db.session import BackofficeSession
from app.models.primary.config import ROLES

# Checks the session and its user, and notes that it was seen, in one statement.
SESSION_LOOKUP = text(
    """
    UPDATE config.sessions s SET last_seen_at = now()
    FROM config.users u
    WHERE s.token_hash = :hash AND u.id = s.user_id AND u.is_active
      AND s.ended_at IS NULL AND s.expires_at > now()
      AND s.last_seen_at > now() - make_interval(secs => :idle)
    RETURNING s.id AS session_id, u.id AS user_id, u.email, u.display_name, u.role,
              u.must_change_password, s.expires_at
    """
)
# A token acts with the lower of its own role and its owner's present one. A user who must
# change their password is refused through a token as through a session.
TOKEN_LOOKUP = text(
    """
    SELECT t.id AS token_id, u.id AS user_id, u.email, u.display_name,
           CASE WHEN array_position(CAST(:roles AS text[]), t.role)
                   < array_position(CAST(:roles AS text[]), u.role)
                THEN t.role ELSE u.role END AS role,
           u.must_change_password, t.expires_at
    FROM config.api_tokens t JOIN config.users u ON u.id = t.user_id
    WHERE t.token_hash = :hash AND t.revoked_at IS NULL AND u.is_active
      AND (t.expires_at IS NULL OR t.expires_at > now())
    """
)


def principal_for_session(
    session: BackofficeSession, settings: Settings, token: str
) -> Principal | None:
    return _principal(
        session, SESSION_LOOKUP, {"hash": token_hash(token), "idle": settings.session_idle_timeout}
    )


def principal_for_api_token(session: BackofficeSession, raw: str) -> Principal | None:
    return _principal(session, TOKEN_LOOKUP, {"hash": token_hash(raw), "roles": list(ROLES)})


def _principal(
    session: BackofficeSession, lookup: TextClause, params: dict[str, Any]
) -> Principal | None:
    row = session.connection_for("primary").execute(lookup, params).one_or_none()
    return None if row is None else Principal(**row._mapping)
