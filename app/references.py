"""The cross-engine "foreign key": before a data-engine write names a customer or a user, check
it exists and is active, from a cache kept honest by change notices.

The data engine stores `customer_id` and `created_by` as plain ids; no database constraint can
reach the primary engine, which may be another server. An unknown id is a clear 422
(`unknown_customer`, `unknown_user`), an inactive one too (`inactive_customer`,
`inactive_user`), never a database error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from app.db.notices import Notices, TrustedCache
from app.db.session import BackofficeSession
from app.errors import Refused

LOOKUPS = {
    "customer": "SELECT code, status = 'active' FROM customer.customers WHERE id = :id",
    "user": "SELECT email, is_active FROM config.users WHERE id = :id",
}


@dataclass(frozen=True)
class Reference:
    kind: str  # customer | user
    id: int
    exists: bool
    active: bool
    label: str | None = None  # the customer's code, the user's email


class ReferenceChecker:
    """Answers "exists and active" per process; a warm answer costs no query."""

    def __init__(self, notices: Notices, ttl: int) -> None:
        self.cache: TrustedCache[Reference] = TrustedCache(
            notices, ttl, lambda ref, kind, ident: ref.kind == kind and ref.id == ident
        )
        # Told the code of each refusal (`unknown_customer`, ...): the web app counts them.
        self.on_refusal: Callable[[str], None] | None = None

    def lookup(self, session: BackofficeSession, kind: str, ident: int) -> Reference:
        self.cache.notices.ensure_listening()
        key = (kind, ident)
        reference = self.cache.get(key)
        if reference is None:
            generation = self.cache.generation
            row = None
            if 0 < ident < 2**63:
                row = (
                    session.connection_for("primary")
                    .execute(text(LOOKUPS[kind]), {"id": ident})
                    .one_or_none()
                )
            reference = Reference(
                kind, ident, row is not None, bool(row and row[1]), row[0] if row else None
            )
            self.cache.put(key, reference, generation)
        return reference

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
