"""What every page shares: the blueprint, its static files, its headers, its error pages.

Pages are one more caller of the services, beside the JSON API and the CLI: views read a form,
call a service with the request's session, commit, flash the outcome and redirect (POST,
redirect, GET). Nothing here runs SQL of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from sqlalchemy.exc import OperationalError

from app.auth.access import PUBLIC, allow
from app.auth.login import current_session_token
from app.auth.tokens import csrf_token_for
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import DatabaseUnavailable, Refused
from app.jobs.kinds import ENDED
from app.models.data.workspace import Job
from app.web.forms import sentence

bp = Blueprint("web", __name__, template_folder="templates")
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"

# Every response: scripts and styles from this origin only (no inline script, no eval), no
# framing, no plugins, forms post back here. `connect-src 'self'` lets htmx poll its fragments.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
API_PREFIXES = ("/api/", "/health/", "/metrics")


def is_page_request() -> bool:
    """Whether the caller is a browser on a page (HTML answers) rather than a script (JSON)."""
    path = request.path
    return not (path == "/api" or path.startswith(API_PREFIXES))


def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if is_page_request() and not request.path.startswith("/static/"):
        # Pages show who is signed in and carry CSRF tokens, downloads carry customers' data:
        # never kept by a cache, the browser's own included.
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def sessions_only() -> None:
    """Pages are for people in a browser: an API token (a script's credential) gets none, so
    no page action can be driven without the session's CSRF token."""
    if current_user.is_authenticated and current_user.via != "session":
        raise Refused(
            "pages need a signed-in session; scripts use /api", code="session_required", status=403
        )


@bp.get("/static/<path:filename>")
@allow(PUBLIC)
def static(filename: str):
    return send_from_directory(STATIC, filename, max_age=3600)


@bp.app_context_processor
def page_context() -> dict:
    return {"principal": current_user if current_user.is_authenticated else None}


def csrf_token_for_page() -> str:
    token = current_session_token()
    return csrf_token_for(current_app.secret_key, token) if token else ""


def whole_number(name: str, *, maximum: int = 2**63 - 1) -> int | None:
    """A whole number from the address's `name` parameter: None when absent or empty; ASCII
    digits up to `maximum`, else a 400 page saying so. (`str.isdigit` accepts "²", which
    `int` then refuses: every number a page reads from its address is read here.)"""
    raw = request.args.get(name, "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= maximum):
        raise Refused(f"{name} must be a whole number", code="invalid_query", status=400)
    return int(raw)


def page_number() -> int:
    """The `page` query parameter: 1 when missing; 0 counts as the first page."""
    return max(whole_number("page", maximum=10**6) or 1, 1)


def while_data_engine_up(read: Callable[[], T]) -> T | None:
    """What `read` returns, or None when the data engine is down: a page about primary-engine
    things (a customer, a user) still shows, with its data-engine parts marked unavailable."""
    try:
        return read()
    except (OperationalError, DatabaseUnavailable):
        db_session().rollback()
        return None


def job_fragment(job: Job | None) -> Response:
    """A job's progress as htmx polls it (`_job.html`). Once the job has ended the page reloads
    whole (`HX-Refresh`), to show what the job made."""
    response = Response(render_template("_job.html", job=job, poll_url=request.path))
    if job is None or job.status in ENDED:
        response.headers["HX-Refresh"] = "true"
    return response


def job_rate(job: Job) -> float | None:
    """Units per second, over the time the job has run (to now, or to its end)."""
    if job.started_at is None or not job.progress_done:
        return None
    end = job.finished_at or datetime.now(UTC)
    seconds = (end - job.started_at).total_seconds()
    return job.progress_done / seconds if seconds > 0 else None


def secret_page(title: str, label: str, secret: str, advice: str, next_url: str) -> Response:
    """A secret shown once (a temporary password, an API token): rendered as the POST's answer,
    not redirected, so it is never stored in a flash cookie or a cache (`no-store`)."""
    response = Response(
        render_template(
            "secret.html", title=title, label=label, secret=secret, advice=advice, next_url=next_url
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def refused_back(exc: Refused, target: str) -> Response:
    """A button's action the service refused: say why on the page it came from."""
    flash(sentence(exc.message), "error")
    return redirect(target)


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in; anything else goes to the dashboard."""
    if not target:
        return url_for("web.dashboard")
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 32 for ch in target)
    ):
        return url_for("web.dashboard")
    return target


def error_page(code: str, message: str, status: int) -> Response | None:
    """The page for an error: sign in first, change the password first, or say what went
    wrong. None for API callers, who get the JSON error."""
    if not is_page_request():
        return None
    if status == 401:
        if request.headers.get("HX-Request"):
            # A fragment htmx polls: send the whole page, not the fragment, to sign in.
            page = urlsplit(request.headers.get("HX-Current-URL", "")).path or "/"
            answer = Response(status=204)
            answer.headers["HX-Redirect"] = url_for("web.login", next=safe_next(page))
            return answer
        return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
    if code == "password_change_required":
        return redirect(url_for("web.account"))
    if status == 503:
        engine = code.removesuffix("_engine_unavailable").removesuffix("_unavailable")
        message = (
            f"The {engine} is unavailable. Try again in a moment."
            if engine == "database"
            else f"The {engine} database is unavailable. Try again in a moment."
        )
    if status == 413:
        message = _too_large()
    if code == "csrf_failed":
        message = (
            "This form has expired, or was not sent from this site: go back, reload the page "
            "and send it again."
        )
    titles = {
        400: "Not understood",
        403: "Not allowed",
        404: "Not found",
        405: "Not allowed here",
        413: "Too large",
        429: "Too many attempts",
        503: "Unavailable",
    }
    body = render_template(
        "error.html",
        title=titles.get(status, "Something went wrong"),
        message=message,
        status=status,
        code=code,
    )
    return Response(body, status=status, mimetype="text/html")


def _too_large() -> str:
    """Which limit a 413 met: the upload's on a form that carries a file, else the form's."""
    view = current_app.view_functions.get(request.endpoint or "")
    if request.mimetype == "multipart/form-data" and getattr(view, "accepts_upload", False):
        limit = current_backoffice().settings.max_upload_bytes
        return f"The upload is larger than the limit of {human_size(limit)}."
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return f"The form is larger than the limit of {human_size(limit)}."


def human_size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:g} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)
