"""Errors the application raises on purpose, and the JSON shape every HTTP error takes."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

if TYPE_CHECKING:  # Flask is imported where a response is made: the CLI needs none
    from flask import Flask

log = logging.getLogger(__name__)

QUERY_CANCELED = "57014"  # SQLSTATE of a statement cut by statement_timeout (or a cancel)
BUSY_RETRY_AFTER = 2  # seconds a caller refused for a full pool is asked to wait


class ConfigError(Exception):
    """A setting that cannot work. The message is one line a person can act on."""


class DatabaseUnavailable(Exception):
    """An engine could not be reached. Names the engine and its masked URL."""

    def __init__(self, engine: str, masked_url: str, reason: str) -> None:
        self.engine = engine
        self.masked_url = masked_url
        self.reason = reason
        super().__init__(f"the {engine} database ({masked_url}) is unreachable: {reason}")


class Refused(Exception):
    """What the services refuse, and why: a stable code, a one-line message and the HTTP status
    it maps to. The HTTP layer answers it as JSON or a page (`register_error_handlers`), the CLI
    prints it as one line (`app/cli/context.py`): each translates it once."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = {}

    def with_header(self, name: str, value: str) -> Refused:
        self.headers[name] = value
        return self


class NotFound(Refused):
    """No such record (or one the caller may not know of)."""

    status = 404
    code = "not_found"


def error_response(code: str, message: str, status: int):
    """JSON for API callers; a page for a browser, when the web pages registered one."""
    from flask import current_app, has_request_context, jsonify

    page = current_app.extensions.get("error_page") if has_request_context() else None
    if page is not None:
        answer = page(code, message, status)
        if answer is not None:
            return answer
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def first_line(exc: BaseException) -> str:
    """A driver error's first line, without SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def describe_database_error(exc: DBAPIError) -> str:
    """What the log may keep of a failed statement: the server's one-line message, its SQLSTATE,
    the statement and where it was sent from. Never the parameters (hidden by the engines as
    well) nor the server's DETAIL, which repeats a failing row or a duplicate key's values."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or "no SQLSTATE"
    where = "".join(traceback.format_tb(exc.__traceback__))
    return f"{first_line(exc)} [{sqlstate}]\nSQL: {exc.statement}\n{where}".rstrip()


def _the_database(role: str | None) -> str:
    return f"the {role} database" if role else "the database"


def register_error_handlers(
    app: Flask, count_refusal: Callable[[str, str | None], None] | None = None
) -> None:
    """`count_refusal(kind, engine_role)`: told of each "busy" and "statement_timeout" answer,
    with the engine's role (None: the one database of single mode), for /metrics."""
    from werkzeug.exceptions import HTTPException

    def count(kind: str, role: str | None) -> None:
        if count_refusal is not None:
            count_refusal(kind, role)

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        response = error_response(exc.code, exc.message, exc.status)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(code, exc.description or exc.name, exc.code or 500)

    @app.errorhandler(DatabaseUnavailable)
    def database_unavailable(exc: DatabaseUnavailable):
        # One database (single mode) is "the database"; in split mode the engine is named.
        code = (
            "database_unavailable"
            if exc.engine == "database"
            else (f"{exc.engine}_engine_unavailable")
        )
        return error_response(code, str(exc), 503)

    @app.errorhandler(PoolTimeout)
    def pool_full(exc: PoolTimeout):
        # Every pooled connection stayed in use for DB_POOL_TIMEOUT: the server is fine, this
        # process has more requests than connections. Tagged by app/db/engines.py.
        role = getattr(exc, "engine_role", None)
        log.warning("%s pool full: %s", role or "database", first_line(exc))
        count("busy", role)
        response = error_response(
            f"{role}_engine_busy" if role else "database_busy",
            f"every connection to {_the_database(role)} is in use; try again shortly",
            503,
        )
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
        return response

    @app.errorhandler(OperationalError)
    def operational_error(exc: OperationalError):
        # A connection that failed or was cut: the caller may retry, nothing was written. In
        # split mode the answer names the engine (app/db/engines.py tags the exception), so
        # that data routes say `data_engine_unavailable` while auth keeps working.
        role = getattr(exc, "engine_role", None)
        if getattr(exc.orig, "sqlstate", None) == QUERY_CANCELED:
            # A web request's statement ran past PRIMARY_/DATA_STATEMENT_TIMEOUT (requests
            # never cancel their own statements; jobs, which do, are not answered here).
            log.warning("%s statement cancelled: %s", role or "database", first_line(exc))
            count("statement_timeout", role)
            return error_response(
                f"{role or 'database'}_statement_timeout",
                f"a statement on {_the_database(role)} took too long and was cancelled",
                503,
            )
        log.warning("%s database unavailable: %s", role or "the", first_line(exc))
        if role is None:
            return error_response("database_unavailable", "the database is unavailable", 503)
        return error_response(
            f"{role}_engine_unavailable",
            f"the {role} database is unavailable; try again later",
            503,
        )

    @app.errorhandler(DBAPIError)
    def database_error(exc: DBAPIError):
        log.error("database error: %s", describe_database_error(exc))
        return error_response("internal_error", "an internal error occurred", 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response("internal_error", "an internal error occurred", 500)
