"""Email addresses as the backoffice accepts them: a user's login, a customer's contact."""

from __future__ import annotations

import re
import unicodedata

from app.errors import Refused

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def normalize_email(raw: str) -> str:
    """NFKC-normalised and checked: no spaces, control or invisible characters."""
    email = unicodedata.normalize("NFKC", raw).strip()
    if len(email) > 254 or not EMAIL_PATTERN.match(email):
        raise Refused("email is not a valid address", code="invalid_email", status=422)
    if any(unicodedata.category(ch)[0] in "CZ" for ch in email):
        raise Refused(
            "email contains invisible or control characters", code="invalid_email", status=422
        )
    return email
