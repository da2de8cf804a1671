"""Password hashing with Argon2id at OWASP's recommended parameters, and the password policy.

OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1. A hash made with other
parameters verifies, and is replaced on the next successful login.
"""

from __future__ import annotations

import functools
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.auth import counters
from app.errors import Refused

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

MIN_LENGTH = 12
MAX_LENGTH = 256


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this costs what a real verification costs, so an unknown email
    answers as slowly as a wrong password. Made on first use, not at import."""
    return HASHER.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)


# zxcvbn's score (0 to 4) below which a password is refused: 3 is "safely unguessable:
# moderate protection from offline slow-hash scenarios" (about 10^8 guesses and more).
MIN_SCORE = 3
SCORED_LENGTH = 100  # longer passwords are scored on their first 100 characters (it is quadratic)


def check_policy(password: str, *, email: str | None = None) -> None:
    """Length, then guessability (NIST SP 800-63B: no composition rules, but refuse what is in
    a list of common or breached passwords, and repetitive or sequential ones)."""
    if len(password) < MIN_LENGTH:
        raise Refused(
            f"the password must have at least {MIN_LENGTH} characters",
            code="weak_password",
            status=422,
        )
    if len(password) > MAX_LENGTH:
        raise Refused(
            f"the password must have at most {MAX_LENGTH} characters",
            code="weak_password",
            status=422,
        )
    if email and password.strip().lower() == email.strip().lower():
        raise Refused("the password must not be the email", code="weak_password", status=422)
    refuse_guessable(password, email=email)


def refuse_guessable(password: str, *, email: str | None = None) -> None:
    """Refused (422 `weak_password`) with zxcvbn's reason when the password is common,
    breached, a repeat, a sequence, a keyboard walk, or built from the email."""
    from zxcvbn import zxcvbn  # its lists load on first use: not for every command's start

    found = zxcvbn(password[:SCORED_LENGTH], user_inputs=_words_of(email))
    if found["score"] >= MIN_SCORE:
        return
    counters.REFUSALS.labels(reason="weak_password").inc()
    reason = found["feedback"]["warning"] or "it would be found after few guesses."
    raise Refused(
        f"the password is too easy to guess: {reason.rstrip('.')}. Choose a longer or less "
        "common one: a few unrelated words work well",
        code="weak_password",
        status=422,
    )


def _words_of(email: str | None) -> list[str]:
    """The email and its parts (`jane.doe@example.com`: jane, doe, example), which a password
    should not be built from."""
    if not email:
        return []
    local, _, domain = email.lower().partition("@")
    parts = re.split(r"[._+\-]+", local) + domain.split(".")[:-1]
    return [email.lower(), local, *(p for p in parts if len(p) >= 3)]


def temporary_password() -> str:
    """A generated password for a new user or a reset: 20 characters, 120 bits, shown once and
    to be changed at the first sign-in."""
    return secrets.token_urlsafe(15)
