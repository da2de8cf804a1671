"""Guessable passwords are refused wherever a password is set, with the reason: common and
breached ones (zxcvbn's lists, shipped in its wheel), repeats, sequences, keyboard walks, and
ones built from the email. Long unrelated words pass."""

import pytest

from app.auth import passwords
from app.errors import Refused
from tests.conftest import PASSWORD, login
from tests.harness import backoffice

GUESSABLE = {
    "aaaaaaaaaaaa": "Repeats like",
    "123456789012": "commonly used password",
    "password1234": "very common password",
    "qwertyuiopasdf": "",
    "abcdefghijklmn": "Sequences like",
}


@pytest.mark.parametrize("password", GUESSABLE)
def test_a_guessable_password_is_refused_saying_why(password):
    with pytest.raises(Refused) as refused:
        passwords.check_policy(password, email="someone@example.com")
    assert refused.value.code == "weak_password"
    assert refused.value.message.startswith("the password is too easy to guess")
    assert GUESSABLE[password] in refused.value.message


def test_a_password_made_of_the_email_is_refused():
    with pytest.raises(Refused, match="too easy to guess"):
        passwords.check_policy("jane.doe1234", email="jane.doe@example.com")
    passwords.check_policy("jane.doe1234", email="someone@example.com")  # not hers: fine


@pytest.mark.parametrize("password", [PASSWORD, "a much better passphrase", "Tr0ub4dor&3xyz"])
def test_a_long_unguessable_password_passes(password):
    passwords.check_policy(password, email="someone@example.com")


def test_the_api_refuses_them_for_a_new_user_and_a_changed_password(client, make_user):
    admin = make_user("admin")
    headers = {"X-CSRF-Token": login(client, admin.email)}
    for weak in ("aaaaaaaaaaaa", "password1234"):
        made = client.post(
            "/api/users",
            headers=headers,
            json={
                "email": "new@example.com",
                "display_name": "New",
                "role": "viewer",
                "password": weak,
            },
        )
        assert made.status_code == 422 and made.json["error"]["code"] == "weak_password"
    changed = client.post(
        "/api/auth/password",
        headers=headers,
        json={"current_password": PASSWORD, "new_password": "123456789012"},
    )
    assert changed.status_code == 422 and "too easy to guess" in changed.json["error"]["message"]


def test_the_command_refuses_them_at_create_and_reset(migrated_env):
    created = backoffice(
        migrated_env,
        "users",
        "create",
        "--email",
        "w@example.com",
        "--name",
        "W",
        "--password-stdin",
        input="password1234\n",
    )
    assert created.returncode == 1 and "too easy to guess" in created.stderr
    assert "Traceback" not in created.stderr
    ok = backoffice(
        migrated_env,
        "users",
        "create",
        "--email",
        "w@example.com",
        "--name",
        "W",
        "--password-stdin",
        input="a much better passphrase\n",
    )
    assert ok.returncode == 0, ok.stderr
    reset = backoffice(
        migrated_env,
        "users",
        "reset-password",
        "w@example.com",
        "--password-stdin",
        input="aaaaaaaaaaaa\n",
    )
    assert reset.returncode == 1 and "Repeats like" in reset.stderr
