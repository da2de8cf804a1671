"""The schema-to-engine map: the one place that says which engine serves which schema.

Everything else reads it: the declarative bases, the two Alembic trees (which schemas each one
owns), health checks, test fixtures and the layout tools. Adding a schema is one line here.
"""

from __future__ import annotations

from typing import Literal

EngineRole = Literal["primary", "data"]

PRIMARY: EngineRole = "primary"
DATA: EngineRole = "data"
ENGINE_ROLES: tuple[EngineRole, ...] = (PRIMARY, DATA)

SCHEMA_ENGINE: dict[str, EngineRole] = {
    "config": PRIMARY,  # users, roles, sessions, API tokens, audit
    "customer": PRIMARY,  # customers
    "workspace": DATA,  # import staging, jobs
    "reference": DATA,  # curated datasets
}


def schemas_of(role: EngineRole) -> tuple[str, ...]:
    """The schemas an engine owns, in map order."""
    return tuple(schema for schema, owner in SCHEMA_ENGINE.items() if owner == role)


def engine_of(schema: str) -> EngineRole:
    try:
        return SCHEMA_ENGINE[schema]
    except KeyError:
        raise KeyError(f"schema {schema!r} is not in the schema-to-engine map") from None
