"""Email addresses as the backoffice accepts them: a user's login, a customer's contact."""

from __future__ import annotations

import re
import unicodedata

from app.errors import APIError

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def normalize_email(raw: object) -> str:
    """NFKC-normalised and checked: no spaces, control or invisible characters."""
    if not isinstance(raw, str):
        raise APIError("email must be a string", code="invalid_email", status=422)
    email = unicodedata.normalize("NFKC", raw).strip()
    if len(email) > 254 or not EMAIL_PATTERN.match(email):
        raise APIError("email is not a valid address", code="invalid_email", status=422)
    if any(unicodedata.category(ch)[0] in "CZ" for ch in email):
        raise APIError(
            "email contains invisible or control characters", code="invalid_email", status=422
        )
    return email
