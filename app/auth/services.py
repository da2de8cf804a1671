"""The names `app.auth.services` held before it was split, for the shell commands
(`app/auth/cli.py`, `app/demo.py`) while they move into `app/cli/`; new code imports from
where each name lives. Remove once nothing imports this module.
"""

from app.audit import Actor
from app.auth.api_tokens import (
    create_api_token,
    find_api_token,
    list_api_tokens,
    revoke_api_token,
    revoke_api_tokens,
)
from app.auth.principals import principal_for_api_token, principal_for_session
from app.auth.roles import RANK, check_role
from app.auth.sessions import (
    end_every_session,
    end_session,
    end_sessions,
    end_user_access,
    end_user_sessions,
    list_sessions,
)
from app.auth.signin import LoginRefused, login
from app.auth.users import (
    change_own_password,
    confirm_password,
    create_user,
    delete_user,
    find_user_by_email,
    get_user,
    keep_an_active_admin,
    list_users,
    set_password,
    update_user,
)
from app.db.notices import notify
from app.email_address import normalize_email

__all__ = [
    "RANK",
    "Actor",
    "LoginRefused",
    "change_own_password",
    "check_role",
    "confirm_password",
    "create_api_token",
    "create_user",
    "delete_user",
    "end_every_session",
    "end_session",
    "end_sessions",
    "end_user_access",
    "end_user_sessions",
    "find_api_token",
    "find_user_by_email",
    "get_user",
    "keep_an_active_admin",
    "list_api_tokens",
    "list_sessions",
    "list_users",
    "login",
    "normalize_email",
    "notify",
    "principal_for_api_token",
    "principal_for_session",
    "revoke_api_token",
    "revoke_api_tokens",
    "set_password",
    "update_user",
]
