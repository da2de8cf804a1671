"""Who may use which route: deny by default.

Every view declares its rule with `@allow(...)`; a request to a view without one is refused
(and `tests/test_access.py` walks the URL map so none ships). Rules: `PUBLIC`, or the lowest
role that may use the route (`viewer` < `operator` < `admin`). `session_only=True` marks what
an API token may not do (make or revoke tokens, end sessions, create users, reset passwords): a
stolen or limited token must not be able to outlast its revocation or climb to its owner's full
role. The role is checked before the CSRF token, whose form field would have the body read.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, request
from flask_login import current_user

from app.audit import Actor
from app.auth import counters
from app.auth.login import current_session_token
from app.auth.roles import RANK
from app.auth.tokens import csrf_matches
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import Refused

PUBLIC = "public"
METRICS = "metrics"  # an admin, or `Authorization: Bearer <METRICS_TOKEN>` (a scraper)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
UPLOAD_SLACK = 16 * 1024  # a form's other fields and the multipart boundaries

View = TypeVar("View", bound=Callable)


def allow(
    rule: str,
    *,
    while_password_change_required: bool = False,
    session_only: bool = False,
    upload: bool = False,
) -> Callable[[View], View]:
    """Declare who may use a view: PUBLIC, "viewer", "operator" or "admin"; `session_only`:
    through a logged-in session, not an API token; `upload`: a form that carries a file, read
    up to MAX_UPLOAD_BYTES instead of the JSON limit."""
    if rule not in (PUBLIC, METRICS) and rule not in RANK:
        raise ValueError(f"unknown access rule {rule!r}")

    def mark(view: View) -> View:
        view.access_rule = rule  # type: ignore[attr-defined]
        view.allowed_during_password_change = while_password_change_required  # type: ignore
        view.session_only = session_only  # type: ignore[attr-defined]
        view.accepts_upload = upload  # type: ignore[attr-defined]
        return view

    return mark


def access_rule(view: Callable | None) -> str | None:
    return getattr(view, "access_rule", None)


def _offered_csrf(view: Callable | None) -> str | None:
    """The CSRF token a request carries: a script's header, or a page form's hidden field."""
    offered = request.headers.get("X-CSRF-Token")
    if offered is None and request.mimetype in FORM_TYPES:
        if getattr(view, "accepts_upload", False):
            limit_upload()
        offered = request.form.get("csrf_token")
    return offered


def limit_upload() -> None:
    """A form that carries a file is read up to MAX_UPLOAD_BYTES: refused from its headers
    alone when they announce more (nothing of the body is read), cut off with a 413 when it
    grows past the limit."""
    limit = current_backoffice().settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + UPLOAD_SLACK:
        raise Refused(
            f"the upload is larger than the limit of {limit} bytes",
            code="upload_too_large",
            status=413,
        )
    request.max_content_length = limit + UPLOAD_SLACK


def enforce() -> None:
    """before_request: authenticate, check CSRF and the role, or refuse."""
    if request.endpoint is None:
        return  # 404 or 405: nothing to protect
    view = current_app.view_functions.get(request.endpoint)
    rule = access_rule(view)
    if rule is None:
        current_app.logger.error("route %s declares no access rule: refused", request.endpoint)
        raise Refused("this route is not available", code="forbidden", status=403)
    if rule == PUBLIC:
        return
    if rule == METRICS:
        token = current_backoffice().settings.metrics_token
        offered = request.headers.get("Authorization", "")
        if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
            return
        rule = "admin"
    principal = current_user
    if not principal.is_authenticated:
        raise Refused("log in, or send an API token", code="unauthenticated", status=401)
    if principal.must_change_password and not getattr(view, "allowed_during_password_change", 0):
        raise Refused(
            "change your password first (POST /api/auth/password)",
            code="password_change_required",
            status=403,
        )
    # The role before the CSRF token: a page form's token is in its body, and reading it would
    # read a whole upload that the role refuses anyway (a viewer's 300 MiB, before its 403).
    if RANK[principal.role] < RANK[rule]:
        _refuse(principal, needed=rule)
        raise Refused(f"this needs the {rule} role", code="forbidden", status=403)
    if getattr(view, "session_only", False):
        require_session()
    if request.method in UNSAFE_METHODS and principal.via == "session":
        token = current_session_token()
        if token is None or not csrf_matches(current_app.secret_key, token, _offered_csrf(view)):
            raise Refused(
                "missing or wrong CSRF token (the X-CSRF-Token header, or a form's csrf_token)",
                code="csrf_failed",
                status=403,
            )


def require_session() -> None:
    """What an API token may not do (make or revoke tokens, end sessions, create users, change
    a role, re-enable a user, reset a password): refused and audited. A stolen admin token must
    not be able to make itself an admin that outlives its revocation."""
    if current_user.via != "session":
        counters.REFUSALS.labels(reason="session_required").inc()
        _refuse(current_user, needed="session")
        raise Refused(
            "this needs a signed-in session, not an API token: log in to do it",
            code="session_required",
            status=403,
        )


def require_role(rule: str) -> None:
    """Inside a view: what some of its uses need beyond the route's own rule (an operator may
    delete a customer; purging its data takes an admin). Refused and audited like a route."""
    if RANK[current_user.role] < RANK[rule]:
        _refuse(current_user, needed=rule)
        raise Refused(f"this needs the {rule} role", code="forbidden", status=403)


def _refuse(principal, *, needed: str) -> None:
    """Audit a refused authorization (committed: the refusal is raised right after)."""
    db = db_session()
    Actor.of(principal, request.remote_addr).audit(
        db,
        "access.refused",
        outcome="refused",
        target_type="route",
        target_id=request.endpoint,
        method=request.method,
        needed=needed,
        role=principal.role,
        via=principal.via,
    )
    db.commit()
