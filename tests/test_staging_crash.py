"""Staged rows are kept in unlogged tables: a crash of the data server empties them. Whoever
reads them next says so, naming the import, instead of working on nothing."""

import pytest

from app.audit import Actor
from app.customers import service as customers
from app.db.schemas import DATA, PRIMARY
from app.db.session import session_scope
from app.errors import Refused
from app.imports import service as imports
from app.jobs.worker import run_now
from app.transforms import service as transforms
from tests.bulk import PRODUCT_HEADER, run_import
from tests.test_worker_outage import backoffice_on


@pytest.fixture
def bo(tmp_path, spare_servers):
    backoffice = backoffice_on(spare_servers, tmp_path)
    yield backoffice
    backoffice.close()


def crash(server) -> None:
    """What a power cut does to PostgreSQL: no shutdown checkpoint; recovery at the next start
    replays the WAL and empties every unlogged table. (The test servers do not wait for the
    disk at commit: a checkpoint first keeps what was committed, as a real server would.)"""
    embedded = server.embedded
    import psycopg

    with psycopg.connect(server.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    embedded._run("pg_ctl", "-D", str(embedded.datadir), "-m", "immediate", "-w", "stop")
    embedded.start()


def test_rows_lost_in_a_crash_are_named_and_refused_not_transformed(bo, spare_servers, split):
    with session_scope(bo.session_factory) as session:
        customer = customers.create_customer(session, Actor(None, "tests"), code="CR", name="Cr")
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\n")
    with session_scope(bo.session_factory) as session:
        waiting = transforms.create(
            session, bo.references, import_id=import_id, dataset="products", created_by=None
        )
        job_id = waiting.job_id
        batch = imports.get_import(session, import_id)
        assert len(imports.staged_rows(session, batch, offset=0, limit=10)) == 2

    crash(spare_servers[DATA if split else PRIMARY])
    bo.engines.dispose()  # the pool's connections died with the server

    with bo.session_factory() as session:
        batch = imports.get_import(session, import_id)
        with pytest.raises(Refused) as lost:
            imports.staged_rows(session, batch, offset=0, limit=10)
        assert lost.value.code == "staging_lost" and lost.value.status == 409
        assert f"the staged rows of import {import_id} were lost" in lost.value.message
        assert "import the file again" in lost.value.message
        with pytest.raises(Refused) as refused:
            transforms.create(
                session, bo.references, import_id=import_id, dataset="products", created_by=None
            )
        assert refused.value.code == "staging_lost"
    outcome = run_now(bo, job_id)  # queued before the crash
    assert outcome.status == "failed"
    assert f"the staged rows of import {import_id} were lost" in str(outcome.error)
    with bo.session_factory() as session:
        assert transforms.get(session, waiting.id).status == "failed"
