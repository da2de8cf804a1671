"""How a dataset is declared: its fields, natural key and rules, and the table they make.

A dataset is one module in this package (see products.py) plus one data-engine revision that
creates `reference.<name>`. The transform casts and checks every staged row against the
declaration in SQL (app/transforms/sql.py); the table keeps one row per customer and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Numeric,
    Table,
    Text,
    func,
)

from app.db.base import DataBase

TYPES = {
    "text": Text,
    "numeric": Numeric,
    "boolean": Boolean,
    "date": Date,
    "timestamp": lambda: DateTime(timezone=True),
    "currency": Text,  # an ISO 4217 code, upper case
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # one of TYPES
    required: bool = False
    nonnegative: bool = False  # numeric >= 0

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"field {self.name}: unknown type {self.type!r}")


@dataclass(frozen=True)
class Rule:
    """A check across fields, in SQL over the cast values; true (or null) means the row is fine."""

    sql: str
    column: str  # the field an error is reported on
    reason: str


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    table: Table = field(init=False, repr=False, compare=False)
    history: Table = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"dataset {self.name}: key field(s) {missing} are not fields")
        object.__setattr__(self, "table", reference_table(self))
        object.__setattr__(self, "history", history_table(self))

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def column_use(self, mapping: dict[str, str | None]) -> dict[str, list[str]]:
        """Which columns a transform with `mapping` (field -> header, or None to clear)
        writes from a header, clears (NULL on the rows it updates), and leaves untouched (as
        stored on updated rows, NULL on inserted ones), in column order."""
        use: dict[str, list[str]] = {"written": [], "cleared": [], "untouched": []}
        for f in self.fields:
            if f.name not in mapping:
                use["untouched"].append(f.name)
            else:
                use["written" if mapping[f.name] is not None else "cleared"].append(f.name)
        return use

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "key": list(self.key),
            "columns": [
                {
                    "name": f.name,
                    "type": f.type,
                    "required": f.required,
                    **({"minimum": 0} if f.nonnegative else {}),
                }
                for f in self.fields
            ],
            "rules": [{"column": r.column, "rule": r.reason} for r in self.rules],
        }


def reference_table(dataset: Dataset) -> Table:
    """`reference.<name>`: the fields, typed, one row per customer and key (NULLs in the key
    are one value, as a file means them)."""
    columns = [Column("customer_id", BigInteger, nullable=False)]  # customer.customers.id
    for f in dataset.fields:
        columns.append(Column(f.name, TYPES[f.type](), nullable=not f.required))
    columns += [
        Column("source_import_id", BigInteger, nullable=False),  # the import it last came from
        Column("loaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # The transform whose version of the row this is (NULL: loaded before transforms kept
        # history). A revert puts back the earlier version with its own stamp.
        Column("source_transform_id", BigInteger),
    ]
    return Table(
        dataset.name,
        DataBase.metadata,
        *columns,
        Index(
            f"uq_{dataset.name}_customer_key",
            "customer_id",
            *dataset.key,
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        schema="reference",
    )


def history_table(dataset: Dataset) -> Table:
    """`reference.<name>_history`: the versions transforms replaced. One row per row a
    transform changed: `transform_id` changed it, `op` says how (`update`: it was
    overwritten, `delete`: removed by a revert, `insert`: put back by a revert, so it was
    absent before), and the other columns are the row as it was before (for `insert`, as it
    was put back). Rows a transform inserts are known by their stamp and cost nothing here.
    Written by the table's triggers (migrations_data d0008), kept `TRANSFORM_HISTORY_DAYS`."""
    columns = [
        Column("id", BigInteger, Identity(always=True), nullable=False),  # the order of changes
        Column("transform_id", BigInteger, nullable=False),  # workspace.transforms.id
        Column("op", Text, nullable=False),
        Column("customer_id", BigInteger, nullable=False),
    ]
    for f in dataset.fields:
        columns.append(Column(f.name, TYPES[f.type]()))
    columns += [
        Column("source_import_id", BigInteger),
        Column("loaded_at", DateTime(timezone=True)),
        Column("source_transform_id", BigInteger),
    ]
    return Table(
        f"{dataset.name}_history",
        DataBase.metadata,
        *columns,
        Index(f"ix_{dataset.name}_history_transform_id", "transform_id"),
        Index(f"ix_{dataset.name}_history_row", "customer_id", *dataset.key, "id"),
        schema="reference",
    )
