"""Reading request input strictly: JSON objects with known fields, bounded query numbers."""

from __future__ import annotations

from typing import Any

from flask import request

from app.errors import APIError


def json_body(*, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """The request's JSON object. Refuses other content types, malformed JSON, unknown or
    missing fields, and strings PostgreSQL cannot store (NUL characters)."""
    if not request.is_json:
        raise APIError(
            "send a JSON object with Content-Type: application/json",
            code="unsupported_media_type",
            status=415,
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise APIError("the body is not a JSON object", code="invalid_json", status=400)
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise APIError(f"unknown field(s): {', '.join(unknown)}", code="invalid_field", status=422)
    missing = sorted(name for name in required if body.get(name) in (None, ""))
    if missing:
        raise APIError(f"missing field(s): {', '.join(missing)}", code="missing_field", status=422)
    for name, value in body.items():
        if isinstance(value, str) and "\x00" in value:
            raise APIError(f"{name} contains a NUL character", code="invalid_field", status=422)
    return body


def string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise APIError(f"{name} must be a string", code="invalid_field", status=422)
    return value


def query_int(name: str, default: int, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(f"{name} must be a whole number", code="invalid_query", status=400) from None
    if not minimum <= value <= maximum:
        raise APIError(
            f"{name} must be from {minimum} to {maximum}", code="invalid_query", status=400
        )
    return value
