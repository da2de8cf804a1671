"""Retention: what only grows is deleted once it is past its time (`backoffice prune`, and the
workers' hourly run). The audit log is never pruned here (docs/OPS_RUNBOOK.md says how a
deployment archives it).

| kind               | engine  | deleted when                                                   |
|--------------------|---------|----------------------------------------------------------------|
| `sessions`         | primary | ended, or past its absolute expiry, `PRUNE_SESSIONS_DAYS` ago  |
| `api_tokens`       | primary | revoked, or expired, `PRUNE_SESSIONS_DAYS` ago                 |
| `login_throttle`   | primary | its window started, and any lock ended, `PRUNE_SESSIONS_DAYS` ago |
| `transform_errors` | data    | their transform finished `PRUNE_JOBS_DAYS` ago                 |
| `jobs`             | data    | ended (succeeded, failed, cancelled) `PRUNE_JOBS_DAYS` ago     |
| `export_files`     | data    | an API export's file, `PRUNE_EXPORT_FILES_DAYS` after it was made |
| `<dataset>_history`| data    | its transform finished `TRANSFORM_HISTORY_DAYS` ago            |

A job's import, transform or export keeps its outcome (status, error, counts, rows): the record's
`job_id` becomes NULL (its foreign key says `ON DELETE SET NULL`), and its pages show it without
the job. An export whose file is removed keeps its row, with no file name.

Each kind is deleted in batches, each batch a transaction of its own on the kind's engine (one
`DELETE ... WHERE key IN (SELECT ... LIMIT n)`), so a large backlog never holds its locks long.
The batch functions take a session and never commit; `prune` owns the transactions, like a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from app.audit import Actor
from app.datasets import DATASETS
from app.db.schemas import SCHEMA_ENGINE, EngineRole
from app.db.session import BackofficeSession, session_scope
from app.exports.service import export_dir, remove_files
from app.jobs.kinds import ENDED
from app.jobs.worker import Chore, worker_id

if TYPE_CHECKING:
    from app import Backoffice
    from app.config import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
AUDIT_ACTION = "retention.prune"
LOCK_KEY = "retention:prune"  # the advisory lock one worker at a time holds while it prunes


@dataclass(frozen=True)
class Rule:
    """Rows of one table that are past their time: `due` is a condition on the row `r`, with
    the cut-off as `:cutoff`."""

    kind: str
    table: str  # schema.table
    key: str
    due: str
    days: Callable[[Settings], int]

    @property
    def engine(self) -> EngineRole:
        return SCHEMA_ENGINE[self.table.split(".")[0]]


_ENDED = ", ".join(f"'{status}'" for status in ENDED)

RULES = (
    Rule(
        "sessions",
        "config.sessions",
        "id",
        "(r.ended_at < :cutoff OR r.expires_at < :cutoff)",
        lambda s: s.prune_sessions_days,
    ),
    Rule(
        "api_tokens",
        "config.api_tokens",
        "id",
        "(r.revoked_at < :cutoff OR r.expires_at < :cutoff)",
        lambda s: s.prune_sessions_days,
    ),
    Rule(
        "login_throttle",
        "config.login_throttle",
        "key",
        # greatest() skips a NULL lock: the window's start alone then decides.
        "greatest(r.window_started_at, r.locked_until) < :cutoff",
        lambda s: s.prune_sessions_days,
    ),
    Rule(
        "transform_errors",
        "workspace.transform_errors",
        "id",
        # Through import_id as well: the errors' index leads with it.
        "EXISTS (SELECT 1 FROM workspace.transforms t WHERE t.id = r.transform_id "
        "AND t.import_id = r.import_id AND t.finished_at < :cutoff)",
        lambda s: s.prune_jobs_days,
    ),
    Rule(
        "jobs",
        "workspace.jobs",
        "id",
        f"(r.status IN ({_ENDED}) AND coalesce(r.finished_at, r.created_at) < :cutoff)",
        lambda s: s.prune_jobs_days,
    ),
)
# What transforms replaced, per dataset: the history of a transform that finished that long ago.
RULES += tuple(
    Rule(
        f"{name}_history",
        f"reference.{name}_history",
        "id",
        # Through transform_id, which the history's index leads with. Kept while a revert of
        # the transform is within the window too: reverting that revert needs it.
        "r.transform_id IN (SELECT t.id FROM workspace.transforms t WHERE t.finished_at < :cutoff "
        "AND NOT EXISTS (SELECT 1 FROM workspace.transforms v WHERE v.reverts_id = t.id "
        "AND coalesce(v.finished_at, now()) >= :cutoff))",
        lambda s: s.transform_history_days,
    )
    for name in DATASETS
)
EXPORT_FILES = "export_files"
KINDS = (*(rule.kind for rule in RULES), EXPORT_FILES)

# An API export's file, finished before the cut-off and not yet removed.
_EXPORT_FILE_DUE = (
    "status = 'succeeded' AND file_name IS NOT NULL AND finished_at < "
    "now() - make_interval(days => :days)"
)


def _cutoff(rule: Rule, statement: str) -> str:
    return statement.replace(":cutoff", "(now() - make_interval(days => :days))")


def count_due(session: BackofficeSession, rule: Rule, days: int) -> int:
    """How many rows the rule would delete now."""
    statement = f"SELECT count(*) FROM {rule.table} AS r WHERE {rule.due}"
    conn = session.connection_for(rule.engine)
    return conn.execute(text(_cutoff(rule, statement)), {"days": days}).scalar_one()


def delete_batch(session: BackofficeSession, rule: Rule, days: int, limit: int) -> int:
    """Delete at most `limit` rows past their time; how many went. The condition is checked
    again on the row deleted, in case it changed since the inner select saw it."""
    statement = (
        f"DELETE FROM {rule.table} AS r WHERE r.{rule.key} IN "
        f"(SELECT r.{rule.key} FROM {rule.table} AS r WHERE {rule.due} LIMIT :limit) "
        f"AND {rule.due}"
    )
    conn = session.connection_for(rule.engine)
    return conn.execute(text(_cutoff(rule, statement)), {"days": days, "limit": limit}).rowcount


def count_export_files(session: BackofficeSession, days: int) -> int:
    conn = session.connection_for("data")
    return conn.execute(
        text(f"SELECT count(*) FROM workspace.exports WHERE {_EXPORT_FILE_DUE}"), {"days": days}
    ).scalar_one()


def remove_export_files(session: BackofficeSession, folder: Path, days: int, limit: int) -> int:
    """Remove at most `limit` export files past their time, and their rows' file names.

    The files go before the names are cleared (and committed): a crash in between leaves a row
    naming a missing file (its download answers 404), which the next prune clears; the other
    order would leave files that nothing names. A stored name leading outside EXPORT_DIR is a
    data-engine value we do not trust: its name is cleared, nothing is removed."""
    conn = session.connection_for("data")
    rows = conn.execute(
        text(
            f"SELECT id, file_name FROM workspace.exports WHERE {_EXPORT_FILE_DUE} "
            "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"days": days, "limit": limit},
    ).all()
    remove_files(conn, folder, rows)
    return len(rows)


def prune(
    bo: Backoffice,
    *,
    actor: Actor | None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> dict[str, int]:
    """Delete (or, with `dry_run`, count) what is past its time; the count per kind. Each batch
    commits on its own; then one audit row with the counts, unless `dry_run` or no `actor`."""
    settings, factory = bo.settings, bo.session_factory
    counts: dict[str, int] = {}
    for rule in RULES:
        days = rule.days(settings)
        if dry_run:
            with session_scope(factory) as session:
                counts[rule.kind] = count_due(session, rule, days)
            continue
        counts[rule.kind] = 0
        while True:
            with session_scope(factory) as session:
                deleted = delete_batch(session, rule, days, batch_size)
            counts[rule.kind] += deleted
            if deleted < batch_size:
                break
    counts[EXPORT_FILES] = _export_files(bo, dry_run=dry_run, batch_size=batch_size)
    if not dry_run and actor is not None:
        with session_scope(factory) as session:
            actor.audit(session, AUDIT_ACTION, deleted=counts, retention_days=retention(settings))
    return counts


def _export_files(bo: Backoffice, *, dry_run: bool, batch_size: int) -> int:
    days = bo.settings.prune_export_files_days
    with session_scope(bo.session_factory) as session:
        if dry_run:
            return count_export_files(session, days)
    folder = export_dir(bo.settings, bo.instance_path)
    total = 0
    while True:
        with session_scope(bo.session_factory) as session:
            removed = remove_export_files(session, folder, days, batch_size)
        total += removed
        if removed < batch_size:
            return total


def retention(settings: Settings) -> dict[str, int]:
    """The days each kind is kept, as the audit row records them."""
    return {
        "sessions": settings.prune_sessions_days,
        "jobs": settings.prune_jobs_days,
        "export_files": settings.prune_export_files_days,
        "transform_history": settings.transform_history_days,
    }


def pruned_within(session: BackofficeSession, seconds: int) -> bool:
    """Whether a prune was recorded in the last `seconds` (by a worker or a person)."""
    return (
        session.connection_for("primary")
        .execute(
            text(
                "SELECT 1 FROM config.audit_log WHERE action = :action "
                "AND at > now() - make_interval(secs => :seconds) LIMIT 1"
            ),
            {"action": AUDIT_ACTION, "seconds": seconds},
        )
        .first()
        is not None
    )


def prune_if_due(bo: Backoffice, actor: Actor) -> dict[str, int] | None:
    """The workers' run: prune when no prune was recorded within `PRUNE_INTERVAL_SECONDS`, under
    an advisory lock on the data engine, so that of workers on any number of hosts one prunes
    and the others skip; the counts, or None when skipped.

    A transaction-level lock (`pg_try_advisory_xact_lock`), held by a transaction that stays
    open while the batches run on other connections: a session-level lock would outlive its
    transaction on a PgBouncer server connection that another client then gets. The audit row is
    committed before the lock is let go, so the next holder sees it and skips."""
    interval = bo.settings.prune_interval_seconds
    if interval <= 0:
        return None
    with bo.engines.begin("data") as lock:
        taken = lock.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"), {"key": LOCK_KEY}
        ).scalar_one()
        if not taken:
            return None
        with session_scope(bo.session_factory) as session:
            if pruned_within(session, interval):
                return None
        return prune(bo, actor=actor)


def hourly_chore(bo: Backoffice) -> Chore:
    """The prune as a worker's chore: asked every minute (or every interval, if shorter),
    done when `prune_if_due` finds it due."""
    actor = Actor(None, f"worker:{worker_id()}")

    def run() -> None:
        counts = prune_if_due(bo, actor)
        if counts is not None:
            log.info("pruned: %s", ", ".join(f"{k} {n}" for k, n in counts.items()))

    return Chore("prune", min(60, bo.settings.prune_interval_seconds), run)
