"""The guard: work that spans both engines fails even where one database would hide it."""

import pytest
from sqlalchemy import insert, select

from app.audit import Actor
from app.auth.users import create_user
from app.db.guard import CrossEngineQuery, CrossEngineWrite
from app.models.primary.config import User


@pytest.fixture
def data_table(probe_table):
    return probe_table("guard_probe", "user_id", "note")


def new_user(db) -> User:
    return create_user(
        db,
        Actor(None, "tests"),
        email="g@example.com",
        display_name="G",
        role="viewer",
        password="correct horse battery staple",
    )


def test_a_unit_of_work_writing_both_engines_raises_naming_the_tables(db, data_table):
    new_user(db)  # flushed: config.users and config.audit_log are written
    with pytest.raises(CrossEngineWrite) as info:
        db.execute(insert(data_table).values(note="mixed"))
    message = str(info.value)
    assert "data (workspace.guard_probe)" in message and "config.users" in message


def test_the_other_order_raises_too(db, data_table):
    db.execute(insert(data_table).values(note="first"))
    with pytest.raises(CrossEngineWrite, match=r"workspace\.guard_probe"):
        new_user(db)


def test_each_engine_committed_on_its_own_is_fine(db, data_table):
    new_user(db)
    db.commit()
    db.execute(insert(data_table).values(note="after the commit"))
    db.commit()
    assert db.execute(select(data_table.c.note)).scalar() == "after the commit"


def test_a_query_joining_both_engines_raises(db, data_table):
    query = select(User.email, data_table.c.note).join(data_table, data_table.c.user_id == User.id)
    expected = r"both engines: data \(workspace\.guard_probe\) and primary \(config\.users\)"
    with pytest.raises(CrossEngineQuery, match=expected):
        db.execute(query)
    nested = select(data_table).where(data_table.c.user_id.in_(select(User.id)))
    with pytest.raises(CrossEngineQuery):
        db.connection_for("data").execute(nested)


def test_the_guard_is_off_in_production():
    from app.config import Settings

    assert Settings.from_env({}).engine_guard is True
    production = Settings.from_env(
        {"APP_ENV": "production", "SECRET_KEY": "k" * 32, "DATABASE_URL": "postgresql://u@h/db"}
    )
    assert production.engine_guard is False
