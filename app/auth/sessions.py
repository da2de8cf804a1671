"""Sessions: opened, listed, ended. Functions take a session and never commit.

Ending sessions sends a change notice through the same session, so every process forgets
them when, and only if, the change commits. Checking a password before a session opens is
sign-in's (`signin.py`); who a session stands for is `principals.py`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from app.audit import Actor
from app.auth.api_tokens import revoke_api_tokens
from app.auth.tokens import new_session_token, token_hash
from app.config import Settings
from app.db.notices import notify
from app.db.session import BackofficeSession
from app.models.primary.config import User, UserSession


def open_session(
    session: BackofficeSession,
    settings: Settings,
    user: User,
    *,
    client_ip: str | None,
    user_agent: str | None,
) -> tuple[UserSession, str]:
    """A new session for a user whose credentials were checked; returns the row and the raw
    token (the database keeps only its hash)."""
    token = new_session_token()
    row = UserSession(
        token_hash=token_hash(token),
        user_id=user.id,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.session_absolute_timeout),
        client_ip=client_ip,
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(row)
    return row, token


def list_sessions(session: BackofficeSession, user_id: int) -> list[UserSession]:
    return list(
        session.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.ended_at.is_(None),
                UserSession.expires_at > func.now(),
            )
            .order_by(UserSession.id)
        )
    )


def find_open_session(
    session: BackofficeSession, user_id: int, session_id: int
) -> UserSession | None:
    """The user's session with that id, if it has not ended; None for another user's."""
    row = session.get(UserSession, session_id) if 0 < session_id < 2**63 else None
    if row is None or row.user_id != user_id or row.ended_at is not None:
        return None
    return row


def end_sessions(
    session: BackofficeSession,
    *,
    reason: str,
    user_id: int | None = None,
    session_id: int | None = None,
    keep_session_id: int | None = None,
) -> list[int]:
    """End a user's sessions (or one session), in every process; returns the ids ended.
    Not audited: the caller records why (a logout, a password change, a disable)."""
    query = (
        update(UserSession)
        .where(UserSession.ended_at.is_(None))
        .values(ended_at=func.now(), ended_reason=reason)
        .returning(UserSession.id)
    )
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    if session_id is not None:
        query = query.where(UserSession.id == session_id)
    if keep_session_id is not None:
        query = query.where(UserSession.id != keep_session_id)
    ended = list(session.scalars(query, execution_options={"synchronize_session": False}))
    if user_id is not None:
        notify(session, "user", user_id)  # also drops a role or status cached for a kept one
    else:
        for ident in ended:
            notify(session, "session", ident)
    return ended


def end_session(session: BackofficeSession, actor: Actor, session_id: int, *, reason: str) -> None:
    """End one session, in every process, and audit it."""
    end_sessions(session, session_id=session_id, reason=reason)
    actor.audit(session, "session.end", target_type="session", target_id=session_id)


def end_user_sessions(
    session: BackofficeSession,
    actor: Actor,
    user_id: int,
    *,
    reason: str,
    keep_session_id: int | None = None,
    revoke_tokens: bool = False,
) -> tuple[int, int]:
    """End a user's sessions (but `keep_session_id`), in every process, and audit it. With
    `revoke_tokens` (an admin ending someone's access) their API tokens go too; a user ending
    their own other sessions keeps theirs. Returns how many sessions ended, tokens revoked."""
    if revoke_tokens:
        ended, revoked = end_user_access(
            session, actor, user_id=user_id, keep_session_id=keep_session_id, reason=reason
        )
    else:
        ended = len(
            end_sessions(session, user_id=user_id, keep_session_id=keep_session_id, reason=reason)
        )
        revoked = 0
    actor.audit(session, "session.end_all", target_type="user", target_id=user_id, count=ended)
    return ended, revoked


def end_user_access(
    session: BackofficeSession,
    actor: Actor,
    *,
    user_id: int,
    reason: str,
    keep_session_id: int | None = None,
) -> tuple[int, int]:
    """End a user's sessions (but `keep_session_id`) and revoke their API tokens, in every
    process; returns how many of each. The caller audits the change that called for it."""
    ended = end_sessions(session, user_id=user_id, keep_session_id=keep_session_id, reason=reason)
    return len(ended), revoke_api_tokens(session, actor, user_id=user_id, reason=reason)


def end_every_session(session: BackofficeSession, actor: Actor, *, reason: str) -> tuple[int, int]:
    """Everyone is logged out and every API token revoked, in every process (after a suspected
    leak, say); returns how many of each."""
    ended = session.execute(
        update(UserSession)
        .where(UserSession.ended_at.is_(None))
        .values(ended_at=func.now(), ended_reason=reason),
        execution_options={"synchronize_session": False},
    ).rowcount
    revoked = revoke_api_tokens(session, actor, user_id=None, reason=reason)
    notify(session, "all")
    actor.audit(session, "session.end_everyone", count=ended, tokens_revoked=revoked, reason=reason)
    return ended, revoked
