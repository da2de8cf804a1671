"""Login throttling kept in the database, so it holds across processes and hosts.

Each key (`account:<email>`, `client:<ip>`) counts failures in a window of the lockout's
length; reaching the key's limit locks it until the lockout ends. A locked key answers 429 with
`Retry-After`, even to the right password.
"""

from __future__ import annotations

import math

from sqlalchemy import text

from app.config import Settings
from app.db.session import BackofficeSession


def keys_for(settings: Settings, email: str, client_ip: str | None) -> dict[str, int]:
    """The keys a login attempt counts against, with each one's failure limit."""
    keys = {f"account:{email.lower()}": settings.login_max_failures_per_account}
    if client_ip:
        keys[f"client:{client_ip}"] = settings.login_max_failures_per_client
    return keys


def retry_after(session: BackofficeSession, keys: dict[str, int]) -> int | None:
    """Seconds until the longest lock among `keys` ends, or None when none is locked."""
    seconds = (
        session.connection_for("primary")
        .execute(
            text(
                "SELECT max(extract(epoch FROM locked_until - now())) FROM config.login_throttle "
                "WHERE key = ANY(:keys) AND locked_until > now()"
            ),
            {"keys": list(keys)},
        )
        .scalar()
    )
    return math.ceil(seconds) if seconds else None


def record_failure(session: BackofficeSession, keys: dict[str, int], lockout: int) -> None:
    session.connection_for("primary").execute(
        text(
            """
            INSERT INTO config.login_throttle AS t (key, failures, window_started_at,
                                                   locked_until)
            SELECT k.key, 1, now(), CASE WHEN k.lim <= 1 THEN now() + make_interval(secs => :s)
                                         END
            FROM unnest(CAST(:keys AS text[]), CAST(:limits AS int[])) AS k(key, lim)
            ON CONFLICT (key) DO UPDATE SET
                failures = CASE WHEN t.window_started_at < now() - make_interval(secs => :s)
                                THEN 1 ELSE t.failures + 1 END,
                window_started_at = CASE
                    WHEN t.window_started_at < now() - make_interval(secs => :s)
                    THEN now() ELSE t.window_started_at END,
                locked_until = CASE
                    WHEN t.window_started_at >= now() - make_interval(secs => :s)
                         AND t.failures + 1 >= (SELECT lim FROM unnest(CAST(:keys AS text[]),
                                                CAST(:limits AS int[])) AS l(key, lim)
                                                WHERE l.key = t.key)
                    THEN now() + make_interval(secs => :s)
                    ELSE t.locked_until END
            """
        ),
        {"keys": list(keys), "limits": list(keys.values()), "s": lockout},
    )


def clear(session: BackofficeSession, key: str) -> None:
    session.connection_for("primary").execute(
        text("DELETE FROM config.login_throttle WHERE key = :key"), {"key": key}
    )
