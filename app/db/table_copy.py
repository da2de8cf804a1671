"""Copying tables between two databases, and proving the copy: binary COPY table by table,
then each side's row count and an order-free checksum compared. Used by the moves between
layouts (`move.py`); the caller holds both transactions and the locks.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Table, text

# What `row::text` prints must not depend on the session that prints it.
STABLE_OUTPUT = {
    "timezone": "UTC",
    "datestyle": "ISO, YMD",
    "intervalstyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}


@dataclass
class TableReport:
    table: str
    rows: int
    checksum: str


def stable_output(conn: Connection) -> None:
    """For the rest of the transaction, rows print the same on either side."""
    for name, value in STABLE_OUTPUT.items():
        conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})


def _columns(table: Table) -> str:
    return ", ".join(f'"{column.name}"' for column in table.columns if column.computed is None)


def copy_table(src: Connection, dst: Connection, table: Table) -> None:
    """The table's rows from one database into the same table of the other, in binary."""
    columns = _columns(table)
    read = f"COPY (SELECT {columns} FROM {table.fullname}) TO STDOUT (FORMAT binary)"
    write = f"COPY {table.fullname} ({columns}) FROM STDIN (FORMAT binary)"
    with (
        src.connection.driver_connection.cursor().copy(read) as out,
        dst.connection.driver_connection.cursor().copy(write) as into,
    ):
        for block in out:
            into.write(block)


def set_sequences(dst: Connection, table: Table) -> None:
    """The table's serial columns continue after the rows copied, not at 1."""
    for column in table.primary_key.columns:
        sequence = dst.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"),
            {"t": table.fullname, "c": column.name},
        ).scalar()
        if sequence:
            dst.execute(
                text(
                    f'SELECT setval(:s, coalesce(max("{column.name}"), 1), max("{column.name}") '
                    f"IS NOT NULL) FROM {table.fullname}"
                ),
                {"s": sequence},
            )


def fingerprint(conn: Connection, table: Table) -> TableReport:
    """Row count and an order-free checksum: the sum of the first 64 bits of each row's md5."""
    rows, total = conn.execute(
        text(
            f"SELECT count(*), coalesce(sum(('x' || left(md5(ROW({_columns(table)})::text), 16))"
            f"::bit(64)::bigint::numeric), 0) FROM {table.fullname}"
        )
    ).one()
    return TableReport(table.fullname, rows, format(int(total) & (2**64 - 1), "016x"))


def compare(
    src: Connection, dst: Connection, tables: list[Table]
) -> tuple[list[TableReport], list[str]]:
    """The target's report of each table, and a line for each that differs from the source."""
    reports, mismatched = [], []
    for table in tables:
        before, after = fingerprint(src, table), fingerprint(dst, table)
        if before != after:
            mismatched.append(
                f"{table.fullname}: source {before.rows} rows {before.checksum}, "
                f"target {after.rows} rows {after.checksum}"
            )
        reports.append(after)
    return reports, mismatched
