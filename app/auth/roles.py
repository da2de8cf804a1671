"""The roles by rank, and the check of a role that comes from outside.

`ROLES` itself lives with the models (a check constraint names it); each role may do what the
ones before it may.
"""

from __future__ import annotations

from typing import Literal

from app.errors import Refused
from app.models.primary.config import ROLES

RANK = {role: rank for rank, role in enumerate(ROLES)}
Role = Literal[ROLES]  # type: ignore[valid-type]  # the same three names, for the API's models


def check_role(role: str | None) -> str:
    if role not in ROLES:
        raise Refused(f"role must be one of {', '.join(ROLES)}", code="invalid_role", status=422)
    return str(role)
