"""The API's input, declared once: pydantic models of JSON bodies, forms and query strings.

A view says what it takes with `@takes(body=..., query=..., form=...)`; the view is then called
with the validated models as `body=` / `query=` / `form=` (and `files=`), so services receive
`int`, `str` and `bool`, never whatever a caller sent. The same declarations give the OpenAPI
document (app/api/openapi.py).

Refusals keep the API's one error shape (`{"error": {"code", "message"}}`):
415 `unsupported_media_type` (not JSON), 400 `invalid_json` (not an object),
422 `invalid_field` / `missing_field` (a body's field), 400 `invalid_query` (a query parameter).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

from flask import request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import FileStorage

from app.auth.access import limit_upload
from app.errors import Refused

View = TypeVar("View", bound=Callable)


def _ascii_digits(value: Any) -> Any:
    """A number given as text (a query or form field) is ASCII digits and nothing else:
    Python's int() also reads fullwidth digits, " 12", "1_000" and "+5"."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise PydanticCustomError("int_parsing", "must be a whole number")
    return value


# Field types the models share.
Text = Annotated[str, StringConstraints(min_length=1)]  # "" counts as missing
WholeNumber = Annotated[int, BeforeValidator(_ascii_digits)]
Limit = Annotated[WholeNumber, Field(ge=1, le=1000)]
Offset = Annotated[WholeNumber, Field(ge=0, le=2**63 - 1)]


class Body(BaseModel):
    """A JSON object: no field it does not declare, no type coerced ("1" is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # A field whose wrong value has a code of its own (scripts know `invalid_role`).
    refusal_codes: ClassVar[dict[str, str]] = {}

    def given(self) -> dict[str, Any]:
        """The fields the caller sent (a PATCH changes only those)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class Query(BaseModel):
    """Query parameters: strings read as their declared type; unknown ones are ignored (a
    cache-buster must not break a script), an empty one counts as absent."""

    model_config = ConfigDict(extra="ignore", frozen=True)


B = TypeVar("B", bound=Body)
Q = TypeVar("Q", bound=Query)
F = TypeVar("F", bound="Form")


class Form(BaseModel):
    """A multipart form's text fields (read as their declared type) and, in `files`, the
    names of its file fields, all required. Other fields are ignored (a page's csrf_token)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    refusal_codes: ClassVar[dict[str, str]] = {}
    files: ClassVar[tuple[str, ...]] = ()


class Page(Query):
    offset: Offset = 0
    limit: Limit = 100


def takes(
    *,
    body: type[Body] | None = None,
    query: type[Query] | None = None,
    form: type[Form] | None = None,
    body_optional: bool = False,
) -> Callable[[View], View]:
    """Validate the request against the models before the view runs (after `@allow`'s check,
    which runs before any view: a caller who may not use the route learns nothing of its
    input). `body_optional`: an empty request means the model's defaults. A `form` is read
    within the upload limit, and the view gets its files as `files=`."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if body is not None:
                kwargs["body"] = read_body(body, optional=body_optional)
            if form is not None:
                kwargs["form"], kwargs["files"] = read_form(form)
            if query is not None:
                kwargs["query"] = read_query(query)
            return view(*args, **kwargs)

        checked.takes = {  # type: ignore[attr-defined]  # read by app/api/openapi.py
            "body": body,
            "query": query,
            "form": form,
            "body_optional": body_optional,
        }
        return checked  # type: ignore[return-value]

    return wrap


def read_body(model: type[B], *, optional: bool = False) -> B:
    if optional and not request.content_length and not request.is_json:
        return model()
    if not request.is_json:
        raise Refused(
            "send a JSON object with Content-Type: application/json",
            code="unsupported_media_type",
            status=415,
        )
    document = request.get_json(silent=True)
    if not isinstance(document, dict):
        raise Refused("the body is not a JSON object", code="invalid_json", status=400)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise body_refusal(exc, model.refusal_codes) from None


def read_form(model: type[F]) -> tuple[F, dict[str, FileStorage]]:
    limit_upload()
    files = {}
    for name in model.files:
        upload = request.files.get(name)
        if upload is None:
            raise Refused(
                f"send the file as the multipart field `{name}`", code="missing_field", status=422
            )
        files[name] = upload
    given = {name: value for name, value in request.form.items() if value != ""}
    try:
        return model.model_validate(given), files
    except ValidationError as exc:
        raise body_refusal(exc, model.refusal_codes) from None


def read_query(model: type[Q]) -> Q:
    given = {name: value for name, value in request.args.items() if value != ""}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Refused(
            f"{_field(first)} {_reason(first)}", code="invalid_query", status=400
        ) from None


def body_refusal(exc: ValidationError, codes: dict[str, str]) -> Refused:
    """One refusal for a body: unknown fields first, then missing ones, then the first field
    with a wrong value, named with the reason."""
    errors = exc.errors()
    unknown = sorted(_field(e) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return Refused(f"unknown field(s): {', '.join(unknown)}", code="invalid_field", status=422)
    missing = sorted(_field(e) for e in errors if e["type"] == "missing" or _blank(e))
    if missing:
        return Refused(f"missing field(s): {', '.join(missing)}", code="missing_field", status=422)
    first = errors[0]
    code = codes.get(str(first["loc"][0]) if first["loc"] else "", "invalid_field")
    return Refused(f"{_field(first)} {_reason(first)}", code=code, status=422)


def _blank(error: Any) -> bool:
    """A field that must hold a value, sent as null or "": missing, as the caller meant."""
    value = error["input"]
    return len(error["loc"]) == 1 and (value is None or (isinstance(value, str) and value == ""))


def _field(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "the body"


WHOLE = ("int_type", "int_parsing", "int_from_float")


def _reason(error: Any) -> str:
    """What is wrong, in the words the API has always used."""
    kind, context = error["type"], error.get("ctx") or {}
    if kind in WHOLE:
        return "must be a whole number"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind == "string_type":
        return "must be a string"
    if kind == "dict_type":
        return "must be an object"
    if kind == "literal_error":
        return f"must be one of {context.get('expected', '')}".replace("'", "")
    if kind == "greater_than_equal":
        return f"must be at least {context.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {context.get('le')}"
    if kind == "string_too_long":
        return f"must have at most {context.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must have at least {context.get('min_length')} characters"
    return error["msg"][0].lower() + error["msg"][1:]
