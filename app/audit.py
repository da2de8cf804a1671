"""The append-only audit log: written in the same transaction as the change it records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.db.session import BackofficeSession
from app.models.primary.config import AuditEntry

if TYPE_CHECKING:
    from app.auth.session_cache import Principal


def record(
    session: BackofficeSession,
    action: str,
    *,
    actor_id: int | None = None,
    actor_email: str | None = None,
    target_type: str | None = None,
    target_id: Any = None,
    outcome: str = "ok",
    client_ip: str | None = None,
    **details: Any,
) -> None:
    session.add(
        AuditEntry(
            action=action,
            actor_id=actor_id,
            actor_email=actor_email,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            outcome=outcome,
            client_ip=client_ip,
            details=details,
        )
    )


def entries(
    session: BackofficeSession,
    *,
    limit: int = 100,
    before_id: int | None = None,
    action: str | None = None,
    actor_id: int | None = None,
) -> list[AuditEntry]:
    """Newest first; page with `before_id` (the last id of the previous page)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if actor_id is not None:
        query = query.where(AuditEntry.actor_id == actor_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the audit log: a signed-in user, or a shell command's
    operating-system user (no user id)."""

    user_id: int | None
    email: str | None
    client_ip: str | None = None

    @classmethod
    def of(cls, principal: Principal, client_ip: str | None) -> Actor:
        return cls(principal.user_id, principal.email, client_ip)

    def audit(self, session: BackofficeSession, action: str, **kwargs: Any) -> None:
        record(
            session,
            action,
            actor_id=self.user_id,
            actor_email=self.email,
            client_ip=self.client_ip,
            **kwargs,
        )
