"""The audit log, for admins: newest first, filtered by action and actor, paged by id."""

from __future__ import annotations

from flask import render_template, request

from app import audit
from app.auth import users
from app.auth.access import allow
from app.db.session import db_session
from app.web.pages import bp, whole_number

PAGE_SIZE = 50


@bp.get("/audit")
@allow("admin")
def audit_log():
    db = db_session()
    action = (request.args.get("action") or "").strip() or None
    actor_id = whole_number("actor")
    before_id = whole_number("before")
    entries = audit.entries(
        db, limit=PAGE_SIZE + 1, before_id=before_id, action=action, actor_id=actor_id
    )
    return render_template(
        "audit.html",
        title="Audit",
        entries=entries[:PAGE_SIZE],
        older=entries[PAGE_SIZE - 1].id if len(entries) > PAGE_SIZE else None,
        action=action or "",
        actor_id=actor_id,
        users=users.list_users(db),
        newest=before_id is None,
    )
