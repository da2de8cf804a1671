"""Jobs: claiming, leases, a killed or paused worker, cancelling, and the HTTP routes."""

import ast
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.session import session_scope
from app.imports import service as imports
from app.jobs import kinds, queue
from app.jobs.worker import run_now, worker_id
from tests.bulk import FAST, csv_rows, job_row, staged_count, wait_for
from tests.conftest import READY_DETAILS, create_user, login, queue_import
from tests.harness import WorkerProcess


@pytest.fixture(scope="module")
def bulk_env(committed_env):
    return {**committed_env, **FAST}


def test_the_jobs_package_imports_no_area():
    """`app/jobs` runs every kind by name; the areas import it, never the other way."""
    areas = ("app.imports", "app.transforms", "app.exports")
    found = []
    for path in sorted(Path(queue.__file__).parent.glob("*.py")):
        if path.name == "cli.py":  # the commands, which call every area (leaving for app/cli/)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            found += [f"{path.name}: {n}" for n in names if n.startswith(areas)]
    assert found == []


def test_each_kind_runs_by_its_registered_handler_and_others_are_refused(bo):
    assert sorted(type(kinds.handler_for(kind)).__name__ for kind in kinds.KINDS) == [
        "ExportJob",
        "ImportJob",
        "TransformJob",
    ]
    with pytest.raises(LookupError, match="no handler for job kind 'copy'"):
        kinds.handler_for("copy")
    with pytest.raises(ValueError, match="unknown job kind 'copy'"):
        kinds.register("copy", lambda: kinds.handler_for("import"))


def test_two_claimers_never_get_the_same_job(bo, customer):
    ids = {queue_import(bo, customer, b"a\n1\n")[1] for _ in range(40)}
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(n):
        while claim := queue.claim(bo.engines.data, worker_id(n), 60, kinds=["import"]):
            with lock:
                claimed.append(claim.job_id)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == len(set(claimed)), "a job was claimed twice"
    assert ids <= set(claimed)
    with bo.engines.begin("data") as conn:  # let later tests start from an empty queue
        conn.execute(
            text("UPDATE workspace.jobs SET status = 'cancelled' WHERE id = ANY(:ids)"),
            {"ids": claimed},
        )


def test_a_killed_worker_s_import_is_finished_by_another_with_exactly_the_file_s_rows(
    bo, bulk_env, customer
):
    rows = 600_000
    import_id, job_id = queue_import(bo, customer, csv_rows(rows))
    first = WorkerProcess(bulk_env)
    try:
        mid_copy = wait_for(
            lambda: (
                lambda j: j.status == "running" and 0 < j.progress_done < (j.progress_total or 0)
            )(job_row(bo, job_id)),
            60,
            0.005,
        )
        assert mid_copy, "the first worker was seen in the middle of its COPY"
        first.signal(signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        first.stop()
    second = WorkerProcess(bulk_env)
    try:
        done = wait_for(lambda: job_row(bo, job_id).status == "succeeded", 60, 0.1)
        took = time.monotonic() - killed_at
    finally:
        second.stop()
    assert done
    job = job_row(bo, job_id)
    assert job.attempt == 2 and job.result["rows_staged"] == rows
    assert staged_count(bo, import_id) == rows, "every row once: none lost, none twice"
    assert took < 2 + 10, "taken up within the lease plus a poll"
    with bo.engines.connect("data") as conn:
        leftovers = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tablename LIKE :t"),
            {"t": f"import\\_{import_id}\\_a%"},
        ).scalar()
    assert leftovers == 0, "the killed attempt's table went with its transaction"


def test_a_paused_worker_that_lost_its_lease_cannot_publish(bo, bulk_env, customer):
    import_id, job_id = queue_import(bo, customer, csv_rows(400_000))
    first = WorkerProcess(bulk_env)
    second = None
    try:
        assert wait_for(lambda: job_row(bo, job_id).progress_done > 0, 60, 0.005)
        first.signal(signal.SIGSTOP)  # paused mid-COPY: no heartbeat, the lease runs out
        second = WorkerProcess(bulk_env)
        assert wait_for(lambda: job_row(bo, job_id).status == "succeeded", 60, 0.1)
        assert job_row(bo, job_id).attempt == 2
        first.signal(signal.SIGCONT)  # it wakes up believing it still holds the job
        time.sleep(1.5)
    finally:
        first.signal(signal.SIGCONT)
        first.stop()
        if second:
            second.stop()
    job = job_row(bo, job_id)
    assert (job.status, job.attempt) == ("succeeded", 2)
    assert f":{first.pid}:" not in job.worker_id, "the published result is the second attempt's"
    assert staged_count(bo, import_id) == 400_000


def test_a_job_is_failed_after_its_last_attempt_is_lost(bo, customer):
    _import_id, job_id = queue_import(bo, customer, b"a\n1\n")
    with bo.engines.begin("data") as conn:
        conn.execute(
            text("UPDATE workspace.jobs SET max_attempts = 1 WHERE id = :id"), {"id": job_id}
        )
    claim = queue.claim(bo.engines.data, "vanishing-worker", 0.2, job_id=job_id)
    assert claim is not None
    time.sleep(0.3)  # the lease runs out and nobody renews it
    assert queue.claim(bo.engines.data, "other", 60, job_id=job_id) is None, "no attempt left"
    swept = queue.sweep(bo.engines.data)
    assert (job_id, "import", "failed") in swept
    assert "lost 1 times" in job_row(bo, job_id).error


def test_cancelling_a_queued_job_is_immediate(bo, customer):
    import_id, job_id = queue_import(bo, customer, b"a\n1\n")
    with session_scope(bo.session_factory) as session:
        queue.request_cancel(session, queue.get_job(session, job_id))
    assert job_row(bo, job_id).status == "cancelled"
    assert run_now(bo, job_id) is None, "a cancelled job is never claimed"
    with bo.session_factory() as session:
        assert imports.get_import(session, import_id).status == "cancelled"
        with pytest.raises(imports.Refused, match="already ended"):
            queue.request_cancel(session, queue.get_job(session, job_id))


def test_cancelling_a_running_import_stops_its_statement_and_leaves_nothing(bo, customer):
    import_id, job_id = queue_import(bo, customer, csv_rows(10))
    outcome = {}
    # Hold a lock the job's first statement waits on: a statement in flight, for certain.
    with bo.engines.begin("data") as blocker:
        blocker.execute(text("LOCK TABLE workspace.imports IN ACCESS EXCLUSIVE MODE"))
        runner = threading.Thread(target=lambda: outcome.update(result=run_now(bo, job_id)))
        runner.start()
        assert wait_for(lambda: job_row_unlocked(bo, job_id) == "running", 10)
        with bo.engines.begin("data") as conn:
            conn.execute(
                text("UPDATE workspace.jobs SET cancel_requested = true WHERE id = :id"),
                {"id": job_id},
            )
        time.sleep(0.5)  # the heartbeat sees the request and cancels the waiting statement
    runner.join(timeout=10)
    assert outcome["result"].status == "cancelled"
    assert job_row(bo, job_id).status == "cancelled"
    with bo.session_factory() as session:
        assert imports.get_import(session, import_id).status == "cancelled"
    with bo.engines.connect("data") as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE tablename LIKE :t"),
                {"t": f"import\\_{import_id}%"},
            ).scalar()
            == 0
        )


def job_row_unlocked(bo, job_id) -> str:
    """A job's status read with a plain SQL query (the ORM would wait on the locked table)."""
    with bo.engines.connect("data") as conn:
        return conn.execute(
            text("SELECT status FROM workspace.jobs WHERE id = :id"), {"id": job_id}
        ).scalar()


def test_jobs_routes_list_show_and_cancel(bulk_app, bo, customer):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    _import_id, job_id = queue_import(bo, customer, b"a\n1\n")
    listed = client.get("/api/jobs?kind=import&status=queued").json["jobs"]
    assert job_id in [j["id"] for j in listed]
    shown = client.get(f"/api/jobs/{job_id}").json["job"]
    assert shown["kind"] == "import" and shown["progress"]["done"] == 0
    assert shown["attempts"] == 0 and shown["error"] is None
    cancelled = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert cancelled.status_code == 202 and cancelled.json["job"]["status"] == "cancelled"
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=headers)
    assert again.status_code == 409
    assert client.get("/api/jobs/999999999").status_code == 404


def test_readiness_reports_the_queue(bulk_app, bo, customer):
    _import_id, job_id = queue_import(bo, customer, b"a\n1\n")
    try:
        with bo.engines.begin("data") as conn:
            conn.execute(
                text(
                    "UPDATE workspace.jobs SET created_at = now() - interval '90 "
                    "seconds' WHERE id = :id"
                ),
                {"id": job_id},
            )
        jobs = bulk_app.test_client().get("/health/ready", headers=READY_DETAILS).json["jobs"]
        assert jobs["queued"] >= 1 and jobs["oldest_queued_seconds"] >= 90
        assert jobs["running"] >= 0
    finally:
        with session_scope(bo.session_factory) as session:
            queue.request_cancel(session, queue.get_job(session, job_id))
