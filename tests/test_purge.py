"""Purging a customer's data, then deleting the customer: through the service, the API and the
command, in batches, resumable after a crash, never while one of its jobs still runs."""

import json

import pytest
from sqlalchemy import select, text

from app.audit import Actor
from app.customers import purge as purge_module
from app.customers import service as customers
from app.customers.purge import purge_customer_data
from app.db.session import session_scope
from app.errors import Refused
from app.exports.service import export_dir
from app.jobs import queue
from app.models.primary.config import AuditEntry
from app.models.primary.customer import Customer
from tests.bulk import PRODUCT_HEADER, run_export, run_import, run_transform
from tests.conftest import create_user, login, queue_import
from tests.harness import backoffice

ACTOR = Actor(None, "tests")
ROWS = PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\nS3,C,bad,EUR\n"


def history(bo, customer) -> dict:
    """A customer with everything the data engine can hold for one: a transformed import (with
    a rejected row), a staged one, a queued job, an export file."""
    transformed = run_import(bo, customer, ROWS)
    run_transform(bo, transformed)
    staged = run_import(bo, customer, ROWS)
    queued_import, queued_job = queue_import(bo, customer, ROWS.encode())
    export, _ = run_export(bo, customer, "products")
    path = export_dir(bo.settings, bo.instance_path) / export.file_name
    assert path.exists()
    return {"imports": [transformed, staged, queued_import], "job": queued_job, "file": path}


def held(bo, customer_id: int) -> dict[str, int]:
    with bo.session_factory() as session:
        return customers.data_held_for(session, customer_id)


def work_tables(bo) -> list[str]:
    with bo.session_factory() as session:
        return list(
            session.connection_for("data")
            .execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'workspace' "
                    "AND (tablename ~ '^(import|transform)_[0-9]+')"
                )
            )
            .scalars()
        )


def test_a_purge_removes_everything_and_then_delete_works(bo, customer):
    made = history(bo, customer)
    assert set(held(bo, customer.id)) >= {
        "workspace.imports",
        "workspace.transforms",
        "workspace.exports",
        "workspace.jobs",
        "reference.products",
    }
    outcome = purge_customer_data(bo, ACTOR, customer.id, wait_seconds=5)
    assert outcome.done
    assert held(bo, customer.id) == {}
    assert outcome.counts["reference.products"] == 2
    assert outcome.counts["workspace.imports"] == 3
    assert outcome.counts["workspace.transform_errors"] == 1
    assert outcome.counts["export_files"] == 1 and not made["file"].exists()
    assert outcome.counts["tables"] >= 2  # the two staged imports' tables
    assert not [
        t for t in work_tables(bo) if any(t.startswith(f"import_{i}") for i in made["imports"])
    ]
    with bo.session_factory() as session:
        assert session.get(Customer, customer.id).status == "inactive"
        entry = session.scalar(
            select(AuditEntry)
            .where(AuditEntry.action == "customer.purge_data")
            .order_by(AuditEntry.id.desc())
        )
        assert entry.target_id == str(customer.id)
        assert entry.details["removed"]["reference.products"] == 2
        assert entry.details["complete"] is True
    with session_scope(bo.session_factory) as session:
        customers.delete_customer(session, ACTOR, customers.get_customer(session, customer.id))
    with bo.session_factory() as session:
        assert session.get(Customer, customer.id) is None


def test_a_purge_cut_short_goes_on_where_it_stopped(bo, customer, monkeypatch):
    run_transform(
        bo, run_import(bo, customer, PRODUCT_HEADER + "".join(f"S{n},N,1,EUR\n" for n in range(25)))
    )
    real, calls = purge_module._delete_some, []

    def crash_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the process died")
        return real(*args, **kwargs)

    monkeypatch.setattr(purge_module, "_delete_some", crash_on_the_fourth)
    with pytest.raises(RuntimeError):
        purge_customer_data(bo, ACTOR, customer.id, batch_size=10)
    left = held(bo, customer.id)
    assert left and left.get("reference.products", 0) < 25  # some batches committed
    monkeypatch.setattr(purge_module, "_delete_some", real)
    outcome = purge_customer_data(bo, ACTOR, customer.id, batch_size=10)
    assert outcome.done and held(bo, customer.id) == {}
    assert outcome.counts.get("reference.products", 0) == left.get("reference.products", 0)


def test_a_deadline_stops_between_batches_and_says_so(bo, customer):
    run_import(bo, customer, ROWS)
    first = purge_customer_data(bo, ACTOR, customer.id, deadline=0)
    assert not first.done and held(bo, customer.id)
    assert purge_customer_data(bo, ACTOR, customer.id).done
    assert held(bo, customer.id) == {}


def test_a_running_job_keeps_its_customers_data_until_it_stops(bo, customer):
    _import_id, job_id = queue_import(bo, customer, ROWS.encode())
    claim = queue.claim(bo.engines.data, "elsewhere:1:0", 60, job_id=job_id)
    assert claim is not None  # running on a worker that is not answering
    with pytest.raises(Refused) as refused:
        purge_customer_data(bo, ACTOR, customer.id, wait_seconds=0.5)
    assert refused.value.code == "customer_busy" and refused.value.status == 409
    assert refused.value.headers["Retry-After"]
    assert "workspace.imports" in held(bo, customer.id)
    with bo.session_factory() as session:
        job = queue.get_job(session, job_id)
        assert job.cancel_requested  # told to stop
        assert session.get(Customer, customer.id).status == "inactive"  # nothing new starts


def test_the_api_purges_for_admins_only_then_deletes(bulk_app, bo, customer):
    history(bo, customer)
    operator, admin = (
        create_user(bo.session_factory, "operator"),
        create_user(bo.session_factory, "admin"),
    )
    client = bulk_app.test_client()
    headers = {"X-CSRF-Token": login(client, operator.email)}
    plain = client.delete(f"/api/customers/{customer.id}", headers=headers)
    assert plain.status_code == 409 and plain.json["error"]["code"] == "customer_has_data"
    refused = client.delete(f"/api/customers/{customer.id}?purge=true", headers=headers)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert held(bo, customer.id)
    headers = {"X-CSRF-Token": login(client, admin.email)}
    done = client.delete(f"/api/customers/{customer.id}?purge=true", headers=headers)
    assert done.status_code == 200, done.json
    assert done.json["done"] is True and done.json["purged"]["reference.products"] == 2
    assert client.get(f"/api/customers/{customer.id}").status_code == 404
    assert held(bo, customer.id) == {}


def test_the_command_purges_after_asking_then_deletes(bo, customer, bulk_env):
    history(bo, customer)
    asked = backoffice(bulk_env, "customers", "purge-data", customer.code, input="n\n")
    assert asked.returncode == 1 and "Aborted" in asked.stderr
    assert held(bo, customer.id)
    refused = backoffice(bulk_env, "customers", "delete", customer.code, "--yes")
    assert refused.returncode == 1 and "still has data" in refused.stderr
    purged = backoffice(bulk_env, "customers", "purge-data", customer.code, "--yes", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["removed"]["reference.products"] == 2
    deleted = backoffice(bulk_env, "customers", "delete", customer.code, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted customer {customer.code}" in deleted.stdout
    gone = backoffice(bulk_env, "customers", "purge-data", customer.code, "--yes")
    assert gone.returncode == 1 and f"no customer with code {customer.code}" in gone.stderr
