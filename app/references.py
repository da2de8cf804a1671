"""The cross-engine "foreign key": before a data-engine write names a customer or a user, check
it exists and is active, from a cache kept honest by change notices.

The data engine stores `customer_id` and `created_by` as plain ids; no database constraint can
reach the primary engine, which may be another server. An unknown id is a clear 422
(`unknown_customer`, `unknown_user`), an inactive one too (`inactive_customer`,
`inactive_user`), never a database error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from app.db.notices import Notices, TrustedCache
from app.db.session import BackofficeSession
from app.errors import Refused

LOOKUPS = {  # id, label, active, name; completed with the ids asked
    "customer": "SELECT id, code, status = 'active', name FROM customer.customers WHERE id ",
    "user": "SELECT id, email, is_active, display_name FROM config.users WHERE id ",
}
BIGINT = range(1, 2**63)


@dataclass(frozen=True)
class Reference:
    kind: str  # customer | user
    id: int
    exists: bool
    active: bool
    label: str | None = None  # the customer's code, the user's email
    name: str | None = None  # the customer's name, the user's display name

    def as_dict(self) -> dict[str, Any] | None:
        """What a list shows of the record a row points at; None when it is gone."""
        if not self.exists:
            return None
        if self.kind == "customer":
            return {"id": self.id, "code": self.label, "name": self.name}
        return {"id": self.id, "email": self.label, "name": self.name}


class ReferenceChecker:
    """Answers "exists and active" per process; a warm answer costs no query."""

    def __init__(self, notices: Notices, ttl: int) -> None:
        self.cache: TrustedCache[Reference] = TrustedCache(
            notices, ttl, lambda ref, kind, ident: ref.kind == kind and ref.id == ident
        )
        # Told the code of each refusal (`unknown_customer`, ...): the web app counts them.
        self.on_refusal: Callable[[str], None] | None = None

    def lookup(self, session: BackofficeSession, kind: str, ident: int) -> Reference:
        return self.lookup_many(session, kind, [ident])[ident]

    def lookup_many(
        self, session: BackofficeSession, kind: str, idents: Iterable[int | None]
    ) -> dict[int, Reference]:
        """The references of a page of rows, by id: the cached ones cost nothing, the others
        one query for all (never a join across engines: they may be two servers)."""
        self.cache.notices.ensure_listening()
        wanted = {i for i in idents if i is not None}
        found: dict[int, Reference] = {}
        for ident in wanted:
            cached = self.cache.get((kind, ident))
            if cached is not None:
                found[ident] = cached
        missing = [i for i in wanted if i not in found]
        if not missing:
            return found
        generation = self.cache.generation
        asked = [i for i in missing if i in BIGINT]
        rows = {}
        if asked:
            statement = text(LOOKUPS[kind] + "= ANY(:ids)")
            conn = session.connection_for("primary")
            rows = {row[0]: row for row in conn.execute(statement, {"ids": asked})}
        for ident in missing:
            row = rows.get(ident)
            reference = Reference(
                kind,
                ident,
                row is not None,
                bool(row and row[2]),
                row[1] if row else None,
                row[3] if row else None,
            )
            self.cache.put((kind, ident), reference, generation)
            found[ident] = reference
        return found

    def require(self, session: BackofficeSession, kind: str, ident: int) -> Reference:
        """The reference, or a 422 saying it is unknown or inactive."""
        reference = self.lookup(session, kind, ident)
        if not reference.exists:
            refusal = Refused(
                f"there is no {kind} with id {ident}", code=f"unknown_{kind}", status=422
            )
        elif not reference.active:
            refusal = Refused(
                f"{kind} {reference.label} ({ident}) is inactive",
                code=f"inactive_{kind}",
                status=422,
            )
        else:
            return reference
        if self.on_refusal is not None:
            self.on_refusal(refusal.code)
        raise refusal

    def customer(self, session: BackofficeSession, customer_id: int) -> Reference:
        return self.require(session, "customer", customer_id)

    def user(self, session: BackofficeSession, user_id: int) -> Reference:
        return self.require(session, "user", user_id)
