"""Login throttling kept in the database, so it holds across processes and hosts.

A login attempt counts against three keys, each with its own limit, in a window of the
lockout's length:

- `account-client:<ip> <email>`: one account from one address. The guesser's own lane: it locks
  that address out of that account only, so the owner still signs in from anywhere else.
- `client:<ip>`: one address against any accounts (a guesser trying many accounts).
- `account:<email>`: one account from every address together. Each address adds at most its
  own limit before it is locked, so this lock needs failures from many addresses.

A key at its limit is locked until the lockout ends; a locked key answers 429 with
`Retry-After`, even to the right password.

Counting is atomic: `reserve` locks the attempt's rows (always in the same order, so attempts
cannot deadlock), refuses when one is locked or full, and else counts the attempt before its
password is checked. The row locks last until the request's transaction ends, so attempts that
share a key are checked one after another, and never more than a limit's worth get checked. A
failure keeps its count; a success gives it back and clears its (account, address) key.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import text

from app.config import Settings
from app.db.session import BackofficeSession

ACCOUNT_CLIENT = "account-client:"


def keys_for(settings: Settings, email: str, client_ip: str | None) -> dict[str, int]:
    """The keys a login attempt counts against, with each one's limit, in locking order."""
    email, client = email.lower(), client_ip or "unknown"
    keys = {
        # An address has no spaces: the first one ends it, whatever the email holds.
        f"{ACCOUNT_CLIENT}{client} {email}": settings.login_max_failures_per_account_and_client,
        f"client:{client}": settings.login_max_failures_per_client,
        f"account:{email}": settings.login_max_failures_per_account,
    }
    return dict(sorted(keys.items()))


def reserve(session: BackofficeSession, keys: dict[str, int], lockout: int) -> int | None:
    """Count one attempt against every key, or none: returns None when the attempt may go on,
    else the seconds until the longest lock among the keys ends."""
    conn = session.connection_for("primary")
    rows = conn.execute(
        text(
            """
            INSERT INTO config.login_throttle AS t (key, failures, window_started_at)
            SELECT k.key, 0, now() FROM unnest(CAST(:keys AS text[])) AS k(key) ORDER BY k.key
            ON CONFLICT (key) DO UPDATE SET
                failures = CASE WHEN t.window_started_at <= now() - make_interval(secs => :s)
                                     AND coalesce(t.locked_until <= now(), true)
                                THEN 0 ELSE t.failures END,
                window_started_at = CASE
                    WHEN t.window_started_at <= now() - make_interval(secs => :s)
                         AND coalesce(t.locked_until <= now(), true)
                    THEN now() ELSE t.window_started_at END,
                locked_until = CASE WHEN t.locked_until > now() THEN t.locked_until END
            RETURNING key, failures, locked_until, window_started_at, now() AS now
            """
        ),
        {"keys": list(keys), "s": lockout},
    ).all()
    waits = [
        _seconds_left(
            row.locked_until or row.window_started_at + timedelta(seconds=lockout), row.now
        )
        for row in rows
        if row.locked_until is not None or row.failures >= keys[row.key]
    ]
    if waits:
        _drop_idle(session, keys)
        return max(waits)
    conn.execute(
        text("UPDATE config.login_throttle SET failures = failures + 1 WHERE key = ANY(:keys)"),
        {"keys": list(keys)},
    )
    return None


def record_failure(session: BackofficeSession, keys: dict[str, int], lockout: int) -> None:
    """The reserved attempt failed: it stays counted, and the keys it filled are locked."""
    session.connection_for("primary").execute(
        text(
            """
            UPDATE config.login_throttle AS t
            SET locked_until = now() + make_interval(secs => :s)
            FROM unnest(CAST(:keys AS text[]), CAST(:limits AS int[])) AS k(key, lim)
            WHERE t.key = k.key AND t.failures >= k.lim
            """
        ),
        {"keys": list(keys), "limits": list(keys.values()), "s": lockout},
    )


def record_success(session: BackofficeSession, keys: dict[str, int]) -> None:
    """The reserved attempt succeeded: its (account, address) count starts again, and the
    others give the attempt back. They keep their failures: signing into one's own account
    must not reset an address's count of guesses at others."""
    conn = session.connection_for("primary")
    mine = [key for key in keys if key.startswith(ACCOUNT_CLIENT)]
    conn.execute(text("DELETE FROM config.login_throttle WHERE key = ANY(:keys)"), {"keys": mine})
    conn.execute(
        text(
            "UPDATE config.login_throttle SET failures = greatest(failures - 1, 0) "
            "WHERE key = ANY(:keys)"
        ),
        {"keys": [key for key in keys if key not in mine]},
    )
    _drop_idle(session, keys)


def _drop_idle(session: BackofficeSession, keys: dict[str, int]) -> None:
    # Rows that count nothing: a successful login leaves none behind.
    session.connection_for("primary").execute(
        text(
            "DELETE FROM config.login_throttle WHERE key = ANY(:keys) AND failures = 0 "
            "AND locked_until IS NULL"
        ),
        {"keys": list(keys)},
    )


def _seconds_left(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))
