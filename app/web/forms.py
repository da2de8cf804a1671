"""WTForms for the pages, with the project's own CSRF token as their CSRF implementation.

The token is the one the API hands out (`app/auth/tokens.py`): derived from the session, so it
needs no storage and changes at every sign-in. `app/auth/access.py` checks it before any view
runs (from the `csrf_token` field of a form, or the header of a script); the form checks it once
more, so a view can never be reached with a form that lacks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app, request
from werkzeug.datastructures import CombinedMultiDict
from wtforms import Form, IntegerField
from wtforms.csrf.core import CSRF
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from app.auth.login import current_session_token
from app.auth.tokens import csrf_matches, csrf_token_for
from app.customers import service as customers
from app.db.session import BackofficeSession
from app.errors import Refused


class WholeNumberField(IntegerField):
    """A whole number typed in a form: ASCII digits only, as the address's numbers
    (`app/web/pages.py: whole_number`); `int` alone reads fullwidth digits, "1_000" and "+5"."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and valuelist[0] not in ("", None):
            raw = str(valuelist[0]).strip()
            digits = raw.removeprefix("-")  # a negative one is refused by its range, in words
            if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
                self.data = None
                raise ValueError(self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)


class SessionCSRF(CSRF):
    def generate_csrf_token(self, csrf_token_field) -> str:
        token = current_session_token()
        return csrf_token_for(current_app.secret_key, token) if token else ""

    def validate_csrf_token(self, form, field) -> None:
        token = current_session_token()
        if token is None or not csrf_matches(current_app.secret_key, token, field.data):
            raise ValidationError("This form has expired; reload the page and try again.")


class PageForm(Form):
    """A form bound to the request: its fields on POST, empty (or `obj`'s values) on GET."""

    class Meta:
        csrf = True
        csrf_class = SessionCSRF
        csrf_field_name = "csrf_token"

    # Which field a service's refusal belongs next to, by its error code. Otherwise a message
    # that starts with a field's name ("name is required") goes next to that field.
    refusal_fields: dict[str, str] = {}

    def __init__(self, obj: Any = None, **kwargs: Any) -> None:
        formdata = None
        if request.method == "POST":
            formdata = CombinedMultiDict([request.files, request.form])
        super().__init__(formdata=formdata, obj=obj, **kwargs)

    @property
    def submitted(self) -> bool:
        return request.method == "POST"

    def refused(self, exc: Refused) -> None:
        """Show a service's refusal next to the field it names, or above the form."""
        name = self.refusal_fields.get(exc.code) or exc.message.split(" ", 1)[0]
        field = self._fields.get(name)
        if field is not None and name != "csrf_token":
            field.errors = [*field.errors, sentence(exc.message)]
        else:
            self.form_errors.append(sentence(exc.message))


class PublicForm(PageForm):
    """A form shown before there is a session (sign-in): no session, so no CSRF token; the
    sign-in view checks the request's Origin instead."""

    class Meta:
        csrf = False


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def options(pairs: Iterable[tuple[str, str]]) -> list[SelectChoice]:
    """A select's choices from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


def active_customer_options(session: BackofficeSession) -> list[SelectChoice]:
    """The customers a new import or export may name: the active ones, by code."""
    active, _ = customers.list_customers(session, status="active", limit=1000)
    return options([("", "Choose…")] + [(str(c.id), f"{c.code} · {c.name}") for c in active])
