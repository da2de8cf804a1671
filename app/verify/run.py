"""The `verify` run: a deployment proven end to end, one timed step after another.

Each step names the engine it needs; the first that fails stops the run. What the run made
(a scratch user, a scratch customer with an import, a transform and an export) is removed at the
end, after a failure too: the customer and its data are kept with `keep=True`, for a person to
look at; the user never is (an account whose password nobody holds is of no use to anyone).
The audit log keeps its rows of the run, as it keeps every row.

The steps use the code real work uses: readiness's engine report (`app/health.py`), `notify`
and the listener's URL (`app/db/notices.py`), the API's sign-in through the app itself (a test
client of the Flask app: the same routes, login loader and session cache as a request), and the
services and jobs of imports, transforms and exports (`app/verify/bulk.py`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from app.auth import passwords, users
from app.customers import service as customers
from app.customers.purge import purge_customer_data
from app.db.notices import CHANNEL, notify
from app.db.schemas import DATA, PRIMARY, EngineRole
from app.db.session import session_scope
from app.errors import first_line
from app.health import engine_report
from app.verify.bulk import BulkChecks
from app.verify.steps import Scratch, StepFailed, StepResult

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from app.audit import Actor

# The cookie is Secure in production: the test client must speak https to get it back.
BASE_URL = "https://localhost"
SCRATCH_NAME = "backoffice verify (scratch)"


class Verification:
    """One run of the checks against the deployment the app is configured for."""

    def __init__(
        self,
        app: Flask,
        actor: Actor,
        *,
        keep: bool = False,
        worker_wait: float = 10.0,
        notice_wait: float = 5.0,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> None:
        self.app = app
        self.bo = app.extensions["backoffice"]
        self.actor = actor
        self.keep = keep
        self.notice_wait = notice_wait
        self.on_step = on_step or (lambda result: None)
        self.results: list[StepResult] = []
        self.scratch = Scratch()
        self.bulk = BulkChecks(self.bo, self.scratch, worker_wait=worker_wait)
        self._client: FlaskClient | None = None
        self._csrf = ""

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failure(self) -> StepResult | None:
        return next((result for result in self.results if not result.ok), None)

    def run(self) -> bool:
        """Every step until one fails, then the cleanup; True when all passed."""
        steps: list[tuple[str, EngineRole, Callable[[], str | None]]] = [
            ("primary reachable and migrated", PRIMARY, lambda: self.engine_ready(PRIMARY)),
            ("data reachable and migrated", DATA, lambda: self.engine_ready(DATA)),
            ("change notice reached a second connection", PRIMARY, self.notice_delivered),
            ("scratch user signed in through the API", PRIMARY, self.sign_in),
            ("session validated twice, the second from the cache", PRIMARY, self.cached_session),
            ("scratch customer created", PRIMARY, self.create_customer),
            ("import", DATA, self.bulk.import_file),
            ("transform", DATA, self.bulk.transform),
            ("export", DATA, self.bulk.export),
        ]
        try:
            for label, engine, check in steps:
                if not self.step(label, engine, check):
                    break
        finally:
            self.clean_up()
        return self.ok

    def step(self, label: str, engine: EngineRole, check: Callable[[], str | None]) -> bool:
        started = time.perf_counter()
        try:
            said = check()
        except Exception as exc:  # any failure is reported as this step's, on its engine
            message = str(exc) if isinstance(exc, StepFailed) else first_line(exc)
            result = StepResult(label, engine, False, time.perf_counter() - started, message)
        else:
            result = StepResult(said or label, engine, True, time.perf_counter() - started)
        self.results.append(result)
        self.on_step(result)
        return result.ok

    # -- the engines ------------------------------------------------------------------------

    def engine_ready(self, role: EngineRole) -> None:
        entry = engine_report(self.bo.engines, role)
        if not entry["reachable"]:
            raise StepFailed(f"unreachable at {entry['url']}: {entry['error']}")
        state = entry["migrations"]["state"]
        if state != "current":
            raise StepFailed(f"migrations {state}: run `backoffice db upgrade {role}`")

    # -- change notices, sign-in, the session cache -----------------------------------------

    def notice_delivered(self) -> str:
        """A notice sent as the app sends them (on commit of a primary transaction) reaches a
        LISTEN on the URL the listeners use: AUTH_LISTEN_URL, or the primary's when it is
        direct (PgBouncer's transaction mode cannot hold a LISTEN)."""
        target = self.bo.settings.listen_target
        if target is None:
            raise StepFailed(
                "no direct connection to LISTEN on (the primary URL has ?pgbouncer=true): set "
                "AUTH_LISTEN_URL, or sessions are checked on the database at every request"
            )
        ident = secrets.randbelow(2**31)
        expected = f"verify:{ident}"  # a kind no cache holds: the processes it reaches drop nothing
        with psycopg.connect(target.conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            started = time.monotonic()
            with session_scope(self.bo.session_factory) as session:
                notify(session, "verify", ident)
            while (left := started + self.notice_wait - time.monotonic()) > 0:
                for notice in conn.notifies(timeout=left):
                    if notice.payload == expected:
                        elapsed = (time.monotonic() - started) * 1000
                        return (
                            f"change notice reached a second connection in {elapsed:.0f} ms "
                            f"(LISTEN on {target.variable})"
                        )
        raise StepFailed(f"no notice within {self.notice_wait:g} s on {target.masked}")

    def sign_in(self) -> None:
        password = passwords.temporary_password()
        with session_scope(self.bo.session_factory) as session:
            user = users.create_user(
                session,
                self.actor,
                email=f"verify-{secrets.token_hex(6)}@verify.invalid",
                display_name=SCRATCH_NAME,
                role="viewer",
                password=password,
            )
            self.scratch.user_id, self.scratch.user_email = user.id, user.email
        self._client = self.app.test_client()
        reply = self._client.post(
            "/api/auth/login",
            json={"email": self.scratch.user_email, "password": password},
            base_url=BASE_URL,
        )
        if reply.status_code != 200:
            raise StepFailed(f"POST /api/auth/login answered {reply.status_code}: {_error(reply)}")
        self._csrf = reply.get_json()["csrf_token"]

    def cached_session(self) -> str:
        """`/api/auth/me` twice: the first is looked up on the primary, the second answered by
        this process's session cache; then logout ends the session, which its notice evicts."""
        assert self._client is not None
        cache, notices = self.bo.session_cache, self.bo.notices
        if cache.enabled:
            notices.ensure_listening()
            deadline = time.monotonic() + self.notice_wait
            while not notices.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            if not notices.connected:
                raise StepFailed(f"the session cache is not trusted: listener {notices.state()}")
        looked_up = []
        for _ in range(2):
            hits = cache.hits
            self._me(200)
            looked_up.append(cache.hits == hits)  # True: went to the database
        if cache.enabled and looked_up != [True, False]:
            raise StepFailed("the second validation was not answered by the session cache")
        logout = self._client.post(
            "/api/auth/logout", headers={"X-CSRF-Token": self._csrf}, base_url=BASE_URL
        )
        if logout.status_code not in (200, 204):
            raise StepFailed(f"POST /api/auth/logout answered {logout.status_code}")
        deadline = time.monotonic() + self.notice_wait
        while self._me() != 401:
            if time.monotonic() > deadline:
                raise StepFailed("the session still validates after logout")
            time.sleep(0.05)
        if not cache.enabled:
            return "session validated twice (SESSION_CACHE_TTL=0: no cache), ended by logout"
        return (
            f"session validated twice, the second from the {cache.ttl}-second cache; "
            "ended by logout"
        )

    def _me(self, expect: int | None = None) -> int:
        assert self._client is not None
        reply = self._client.get("/api/auth/me", base_url=BASE_URL)
        if expect is not None and reply.status_code != expect:
            raise StepFailed(f"GET /api/auth/me answered {reply.status_code}: {_error(reply)}")
        return reply.status_code

    # -- the scratch customer ---------------------------------------------------------------

    def create_customer(self) -> str:
        with session_scope(self.bo.session_factory) as session:
            customer = customers.create_customer(
                session,
                self.actor,
                code=f"VERIFY-{secrets.token_hex(4).upper()}",
                name=SCRATCH_NAME,
            )
            self.scratch.customer_id, self.scratch.customer_code = customer.id, customer.code
        return f"scratch customer {self.scratch.customer_code} created"

    # -- cleanup ----------------------------------------------------------------------------

    def clean_up(self) -> None:
        """Remove what the run made, each part on its own: one that fails does not keep the
        others from going."""
        scratch = self.scratch
        if scratch.customer_id is not None and not self.keep:
            data_gone = self.step(
                "scratch customer's imports, transforms and exports removed",
                DATA,
                self.remove_scratch_data,
            )
            if data_gone:
                self.step("scratch customer deleted", PRIMARY, self.delete_customer)
        if scratch.user_id is not None:
            self.step("scratch user deleted", PRIMARY, self.delete_user)

    def remove_scratch_data(self) -> None:
        assert self.scratch.customer_id is not None
        purge_customer_data(self.bo, self.actor, self.scratch.customer_id, wait_seconds=10)

    def delete_customer(self) -> None:
        assert self.scratch.customer_id is not None
        with session_scope(self.bo.session_factory) as session:
            customer = customers.get_customer(session, self.scratch.customer_id)
            customers.delete_customer(session, self.actor, customer)
        self.scratch.customer_id = None

    def delete_user(self) -> None:
        assert self.scratch.user_id is not None
        with session_scope(self.bo.session_factory) as session:
            users.delete_user(session, self.actor, users.get_user(session, self.scratch.user_id))
        self.scratch.user_id = None

    def left_behind(self) -> dict[str, Any]:
        """The scratch customer and what it holds, when they stay: kept for a person to look
        at, or left by a cleanup that failed."""
        scratch = self.scratch
        if scratch.customer_id is None:
            return {}
        return {"customer": scratch.customer_code, **scratch.made}

    def as_dict(self) -> dict[str, Any]:
        failure = self.failure
        return {
            "ok": self.ok,
            "steps": [result.as_dict() for result in self.results],
            "failed": None if failure is None else failure.as_dict(),
            "left_behind": self.left_behind(),
        }


def _error(reply) -> str:
    body = reply.get_json(silent=True) or {}
    return (body.get("error") or {}).get("message") or reply.status
