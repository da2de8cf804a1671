"""The two declarative bases, one per engine, each with its own MetaData.

A model's base decides which engine serves it; its schema must be one that base's engine owns
(`tests/test_schema_map.py` fails otherwise). No foreign key may cross the two bases: a
data-engine row refers to a primary-engine row by its plain id, checked in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from app.db.schemas import DATA, PRIMARY, SCHEMA_ENGINE, EngineRole

# Stable constraint names, so autogenerate and hand-written revisions agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class PrimaryBase(DeclarativeBase):
    """Tables of the `config` and `customer` schemas, served by the primary engine."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    engine_role: EngineRole = PRIMARY


class DataBase(DeclarativeBase):
    """Tables of the `workspace` and `reference` schemas, served by the data engine."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    engine_role: EngineRole = DATA


BASES: dict[EngineRole, type[DeclarativeBase]] = {PRIMARY: PrimaryBase, DATA: DataBase}
# Each base's tables once every model is imported: `app.models` hands them over when it has
# imported them all. This package never imports the models (they are built on it).
_complete: dict[EngineRole, MetaData] = {}


def models_loaded(metadatas: Mapping[EngineRole, MetaData]) -> None:
    """Called by `app.models` once every model is on its base."""
    _complete.update(metadatas)


def metadata_of(role: EngineRole) -> MetaData:
    """Every table of one engine, for the migrations' drift check and the moves between
    layouts. Before the models are loaded it refuses rather than answer with tables missing
    (a drift check would then call for dropping them)."""
    try:
        return _complete[role]
    except KeyError:
        raise RuntimeError(
            "the models are not loaded: import app.models before asking for an engine's tables"
        ) from None


def iso(value: datetime | None) -> str | None:
    """A timestamp as models show it in JSON."""
    return value.isoformat() if value else None


def layout_violations(metadatas: Mapping[EngineRole, MetaData]) -> list[str]:
    """Tables on the wrong base, and foreign keys that leave their engine. Empty when sound."""
    problems = []
    for role, metadata in metadatas.items():
        for table in metadata.tables.values():
            owner = SCHEMA_ENGINE.get(table.schema or "")
            if owner is None:
                problems.append(
                    f"{table.fullname}: schema {table.schema!r} is not in the schema-to-engine map"
                )
            elif owner != role:
                problems.append(
                    f"{table.fullname}: on the {role} base, but the {owner} engine owns "
                    f"schema {table.schema!r}"
                )
            for fk in table.foreign_keys:
                target = fk.target_fullname.rsplit(".", 1)[0]
                if target not in metadata.tables:
                    problems.append(
                        f"{table.fullname}.{fk.parent.name}: foreign key to {target}, which the "
                        f"{role} engine does not hold (store the plain id, checked in code)"
                    )
    return problems
