"""Change notices on the primary database, and the per-process listener that receives them.

A change that makes cached facts stale (a session ended, a user disabled, a customer
deactivated) sends `NOTIFY backoffice_changes, '<kind>:<id>'` in the same transaction, so the
notice is delivered when, and only if, the change commits. Each process runs one listener thread
on a direct connection; the caches subscribed to it evict what a notice names. While the listener
is not connected, notices may be lost, so subscribed caches are not trusted; when it reconnects,
they are emptied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import psycopg
from cachetools import TTLCache
from sqlalchemy import text

if TYPE_CHECKING:
    from app.db.session import BackofficeSession

log = logging.getLogger(__name__)

CHANNEL = "backoffice_changes"
LISTENER_APP_NAME = "backoffice-listener"
FIRST_BACKOFF = 0.25  # seconds before the first reconnect; doubles up to 5 while it fails
V = TypeVar("V")
PING_SECONDS = 30  # besides TCP keepalives; a dropped connection is seen at once anyway


class Subscriber(Protocol):
    def evict(self, kind: str, ident: int) -> None: ...

    def clear(self) -> None: ...


def notify(session: BackofficeSession, kind: str, ident: int = 0) -> None:
    """Tell every process to forget what it cached of a user, a session, a token or a
    customer: queued on the session's primary connection, sent when (and if) it commits."""
    session.connection_for("primary").execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": f"{kind}:{ident}"},
    )


class Notices:
    """One per process: the listener, and the caches it keeps honest."""

    def __init__(self, conninfo: str | None) -> None:
        self.conninfo = conninfo  # None: no direct connection to listen on
        self.subscribers: list[Subscriber] = []
        self.listener: Listener | None = None
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    @property
    def connected(self) -> bool:
        listener = self.listener
        return listener is not None and listener.connected and listener.pid == os.getpid()

    def state(self) -> str:
        if self.conninfo is None:
            return "off (no direct connection: set AUTH_LISTEN_URL)"
        return self.listener.state() if self.listener else "not started"

    def ensure_listening(self) -> None:
        """Start this process's listener (again after a fork: threads do not survive one)."""
        listener = self.listener
        if self.conninfo is None or (
            listener is not None and listener.pid == os.getpid() and listener.is_alive()
        ):
            return
        with self._lock:
            if self.listener is listener:
                self.listener = Listener(self.conninfo, self)
                self.listener.start()

    def deliver(self, payload: str) -> None:
        kind, _, ident = payload.partition(":")
        try:
            number = int(ident or 0)
        except ValueError:
            kind, number = "all", 0
        for subscriber in self.subscribers:
            subscriber.evict(kind, number)

    def reset(self) -> None:
        for subscriber in self.subscribers:
            subscriber.clear()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()


class Listener(threading.Thread):
    """LISTEN on a direct connection of its own; reconnects with backoff when it drops."""

    def __init__(self, conninfo: str, notices: Notices) -> None:
        super().__init__(name="change-listener", daemon=True)
        self.conninfo = conninfo
        self.notices = notices
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
            except Exception as exc:  # any failure: distrust the caches, then reconnect
                was_listening, self.connected = self.connected, False
                self.last_error = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
                if not self._stop_event.is_set():
                    log.warning("change listener disconnected: %s", self.last_error)
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
            self.notices.reset()  # whatever was sent while we were away is lost
            self.connected = True
            self.last_error = None
            last_ping = time.monotonic()
            while not self._stop_event.is_set():
                for notice in conn.notifies(timeout=1.0):
                    self.notices.deliver(notice.payload)
                if conn.broken or conn.closed:
                    raise psycopg.OperationalError("listener connection lost")
                if time.monotonic() - last_ping > PING_SECONDS:
                    conn.execute("SELECT 1")  # notices a server that went away quietly
                    last_ping = time.monotonic()


class TrustedCache(Generic[V]):
    """A TTL cache that answers only while its process listens for change notices.

    `stale(value, kind, ident)` says whether a notice makes a cached value stale. A lookup that
    raced an eviction is not stored (a generation counter)."""

    def __init__(self, notices: Notices, ttl: int, stale, maxsize: int = 10_000) -> None:
        self.notices = notices
        self.ttl = ttl
        self.stale = stale
        self._entries: TTLCache = TTLCache(maxsize=maxsize, ttl=max(ttl, 1))
        self._lock = threading.Lock()
        self._generation = 0
        self.hits = 0
        self.misses = 0
        # Told of each trusted lookup, a hit (True) or a miss: the web app counts them for
        # /metrics across its workers (`hits` and `misses` are this process's).
        self.on_lookup: Callable[[bool], None] | None = None
        notices.subscribe(self)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    @property
    def trusted(self) -> bool:
        return self.enabled and self.notices.connected

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key) -> V | None:
        if not self.trusted:
            return None
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        if self.on_lookup is not None:
            self.on_lookup(value is not None)
        return value

    def put(self, key, value: V, generation: int) -> None:
        """Store what was read from the database, unless an eviction happened meanwhile."""
        if not self.trusted:
            return
        with self._lock:
            if generation == self._generation:
                self._entries[key] = value

    def evict(self, kind: str, ident: int) -> None:
        with self._lock:
            self._generation += 1
            if kind == "all":
                self._entries.clear()
                return
            for key in [k for k, v in self._entries.items() if self.stale(v, kind, ident)]:
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
            "listener": self.notices.state(),
        }
