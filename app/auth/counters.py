"""What the auth layer refuses, counted for /metrics (prometheus_client's registry, which
app/metrics.py serves): throttled and failed password checks, and the other refusals a
security review asks to watch."""

from prometheus_client import Counter

# `check` is `sign_in` (the login form and POST /api/auth/login) or `password_again` (the
# current password asked again to change it or to make an API token).
THROTTLED = Counter(
    "backoffice_auth_throttled",
    "Password checks refused (429) for too many failures, per check.",
    ["check"],
)
FAILURES = Counter(
    "backoffice_auth_failures", "Wrong passwords (or unknown accounts), per check.", ["check"]
)
REFUSALS = Counter(
    "backoffice_auth_refusals",
    "Refused: an API token doing what needs a session (session_required), a guessable "
    "password (weak_password).",
    ["reason"],
)
