"""Every configuration rule of `.env.template`, read from an environment mapping."""

import pytest

from app.config import PoolSettings, Settings
from app.database_url import database_tls_warnings, mask_url
from app.errors import ConfigError

PRIMARY = "postgresql://app:s3cret@db1.internal:5432/backoffice"
DATA = "postgresql://app:s3cret@db2.internal:5432/backoffice_data"


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert "s3cret" not in message, "a refusal must never print a password"
    return message


def test_defaults_are_single_mode_on_the_embedded_database():
    s = Settings.from_env({})
    assert (s.split_mode, s.embedded, s.log_db_queries, s.session_cache_ttl) == (
        False,
        True,
        False,
        30,
    )
    assert s.env == "development"


def test_database_url_is_the_fallback_for_the_primary_in_single_mode():
    s = Settings.from_env({"DATABASE_URL": PRIMARY})
    assert s.primary.url.database == "backoffice"
    assert s.primary.url.drivername == "postgresql+psycopg"
    assert s.data is None


def test_primary_url_wins_over_database_url():
    s = Settings.from_env({"DATABASE_URL": DATA, "PRIMARY_DATABASE_URL": PRIMARY})
    assert s.primary.url.host == "db1.internal"


def test_single_mode_refuses_a_data_url_that_names_another_database():
    message = refused({"DATABASE_URL": PRIMARY, "DATA_DATABASE_URL": DATA})
    assert "SPLIT_DB_MODE=false" in message and "DATA_DATABASE_URL" in message


def test_single_mode_accepts_a_data_url_naming_the_same_database():
    same = PRIMARY.replace("app:s3cret", "other:pw")
    s = Settings.from_env({"DATABASE_URL": PRIMARY, "DATA_DATABASE_URL": same})
    assert s.data is None  # one database, one engine


def test_split_mode_needs_both_urls():
    assert "DATA_DATABASE_URL" in refused({"SPLIT_DB_MODE": "true", "DATABASE_URL": PRIMARY})
    assert "PRIMARY_DATABASE_URL" in refused({"SPLIT_DB_MODE": "true", "DATA_DATABASE_URL": DATA})


def test_split_mode_refuses_two_urls_naming_one_database():
    # Another user and another spelling of the host still reach the same database.
    same = PRIMARY.replace("db1.internal", "DB1.internal").replace("app:s3cret", "x:s3cret")
    env = {"SPLIT_DB_MODE": "true", "PRIMARY_DATABASE_URL": PRIMARY, "DATA_DATABASE_URL": same}
    assert "same database" in refused(env)
    local = "postgresql://app:s3cret@localhost/backoffice"
    env = {
        "SPLIT_DB_MODE": "true",
        "PRIMARY_DATABASE_URL": local,
        "DATA_DATABASE_URL": local.replace("localhost", "127.0.0.1:5432"),
    }
    assert "same database" in refused(env)


def test_split_mode_with_two_databases():
    s = Settings.from_env(
        {"SPLIT_DB_MODE": "yes", "PRIMARY_DATABASE_URL": PRIMARY, "DATA_DATABASE_URL": DATA}
    )
    assert s.split_mode and s.data.url.database == "backoffice_data"


def test_prisma_style_pgbouncer_parameters_are_translated():
    s = Settings.from_env({"DATABASE_URL": PRIMARY + "?pgbouncer=true&connection_limit=3"})
    assert s.primary.pgbouncer is True
    assert s.primary.listen_ok is False
    assert s.primary.connection_limit == 3
    assert dict(s.primary.url.query) == {}, "our parameters never reach libpq"
    assert s.primary_pool.capped(3) == PoolSettings(size=3, max_overflow=0)
    assert PoolSettings(2, 5).capped(4) == PoolSettings(size=2, max_overflow=2)


def test_libpq_parameters_stay_on_the_url():
    s = Settings.from_env({"DATABASE_URL": PRIMARY + "?sslmode=require&application_name=x"})
    assert dict(s.primary.url.query) == {"sslmode": "require", "application_name": "x"}


def test_unknown_url_parameter_is_refused():
    message = refused({"DATABASE_URL": PRIMARY + "?connectionlimit=5"})
    assert "connectionlimit" in message and "unknown URL parameter" in message


def test_bad_values_are_refused_naming_the_setting():
    assert "SPLIT_DB_MODE" in refused({"SPLIT_DB_MODE": "maybe"})
    assert "LOG_DB_QUERIES" in refused({"LOG_DB_QUERIES": "loud"})
    assert "PRIMARY_POOL_SIZE" in refused({"PRIMARY_POOL_SIZE": "0"})
    assert "DATA_MAX_OVERFLOW" in refused({"DATA_MAX_OVERFLOW": "many"})
    assert "connection_limit" in refused({"DATABASE_URL": PRIMARY + "?connection_limit=0"})
    assert "pgbouncer" in refused({"DATABASE_URL": PRIMARY + "?pgbouncer=perhaps"})
    assert "APP_ENV" in refused({"APP_ENV": "staging"})


def test_urls_that_are_not_postgresql_are_refused():
    assert "not a database URL" in refused({"DATABASE_URL": "db1.internal:5432"})
    assert "only PostgreSQL" in refused({"DATABASE_URL": "mysql://u:s3cret@h/db"})
    assert "names no database" in refused({"DATABASE_URL": "postgresql://u:s3cret@h"})


def test_postgres_scheme_of_the_old_system_is_accepted():
    s = Settings.from_env({"DATABASE_URL": "postgres://app:s3cret@db1/backoffice"})
    assert s.primary.url.drivername == "postgresql+psycopg"


PRODUCTION = {"APP_ENV": "production", "DATABASE_URL": PRIMARY, "SECRET_KEY": "k" * 32}


def test_production_needs_a_database_url_and_a_secret_key():
    assert "PRIMARY_DATABASE_URL" in refused({"APP_ENV": "production"})
    assert "SECRET_KEY" in refused({"APP_ENV": "production", "DATABASE_URL": PRIMARY})
    s = Settings.from_env(PRODUCTION)
    assert s.production and s.cookie_secure


@pytest.mark.parametrize(
    ("variables", "setting"),
    [
        ({"SECRET_KEY": "k" * 31}, "SECRET_KEY"),
        ({"COOKIE_SECURE": "false"}, "COOKIE_SECURE"),
        ({"LOG_DB_QUERIES": "true"}, "LOG_DB_QUERIES"),
        ({"METRICS_TOKEN": "m" * 31}, "METRICS_TOKEN"),
    ],
)
def test_production_refuses_weak_settings_naming_them(variables, setting):
    message = refused({**PRODUCTION, **variables})
    assert setting in message and "APP_ENV=production" in message
    if setting in ("SECRET_KEY", "METRICS_TOKEN"):
        assert variables[setting] not in message, "a refusal never prints a secret"
    Settings.from_env({**PRODUCTION, **variables, "APP_ENV": "development"})  # fine there


def test_production_accepts_strong_settings():
    s = Settings.from_env({**PRODUCTION, "COOKIE_SECURE": "true", "METRICS_TOKEN": "m" * 32})
    assert s.metrics_token == "m" * 32 and not s.log_db_queries


def test_database_urls_without_sslmode_are_warned_about_except_over_a_unix_socket():
    def warnings(env):
        return database_tls_warnings(Settings.from_env({"SPLIT_DB_MODE": "true", **env}))

    tcp = warnings({"PRIMARY_DATABASE_URL": PRIMARY, "DATA_DATABASE_URL": DATA})
    assert [w.split(" ")[0] for w in tcp] == ["PRIMARY_DATABASE_URL", "DATA_DATABASE_URL"]
    assert "sslmode" in tcp[0] and "s3cret" not in tcp[0]
    assert (
        warnings(
            {
                "PRIMARY_DATABASE_URL": PRIMARY + "?sslmode=verify-full",
                "DATA_DATABASE_URL": "postgresql://app:s3cret@/backoffice_data?host=/run/postgresql",
            }
        )
        == []
    )
    assert (
        warnings(
            {
                "PRIMARY_DATABASE_URL": PRIMARY + "?sslmode=require",
                "DATA_DATABASE_URL": "postgresql:///backoffice_data",
            }
        )
        == []
    ), "no host: libpq's default Unix socket"
    listen = Settings.from_env(
        {"DATABASE_URL": PRIMARY + "?sslmode=require&pgbouncer=true", "AUTH_LISTEN_URL": DATA}
    )
    assert [w.split(" ")[0] for w in database_tls_warnings(listen)] == ["AUTH_LISTEN_URL"]


def test_masked_urls_hide_the_password():
    assert mask_url(PRIMARY) == "postgresql://app:***@db1.internal:5432/backoffice"


def test_masked_urls_hide_a_password_given_as_a_url_parameter():
    url = "postgresql://app@db1/backoffice?password=s3cret&sslpassword=s3cret&sslmode=require"
    masked = mask_url(url)
    assert "s3cret" not in masked and masked.count("***") == 2, masked
    assert "sslmode=require" in masked
    assert "s3cret" not in Settings.from_env({"DATABASE_URL": url}).primary.masked
    assert "timeout" in refused({"DATABASE_URL": url + "&timeout=3"})  # refused() checks it
