"""A worker across an outage of the data engine's server: it waits with growing pauses, takes
up again by itself, and every job ends with each of its file's rows staged exactly once."""

import time

import pytest

from app import create_app
from app.audit import Actor
from app.customers import service as customers
from app.db import migrations
from app.db.schemas import DATA, PRIMARY
from app.db.session import session_scope
from tests.bulk import FAST, csv_rows, job_row, staged_count, wait_for
from tests.conftest import queue_import, start_embedded_server
from tests.harness import WorkerProcess

SIZES = [400_000, 10, 2_000, 30_000, 1, 5_000]


def backoffice_on(servers, tmp_path):
    env = {
        "APP_ENV": "test",
        "SPLIT_DB_MODE": str(len(servers) == 2).lower(),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "k",
        **FAST,
        "JOB_MAX_ATTEMPTS": "5",
    }
    for role, server in servers.items():
        env[f"{role.upper()}_DATABASE_URL"] = server.url
    backoffice = create_app(env).extensions["backoffice"]
    migrations.upgrade(backoffice.engines)
    backoffice.env = env
    return backoffice


@pytest.fixture
def bo(tmp_path, spare_servers):
    """On servers of the test's own, in the run's layout."""
    backoffice = backoffice_on(spare_servers, tmp_path)
    yield backoffice
    backoffice.close()


@pytest.fixture
def two_servers(tmp_path):
    """Split mode whatever the run's layout: the primary must be a server of its own."""
    servers = {role: start_embedded_server(tmp_path / role) for role in (PRIMARY, DATA)}
    backoffice = backoffice_on(servers, tmp_path)
    yield backoffice, servers
    backoffice.close()
    for server in servers.values():
        server.embedded.stop()


def test_a_worker_waits_out_a_data_engine_outage_and_loses_nothing(bo, spare_servers, split):
    with session_scope(bo.session_factory) as session:
        customer = customers.create_customer(session, Actor(None, "tests"), code="OUT", name="Out")
    jobs = {queue_import(bo, customer, csv_rows(n)): n for n in SIZES}
    data_server = spare_servers[DATA if split else PRIMARY].embedded
    worker = WorkerProcess(bo.env, concurrency=2)
    try:
        _, big_job = next(iter(jobs))
        assert wait_for(lambda: job_row(bo, big_job).progress_done > 0, 60, 0.005)
        data_server.stop()  # mid-COPY: its connection, and every other, is cut
        time.sleep(4)  # long enough for several failed claims
        assert worker.process.poll() is None, "the worker waits, it does not exit"
        data_server.start()
        everything = lambda: all(job_row(bo, j).status == "succeeded" for _, j in jobs)  # noqa: E731
        assert wait_for(everything, 90, 0.2), [job_row(bo, j).as_dict() for _, j in jobs]
        assert worker.process.poll() is None
    finally:
        log = worker.stop()
    for (import_id, job_id), rows in jobs.items():
        job = job_row(bo, job_id)
        assert job.result["rows_staged"] == rows == staged_count(bo, import_id), (
            "none lost or twice"
        )
    assert job_row(bo, big_job).attempt >= 2, "the cut attempt was retried"
    waits = [
        float(line.split("retrying in ")[1].split()[0])
        for line in log.splitlines()
        if "retrying in" in line
    ]
    assert len(waits) >= 3, log
    assert max(waits) > 2 * min(waits), f"the pauses grow: {waits}"
    assert "the data engine answers again" in log


def test_with_the_primary_down_a_worker_finishes_and_publishes_what_it_holds(two_servers):
    bo, servers = two_servers
    with session_scope(bo.session_factory) as session:
        customer = customers.create_customer(session, Actor(None, "tests"), code="PRI", name="P")
    import_id, job_id = queue_import(bo, customer, csv_rows(300_000))
    worker = WorkerProcess(bo.env)
    try:
        assert wait_for(lambda: job_row(bo, job_id).progress_done > 0, 60, 0.005)
        servers[PRIMARY].embedded.stop()
        assert wait_for(lambda: job_row(bo, job_id).status == "succeeded", 60, 0.1)
        assert staged_count(bo, import_id) == 300_000
        assert job_row(bo, job_id).attempt == 1, "not interrupted by the primary's outage"
    finally:
        worker.stop()
        servers[PRIMARY].embedded.start()
