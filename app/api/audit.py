"""/api/audit: the audit log, newest first, for admins."""

from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import Field

from app import audit
from app.api.boundary import Limit, Offset, Query, takes
from app.auth.access import allow
from app.db.session import db_session

bp = Blueprint("audit", __name__, url_prefix="/api/audit")


class AuditList(Query):
    before_id: Offset | None = Field(default=None, description="the previous page's next_before_id")
    actor_id: Offset | None = None
    action: str | None = Field(default=None, description="e.g. auth.login, customer.update")
    limit: Limit = 100


@bp.get("")
@allow("admin")
@takes(query=AuditList)
def list_entries(query: AuditList):
    rows = audit.entries(
        db_session(),
        limit=query.limit,
        before_id=query.before_id or None,
        action=query.action,
        actor_id=query.actor_id or None,
    )
    next_before = rows[-1].id if rows else None
    return jsonify(entries=[r.as_dict() for r in rows], next_before_id=next_before)
