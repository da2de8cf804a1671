"""Input no route should see: NUL characters, JSON nested past the parser's depth.

Every request first passes `refuse_hostile_input`: PostgreSQL cannot store a NUL character,
so one in the URL or the body is refused with 400 before any route (or query) sees it. What
each route then takes is declared with its models (app/api/boundary.py).
"""

from __future__ import annotations

from typing import Any

from flask import Request, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.formparser import FormDataParser

from app.errors import Refused

NUL = "\x00"


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a document nested too deeply for the parser is malformed input."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            # The decoder recurses once per `[` or `{`: 100,000 of them would be a 500. Werkzeug
            # turns a ValueError into "not JSON", which the routes answer with invalid_json.
            raise ValueError("JSON nested too deeply") from None


class NulRefusingFormParser(FormDataParser):
    """Form fields and upload file names with a NUL are refused when the form is parsed: for
    multipart, that is when the route reads it, after it has set its own size limit."""

    def parse(self, stream, mimetype, content_length, options=None):  # type: ignore[no-untyped-def]
        stream, form, files = super().parse(stream, mimetype, content_length, options)
        for name, value in form.items(multi=True):
            _refuse_nul(f"the form field {name!r}", name, value)
        for name, upload in files.items(multi=True):
            _refuse_nul(f"the file field {name!r}", name, upload.filename or "")
        return stream, form, files


class BackofficeRequest(Request):
    form_data_parser_class = NulRefusingFormParser


def refuse_hostile_input() -> None:
    """before_request: a NUL in the path, the query string, a JSON body or a url-encoded form
    is a 400 `invalid_input`, not a database error. Multipart forms are checked as they are
    parsed (`NulRefusingFormParser`)."""
    _refuse_nul("the URL path", request.path)
    for name, value in request.args.items(multi=True):
        _refuse_nul(f"the query parameter {name!r}", name, value)
    if request.is_json:
        _refuse_nul_in_json(request.get_json(silent=True))
    elif request.mimetype == "application/x-www-form-urlencoded":
        request.form  # noqa: B018 - parsing runs NulRefusingFormParser's check


def _refuse_nul(where: str, *values: str) -> None:
    if any(NUL in value for value in values):
        raise Refused(f"{where} contains a NUL character", code="invalid_input", status=400)


def _refuse_nul_in_json(document: Any) -> None:
    """Walks the whole document, keys too, without recursion (it may be nested deeply)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            _refuse_nul("a string in the JSON body", value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _refuse_nul("a key in the JSON body", key)
                pending.append(item)
        elif isinstance(value, list):
            pending.extend(value)
