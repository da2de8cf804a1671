"""The web backoffice: pages for staff, rendered on the server.

The pages are one more caller of the services, beside the JSON API and the CLI, with the same
sessions, roles and CSRF rule (`app/auth/access.py`). `pages.py` holds what they share; each
area has a module of views, and its templates under `templates/`.
"""

from __future__ import annotations

import json
from datetime import datetime

from flask import Flask, current_app


def register_web(app: Flask) -> None:
    from app.web import (  # noqa: F401  (their views)
        account,
        audit,
        auth,
        customers,
        dashboard,
        datasets,
        exports,
        imports,
        jobs,
        transforms,
        users,
    )
    from app.web.pages import (
        ENDED,
        bp,
        csrf_token_for_page,
        error_page,
        human_size,
        job_rate,
        security_headers,
    )

    app.register_blueprint(bp)
    app.after_request(security_headers)
    app.extensions["error_page"] = error_page
    # Flash messages ride in Flask's signed cookie; the session itself is our own cookie.
    settings = app.extensions["backoffice"].settings
    app.config.update(
        SESSION_COOKIE_NAME="backoffice_flash",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.cookie_secure,
    )
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["size"] = human_size
    app.jinja_env.filters["delimiter_name"] = delimiter_name
    app.jinja_env.filters["as_text"] = as_text
    app.jinja_env.globals["url_endpoints"] = _Endpoints()
    app.jinja_env.globals["csrf_token_for_page"] = csrf_token_for_page
    app.jinja_env.globals["job_rate"] = job_rate
    app.jinja_env.globals["ENDED"] = ENDED


def when(moment: datetime | None) -> str:
    """A timestamp as staff read it: UTC, to the minute."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def as_text(value: object) -> str:
    """JSON as plain text, which the template escapes like any text. (Jinja's `tojson` marks its
    output safe for a <script>, and leaves `"` as it is: inside an attribute, someone's text
    would close it and add attributes of its own.)"""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def delimiter_name(delimiter: str | None) -> str:
    names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
    return names.get(delimiter or "", "detected from the header")


class _Endpoints:
    """`'web.x' in url_endpoints`: whether a page exists, for links to optional pages."""

    def __contains__(self, endpoint: str) -> bool:
        return endpoint in current_app.view_functions
