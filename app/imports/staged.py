"""Whether an import's staged rows can be read: staged, and not lost to a crash.

Staging tables are unlogged (app/imports/job.py): PostgreSQL empties them when it recovers from
a crash, and a standby promoted after a failover has them empty too. Whoever reads staged rows
(a transform, its preview, the rows page) asks first, and a person is told to import again
instead of getting a transform of nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from app.errors import Refused

if TYPE_CHECKING:
    from app.db.session import BackofficeSession
    from app.models.data.workspace import ImportBatch


def lost_in_a_crash(cursor, import_id: int, rows_staged: int | None) -> bool:
    """Whether a staged import's rows are gone: staging tables are unlogged, and PostgreSQL
    empties those when it recovers from a crash (a standby promoted after a failover has
    them empty too). One row read at the most."""
    if not rows_staged:
        return False
    query = sql.SQL("SELECT EXISTS (SELECT FROM {})").format(
        sql.Identifier("workspace", f"import_{import_id}")
    )
    return not cursor.execute(query).fetchone()[0]


LOST = (
    "the staged rows of import {id} were lost: the data server restarted after a crash, and "
    "staged rows are not kept through one; import the file again"
)


def require_staged(session: BackofficeSession, batch: ImportBatch) -> None:
    """Refuses an import whose rows are not (or no longer) staged."""
    if batch.status != "staged":
        raise Refused(
            f"import {batch.id} is {batch.status}, not staged", code="not_staged", status=409
        )
    cursor = session.connection_for("data").connection.dbapi_connection.cursor()
    if lost_in_a_crash(cursor, batch.id, batch.rows_staged):
        raise Refused(LOST.format(id=batch.id), code="staging_lost", status=409)
