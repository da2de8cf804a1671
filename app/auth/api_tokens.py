"""API tokens: made, listed, revoked. Functions take a session and never commit.

A revocation sends a change notice through the same session, so every process forgets the
token when, and only if, the revocation commits. The raw secrets are made in `tokens.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from app.audit import Actor
from app.auth.roles import RANK, check_role
from app.auth.session_cache import Principal
from app.auth.tokens import new_api_token, token_hash
from app.db.notices import notify
from app.db.session import BackofficeSession
from app.errors import NotFound, Refused
from app.models.primary.config import ApiToken, User


def create_api_token(
    session: BackofficeSession,
    actor: Actor,
    user: User,
    *,
    name: str,
    role: str | None = None,
    expires_in_days: int | None = None,
    caller: Principal | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `user`. Its role is at most the owner's and the calling credential's
    (`caller`; None for a shell command), and a token made by a token never outlives it:
    the routes accept only sessions, so this holds even if a route forgets to."""
    if not name.strip():
        raise Refused("name must not be blank", code="invalid_field", status=422)
    ceiling = user.role
    if caller is not None and RANK[caller.role] < RANK[ceiling]:
        ceiling = caller.role
    role = check_role(role if role is not None else ceiling)
    if RANK[role] > RANK[ceiling]:
        raise Refused(
            f"a token cannot have more rights than the credential that makes it ({ceiling})",
            code="invalid_role",
            status=422,
        )
    expires_at = _token_expiry(expires_in_days)
    limit = caller.expires_at if caller is not None and caller.via == "token" else None
    if limit is not None:
        if expires_at is not None and expires_at > limit:
            raise Refused(
                "a token cannot outlive the token that makes it",
                code="invalid_field",
                status=422,
            )
        expires_at = expires_at or limit
    raw = new_api_token()
    token = ApiToken(
        token_hash=token_hash(raw),
        user_id=user.id,
        name=name.strip()[:200],
        role=role,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    actor.audit(
        session,
        "token.create",
        target_type="api_token",
        target_id=token.id,
        owner_id=user.id,
        role=role,
    )
    return token, raw


def _token_expiry(expires_in_days: int | None) -> datetime | None:
    if expires_in_days is None:
        return None
    if not 1 <= expires_in_days <= 3650:
        raise Refused(
            "expires_in_days must be a whole number from 1 to 3650",
            code="invalid_field",
            status=422,
        )
    return datetime.now(UTC) + timedelta(days=expires_in_days)


def list_api_tokens(session: BackofficeSession, user_id: int) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    )


def find_api_token(session: BackofficeSession, user_id: int, token_id: int) -> ApiToken | None:
    """The user's token with that id; None for another user's (or no) token."""
    token = session.get(ApiToken, token_id) if 0 < token_id < 2**63 else None
    return token if token is not None and token.user_id == user_id else None


def revoke_own_api_token(
    session: BackofficeSession, actor: Actor, user_id: int, token_id: int
) -> ApiToken:
    """Revoke one of the user's tokens; a token of someone else is as unknown as none."""
    token = find_api_token(session, user_id, token_id)
    if token is None:
        raise NotFound(f"you have no API token {token_id}")
    revoke_api_token(session, actor, token)
    return token


def revoke_api_token(session: BackofficeSession, actor: Actor, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = func.now()
        notify(session, "token", token.id)
        actor.audit(
            session,
            "token.revoke",
            target_type="api_token",
            target_id=token.id,
            owner_id=token.user_id,
        )
        session.flush()


def revoke_api_tokens(
    session: BackofficeSession, actor: Actor, *, user_id: int | None, reason: str
) -> int:
    """Revoke a user's live tokens (everyone's: None), in every process; returns how many."""
    query = (
        update(ApiToken)
        .where(ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiToken.id)
    )
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    revoked = len(session.scalars(query, execution_options={"synchronize_session": False}).all())
    notify(session, "user" if user_id is not None else "all", user_id or 0)
    if revoked:
        actor.audit(
            session,
            "token.revoke_all",
            target_type="user" if user_id is not None else None,
            target_id=user_id,
            count=revoked,
            reason=reason,
        )
    return revoked
