"""The transform's SQL, generated from a dataset's declaration: every row cast and checked in
the database, never in Python.

For each field, over the staged text (trimmed; empty is missing):
- a cast that gives NULL instead of failing when the value is malformed, so one statement
  handles millions of rows without stopping at the first bad one;
- a reason when the value breaks its field's rules (required, format, minimum), and one per
  cross-field rule, evaluated on the cast values.

The value rules (docs/DATASETS.md): numbers are digits with an optional sign and `.` as the
decimal mark (no thousands separators, no comma decimals, no exponents); booleans are
true/false, yes/no, 1/0, t/f in any case; dates are ISO `YYYY-MM-DD`; timestamps are ISO dates
with an optional time and offset (UTC when none); currencies are ISO 4217 codes, any case.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from app.datasets.base import Dataset, Field
from app.imports.lines import line_of
from app.transforms.currencies import ISO_4217

TIME_CHARACTERS = "0123456789:.+-TZ "  # what may follow an ISO date in a timestamp
BOOLEANS = ("true", "false", "yes", "no", "1", "0", "t", "f")
TRUE = ("true", "yes", "1", "t")
SQL_TYPES = {  # what each field type's cast gives
    "text": "text",
    "numeric": "numeric",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamptz",
    "currency": "text",
}

REASONS = {
    "numeric": "not a number (digits, an optional sign and '.' as the decimal mark; no "
    "thousands separators)",
    "boolean": "not a boolean (true/false, yes/no, 1/0, t/f)",
    "date": "not a date (YYYY-MM-DD)",
    "timestamp": "not a timestamp (YYYY-MM-DD, optionally THH:MM[:SS] and an offset)",
    "currency": "not an ISO 4217 currency code",
}


def _lit(value: str) -> sql.Composable:
    return sql.Literal(value)


def cast_of(f: Field, raw: sql.Composable) -> sql.Composable:
    """The typed value, or NULL when `raw` is missing or malformed."""
    if f.type == "text":
        return raw
    if f.type == "numeric":
        # Only digits, sign and '.' (a C-speed translate, cheaper than a regex), then the
        # server's own parser says whether they make a number ("1.2.3" and "+-1" do not).
        return sql.SQL(
            "CASE WHEN length({r}) <= 40 AND translate({r}, '0123456789.+-', '') = '' "
            "AND pg_input_is_valid({r}, 'numeric') THEN {r}::numeric END"
        ).format(r=raw)
    if f.type == "boolean":
        return sql.SQL("CASE WHEN lower({r}) IN ({all}) THEN lower({r}) IN ({yes}) END").format(
            r=raw,
            all=sql.SQL(", ").join(map(_lit, BOOLEANS)),
            yes=sql.SQL(", ").join(map(_lit, TRUE)),
        )
    if f.type in ("date", "timestamp"):
        # ISO only: digits and dashes in the date's places (LIKE and translate, much cheaper
        # than a regular expression), after it only what a time and an offset are made of;
        # then the server's own parser says whether it is a real date and time.
        if f.type == "date":
            shape, pg_type = sql.SQL("{r} LIKE '____-__-__'").format(r=raw), "date"
        else:
            shape, pg_type = (
                sql.SQL(
                    "left({r}, 10) LIKE '____-__-__' "
                    "AND translate(substr({r}, 11), {time}, '') = ''"
                ).format(r=raw, time=_lit(TIME_CHARACTERS)),
                "timestamptz",
            )
        return sql.SQL(
            "CASE WHEN {shape} AND translate(left({r}, 10), '0123456789', '') = '--' "
            "AND pg_input_is_valid({r}, {t}) THEN {r}::{cast} END"
        ).format(shape=shape, r=raw, t=_lit(pg_type), cast=sql.SQL(pg_type))
    if f.type == "currency":
        return sql.SQL("CASE WHEN upper({r}) = ANY({codes}) THEN upper({r}) END").format(
            r=raw, codes=sql.Literal(sorted(ISO_4217))
        )
    raise ValueError(f.type)


def reason_of(f: Field) -> sql.Composable:
    """Why the field's value is refused, or NULL; in the scope of the cast subquery."""
    raw, cast = sql.Identifier(f"raw_{f.name}"), sql.Identifier(f.name)
    whens = []
    if f.required:
        whens.append(sql.SQL("WHEN {r} IS NULL THEN 'required'").format(r=raw))
    if f.type != "text":
        whens.append(
            sql.SQL("WHEN {r} IS NOT NULL AND {c} IS NULL THEN {why}").format(
                r=raw, c=cast, why=_lit(REASONS[f.type])
            )
        )
    if f.nonnegative:
        whens.append(sql.SQL("WHEN {c} < 0 THEN 'must be at least 0'").format(c=cast))
    if not whens:
        return sql.SQL("NULL::text")
    return sql.SQL("CASE {} END").format(sql.SQL(" ").join(whens))


@dataclass(frozen=True)
class Plan:
    """The statements of one transform: the dataset, where its fields come from."""

    dataset: Dataset
    import_id: int  # its staged rows are workspace.import_<id>
    columns: dict[str, int]  # field -> staging column number (c<n>); unmapped fields absent
    typed: str  # workspace.<typed>: the cast rows of one attempt
    # Fields set to NULL on updated rows on purpose. A field neither in `columns` nor here is
    # NULL on inserted rows and keeps its stored value on updated ones.
    cleared: frozenset[str] = frozenset()
    # A preview's typed table: temporary, in the preview's own transaction, seen by no one else
    # and gone when that transaction is rolled back.
    temporary: bool = False

    @property
    def updates(self) -> list[str]:
        """The fields an update writes: the mapped and the cleared ones, less the key (equal
        on the rows it updates), in the dataset's order."""
        d = self.dataset
        return [
            f.name
            for f in d.fields
            if f.name not in d.key and (f.name in self.columns or f.name in self.cleared)
        ]

    @property
    def staging(self) -> str:
        return f"import_{self.import_id}"

    @property
    def _typed(self) -> sql.Composable:
        return sql.Identifier("pg_temp" if self.temporary else "workspace", self.typed)

    def checked(self, *, where: sql.Composable) -> sql.Composable:
        """Every staged row with its raw values, casts and reasons (one row per record)."""
        raws = [
            sql.SQL("nullif(btrim({}), '') AS {}").format(
                sql.Identifier(f"c{self.columns[f.name]}"), sql.Identifier(f"raw_{f.name}")
            )
            if f.name in self.columns
            else sql.SQL("NULL::text AS {}").format(sql.Identifier(f"raw_{f.name}"))
            for f in self.dataset.fields
        ]
        casts = [
            sql.SQL("{} AS {}").format(
                cast_of(f, sql.Identifier(f"raw_{f.name}")), sql.Identifier(f.name)
            )
            for f in self.dataset.fields
        ]
        # OFFSET 0 keeps PostgreSQL from flattening the subqueries: each value is trimmed and
        # cast once per row, not again at every place a reason or the upsert refers to it.
        return sql.SQL(
            "SELECT r.*, {casts} FROM (SELECT s.rec, {raws} FROM {staging} s "
            "WHERE {where} OFFSET 0) r OFFSET 0"
        ).format(
            casts=sql.SQL(", ").join(casts),
            raws=sql.SQL(", ").join(raws),
            staging=sql.Identifier("workspace", self.staging),
            where=where,
        )

    def problems(self) -> list[tuple[str, sql.Composable]]:
        """(field, reason expression) for every field check and every rule."""
        found = [(f.name, reason_of(f)) for f in self.dataset.fields]
        for rule in self.dataset.rules:
            found.append(
                (
                    rule.column,
                    sql.SQL("CASE WHEN NOT ({}) THEN {} END").format(
                        sql.SQL(rule.sql), _lit(rule.reason)
                    ),
                )
            )
        return found

    def typed_table(self) -> sql.Composable:
        """A preview's table of cast rows (`ok`: no reason to refuse the row)."""
        return sql.SQL("CREATE TEMPORARY TABLE {} AS {} WITH NO DATA").format(
            self._typed, self._typed_rows(sql.SQL("false"))
        )

    def partitioned_table(self, batch: int, total: int) -> list[sql.Composable]:
        """The attempt's table of cast rows, one partition per batch of `batch` records (rec
        ranges (k * batch, (k + 1) * batch]): each row is cast and checked once, then the
        batch's upsert reads its own partition, not the whole table, and the error pass reads
        the refused rows. Unlogged: a retry rebuilds it from the staged text, never recovers
        it."""
        columns = [
            sql.SQL("rec bigint"),
            *(
                sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(SQL_TYPES[f.type]))
                for f in self.dataset.fields
            ),
            sql.SQL("ok boolean"),
        ]
        statements = [
            sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE (rec)").format(
                self._typed, sql.SQL(", ").join(columns)
            )
        ]
        for k, low in enumerate(range(0, max(total, 1), batch)):
            statements.append(
                sql.SQL(
                    "CREATE UNLOGGED TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier("workspace", f"{self.typed}_p{k}"),
                    self._typed,
                    sql.Literal(low + 1),
                    sql.Literal(low + batch + 1),
                )
            )
        return statements

    def cast_batch(self) -> sql.Composable:
        """Cast and check the staged records of a rec range (%s, %s) into the typed table;
        returns how many of them are refused."""
        return sql.SQL(
            "WITH i AS (INSERT INTO {} {} RETURNING ok) SELECT count(*) FROM i WHERE NOT ok"
        ).format(self._typed, self._typed_rows(sql.SQL("s.rec > %s AND s.rec <= %s")))

    def _typed_rows(self, where: sql.Composable) -> sql.Composable:
        return sql.SQL("SELECT x.rec, {}, ({}) AS ok FROM ({}) x").format(
            self._fields("x"), self.valid(), self.checked(where=where)
        )

    def reject(self, transform_id: int, import_id: int) -> sql.Composable:
        """Write one error row per refused value of the refused records."""
        return sql.SQL(
            "INSERT INTO workspace.transform_errors "
            '(transform_id, import_id, line, "column", value, reason) '
            "SELECT {tid}, {iid}, r.line, r.col, r.val, r.why FROM ({refusals}) r"
        ).format(tid=_lit(transform_id), iid=_lit(import_id), refusals=self.refusals())

    def refusals(self, first: int | None = None) -> sql.Composable:
        """Line, column, value and reason of each refused value of the refused records (of
        the `first` ones only, when given), in line and column order. Checked again from their
        staged text, for the values and reasons: refused records are few."""
        values = sql.SQL(", ").join(
            sql.SQL("({}, {}, {}, {})").format(
                sql.Literal(n), _lit(name), sql.Identifier(f"raw_{name}"), reason
            )
            for n, (name, reason) in enumerate(self.problems())
        )
        refused = sql.SQL("SELECT rec FROM {} WHERE NOT ok").format(self._typed)
        if first is not None:
            refused = sql.SQL("{} ORDER BY rec LIMIT {}").format(refused, sql.Literal(first))
        return sql.SQL(
            "SELECT {line} AS line, p.col, p.val, p.why FROM ({checked}) x "
            "CROSS JOIN LATERAL (VALUES {values}) AS p(n, col, val, why) "
            "WHERE p.why IS NOT NULL ORDER BY x.rec, p.n"
        ).format(
            line=line_of(self.import_id, sql.SQL("x.rec")),
            checked=self.checked(where=sql.SQL("s.rec IN ({})").format(refused)),
            values=values,
        )

    def _fields(self, alias: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f.name))
            for f in self.dataset.fields
        )

    def valid(self) -> sql.Composable:
        """True when `problems()` finds nothing, as plain tests (cheaper than the reasons)."""
        tests = []
        for f in self.dataset.fields:
            raw, cast = sql.Identifier(f"raw_{f.name}"), sql.Identifier(f.name)
            if f.required:
                tests.append(sql.SQL("{} IS NOT NULL").format(raw))
            if f.type != "text":
                tests.append(sql.SQL("({} IS NULL OR {} IS NOT NULL)").format(raw, cast))
            if f.nonnegative:
                tests.append(sql.SQL("({} < 0) IS NOT TRUE").format(cast))
        for rule in self.dataset.rules:
            tests.append(sql.SQL("({}) IS NOT FALSE").format(sql.SQL(rule.sql)))
        return sql.SQL(" AND ").join(tests) if tests else sql.SQL("true")

    def valid_rows(self, *, deduplicate: bool, batch: bool = False) -> sql.Composable:
        """The valid typed rows (of the rec range (%s, %s) only, with `batch`); with
        `deduplicate`, of rows sharing a key only the last in the file."""
        key = [sql.SQL("x.{}").format(sql.Identifier(k)) for k in self.dataset.key]
        return sql.SQL(
            "SELECT {distinct} x.rec, {xfields} FROM {typed} x WHERE x.ok {batch} {order}"
        ).format(
            batch=sql.SQL("AND x.rec > %s AND x.rec <= %s" if batch else ""),
            distinct=sql.SQL("DISTINCT ON ({})").format(sql.SQL(", ").join(key))
            if deduplicate
            else sql.SQL(""),
            xfields=self._fields("x"),
            typed=self._typed,
            order=sql.SQL("ORDER BY {}, x.rec DESC").format(sql.SQL(", ").join(key))
            if deduplicate
            else sql.SQL(""),
        )

    def changed(self, stored: sql.Composable, incoming: sql.Composable) -> sql.Composable:
        """Whether a stored row differs from the incoming one in the fields an update writes:
        only such rows are written. A partial file's unmapped fields do not count."""
        names = self.updates
        if not names:  # nothing but the key: a stored row never changes
            return sql.SQL("false")
        return sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(stored, sql.Identifier(n)) for n in names),
            sql.SQL(", ").join(sql.SQL("{}.{}").format(incoming, sql.Identifier(n)) for n in names),
        )

    def upsert(
        self,
        customer_id: int,
        import_id: int,
        transform_id: int,
        *,
        deduplicate: bool,
        batch: bool = False,
    ) -> sql.Composable:
        """Insert or update the valid rows (of the rec range (%s, %s) only, with `batch`),
        stamped with the transform; its row count: inserted + updated (rows equal to the
        stored ones are not written). An update sets the mapped and the cleared fields only;
        the others keep their stored values. With `deduplicate`, of rows sharing a key only
        the last in the file is kept. The rows it updates keep their earlier version in the
        history, through the table's trigger (`keep_history`)."""
        d = self.dataset
        names = [f.name for f in d.fields]
        fields = sql.SQL(", ").join(map(sql.Identifier, names))
        key = sql.SQL(", ").join(map(sql.Identifier, d.key))
        if self.updates:
            on_conflict = sql.SQL(
                "DO UPDATE SET {sets}, source_import_id = EXCLUDED.source_import_id, "
                "source_transform_id = EXCLUDED.source_transform_id, loaded_at = now() "
                "WHERE {changed}"
            ).format(
                sets=sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in self.updates
                ),
                changed=self.changed(sql.SQL("t"), sql.SQL("EXCLUDED")),
            )
        else:  # nothing but the key: a stored row is left as it is
            on_conflict = sql.SQL("DO NOTHING")
        return sql.SQL(
            "INSERT INTO {table} AS t (customer_id, {fields}, source_import_id, "
            "source_transform_id) SELECT {cid}, {fields}, {iid}, {tid} FROM ({source}) src "
            "ON CONFLICT (customer_id, {key}) {on_conflict}"
        ).format(
            table=sql.Identifier("reference", d.name),
            fields=fields,
            cid=_lit(customer_id),
            iid=_lit(import_id),
            tid=_lit(transform_id),
            source=self.valid_rows(deduplicate=deduplicate, batch=batch),
            key=key,
            on_conflict=on_conflict,
        )

    def write_counts(self) -> sql.Composable:
        """Rows this transaction has inserted into the dataset's table so far (the server's
        own count, statement by statement; rolled-back statements included)."""
        return sql.SQL("SELECT pg_stat_get_xact_tuples_inserted(CAST({} AS regclass))").format(
            sql.Literal(f"reference.{self.dataset.name}")
        )

    def distinct_valid(self) -> sql.Composable:
        """How many distinct keys the valid rows have (for duplicates in one file)."""
        return sql.SQL(
            "SELECT count(*) FROM (SELECT DISTINCT {key} FROM {typed} x WHERE x.ok) k"
        ).format(
            key=sql.SQL(", ").join(
                sql.SQL("x.{}").format(sql.Identifier(k)) for k in self.dataset.key
            ),
            typed=self._typed,
        )
