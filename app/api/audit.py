"""/api/audit: the audit log, newest first, for admins."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app import audit
from app.api.body import query_int
from app.auth.access import allow
from app.db.session import db_session

bp = Blueprint("audit", __name__, url_prefix="/api/audit")


@bp.get("")
@allow("admin")
def list_entries():
    before = query_int("before_id", 0, minimum=0)
    actor = query_int("actor_id", 0, minimum=0)
    rows = audit.entries(
        db_session(),
        limit=query_int("limit", 100, minimum=1, maximum=1000),
        before_id=before or None,
        action=request.args.get("action") or None,
        actor_id=actor or None,
    )
    next_before = rows[-1].id if rows else None
    return jsonify(entries=[r.as_dict() for r in rows], next_before_id=next_before)
