"""The append-only audit log: written in the same transaction as the change it records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.db.session import BackofficeSession
from app.models.primary.config import AuditEntry


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
