"""The per-process session-validation cache, and the listener that keeps it honest.

A validated session (or API token) is trusted for `SESSION_CACHE_TTL` seconds, so an active
session costs the primary database at most one query per process per TTL. Every change that
must end sessions (password reset or change, disable, delete, role change, logout, an admin
ending a session) commits a `NOTIFY backoffice_auth` with the change; a listener thread in each
process evicts what the change touches. While the listener is not connected, the cache is
bypassed (every request asks the database); when it reconnects, the cache is emptied, since
notifications sent meanwhile were missed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
from cachetools import TTLCache

log = logging.getLogger(__name__)

CHANNEL = "backoffice_auth"
LISTENER_APP_NAME = "backoffice-listener"
FIRST_BACKOFF = 0.25  # seconds before the first reconnect; doubles up to 5 while it fails
PING_SECONDS = 30  # besides TCP keepalives; a dropped connection is seen at once anyway


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user, through a session or an API token."""

    user_id: int
    email: str
    display_name: str
    role: str
    must_change_password: bool
    expires_at: datetime | None
    session_id: int | None = None
    token_id: int | None = None

    # flask-login's user interface
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.user_id)

    @property
    def via(self) -> str:
        return "session" if self.session_id is not None else "token"

    def as_user_dict(self) -> dict:
        return {
            "id": self.user_id,
            "email": self.email,
            "display_name": self.display_name,
            "role": self.role,
            "must_change_password": self.must_change_password,
        }


class SessionCache:
    """Principals by token hash, trusted only while the listener is connected."""

    def __init__(self, ttl: int, maxsize: int = 10_000) -> None:
        self.ttl = ttl
        self._entries: TTLCache[str, Principal] = TTLCache(maxsize=maxsize, ttl=max(ttl, 1))
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every eviction: a lookup that raced one is not stored
        self.listener: AuthListener | None = None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    @property
    def trusted(self) -> bool:
        return self.enabled and self.listener is not None and self.listener.connected

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key: str) -> Principal | None:
        if not self.trusted:
            return None
        with self._lock:
            principal = self._entries.get(key)
            if principal is None:
                self.misses += 1
            else:
                self.hits += 1
            return principal

    def put(self, key: str, principal: Principal, generation: int) -> None:
        """Store what was read from the database, unless an eviction happened meanwhile."""
        if not self.trusted:
            return
        with self._lock:
            if generation == self._generation:
                self._entries[key] = principal

    def evict(self, kind: str, ident: int) -> None:
        attribute = {"user": "user_id", "session": "session_id", "token": "token_id"}.get(kind)
        with self._lock:
            self._generation += 1
            if attribute is None:
                self._entries.clear()
                return
            stale = [k for k, p in self._entries.items() if getattr(p, attribute) == ident]
            for key in stale:
                self._entries.pop(key, None)

    def clear(self) -> None:
        self.evict("all", 0)

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {
            "enabled": self.enabled,
            "trusted": self.trusted,
            "ttl_seconds": self.ttl,
            "size": len(self),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 3) if total else None,
            "listener": self.listener.state() if self.listener else "not started",
        }

    def ensure_listener(self, conninfo: str | None) -> None:
        """Start this process's listener (again after a fork: threads do not survive one)."""
        if not self.enabled or conninfo is None:
            return
        listener = self.listener
        if listener is not None and listener.pid == os.getpid() and listener.is_alive():
            return
        with self._lock:
            if self.listener is listener:
                self.listener = AuthListener(conninfo, self)
                self.listener.start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()


class AuthListener(threading.Thread):
    """LISTEN on a direct connection of its own; reconnects with backoff when it drops."""

    def __init__(self, conninfo: str, cache: SessionCache) -> None:
        super().__init__(name="auth-listener", daemon=True)
        self.conninfo = conninfo
        self.cache = cache
        self.pid = os.getpid()
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._stop_event = threading.Event()

    def state(self) -> str:
        if self.connected:
            return "listening"
        return f"reconnecting ({self.last_error})" if self.last_error else "connecting"

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stop_event.is_set():
            was_listening = False
            try:
                self._listen()
            except Exception as exc:  # any failure: distrust the cache, then reconnect
                was_listening, self.connected = self.connected, False
                self.last_error = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
                log.warning("auth listener disconnected: %s", self.last_error)
            finally:
                self.connected = False
            if was_listening:
                backoff = FIRST_BACKOFF  # a fresh outage, not one more failed attempt
            self._stop_event.wait(backoff)
            backoff = min(backoff * 2, 5.0)
            self.reconnects += 1

    def _listen(self) -> None:
        with psycopg.connect(
            self.conninfo,
            autocommit=True,
            application_name=LISTENER_APP_NAME,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.cache.clear()  # whatever was sent while we were away is lost
            self.connected = True
            self.last_error = None
            last_ping = time.monotonic()
            while not self._stop_event.is_set():
                for notice in conn.notifies(timeout=1.0):
                    self._apply(notice.payload)
                if conn.broken or conn.closed:
                    raise psycopg.OperationalError("listener connection lost")
                if time.monotonic() - last_ping > PING_SECONDS:
                    conn.execute("SELECT 1")  # notices a server that went away quietly
                    last_ping = time.monotonic()

    def _apply(self, payload: str) -> None:
        kind, _, ident = payload.partition(":")
        try:
            self.cache.evict(kind, int(ident or 0))
        except ValueError:
            self.cache.clear()
