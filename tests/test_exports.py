"""Exports: the round trip, gzip, no half files, generated names, and the routes."""

import csv
import gc
import gzip
import io
import json
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.session import session_scope
from app.exports import job as export_job
from app.exports import service as exports
from app.jobs import runner
from app.jobs.worker import run_now
from tests.bulk import RATES_HEADER, reference_rows, run_export, run_import, run_transform
from tests.conftest import create_user, login, queue_import
from tests.harness import backoffice

PRODUCTS = (
    "sku,name,category,weight_kg,length_cm,width_cm,height_cm,unit_price,currency,"
    "barcode,active,updated_at\n"
    'S2,"Widget, large",tools,1.250,10,20,30,9.99,eur,4006381333931,yes,'
    "2024-05-01T10:30:00+02:00\n"
    'S1,"Say ""hi""\nsecond line",,,,,,0.5,USD,,0,2024-05-02\n'
    "S3,Plain,,,,,,100,JPY,,,\n"
)


@pytest.fixture(scope="module")
def bulk_env(committed_env, tmp_path_factory):
    # A folder the first export creates (its mode is checked).
    return {**committed_env, "EXPORT_DIR": str(tmp_path_factory.mktemp("exports") / "out")}


@pytest.mark.parametrize(
    ("dataset", "content"),
    [
        ("products", PRODUCTS),
        (
            "rates",
            RATES_HEADER + "DHL,x,,80331,,,1,EUR,"
            "2024-01-01,\nUPS,y,1,2,0.5,3,2.00,GBP,"
            "2024-02-01,2024-03-01\n",
        ),
    ],
)
def test_export_then_import_then_transform_is_the_identity(
    bo, customer, tmp_path, dataset, content
):
    first, _ = run_transform(bo, run_import(bo, customer, content), dataset)
    assert first.as_dict()["rejected"] == 0
    before = reference_rows(bo, dataset, customer)
    out = tmp_path / "out.csv"
    export, outcome = run_export(bo, customer, dataset, output=out)
    assert outcome.status == "succeeded" and export.rows == len(before)
    again, _ = run_transform(bo, run_import(bo, customer, out.read_text()), dataset)
    assert again.as_dict()["unchanged"] == len(before) and again.as_dict()["rejected"] == 0
    after = reference_rows(bo, dataset, customer)
    drop = {"source_import_id", "loaded_at"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in after] == [
        {k: v for k, v in r.items() if k not in drop} for r in before
    ]


def test_exports_have_a_header_stable_columns_and_key_order(bo, customer, tmp_path):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    out = tmp_path / "p.csv"
    run_export(bo, customer, "products", output=out)
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == PRODUCTS.splitlines()[0].split(",")
    assert [r[0] for r in rows[1:]] == ["S1", "S2", "S3"]
    assert rows[1][1] == 'Say "hi"\nsecond line'


def test_the_cycle_collector_is_off_while_rows_stream_and_on_again_after(
    bo, customer, tmp_path, monkeypatch
):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    seen = []
    original = export_job._open_output
    monkeypatch.setattr(
        export_job, "_open_output", lambda *a: seen.append(gc.isenabled()) or original(*a)
    )
    run_export(bo, customer, "products", output=tmp_path / "p.csv")
    assert seen == [False] and gc.isenabled()
    gc.disable()  # off before (another export running): left off
    try:
        run_export(bo, customer, "products", output=tmp_path / "q.csv")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gzip_output_is_readable_by_gzip(bo, customer, tmp_path):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    plain, zipped = tmp_path / "p.csv", tmp_path / "p.csv.gz"
    run_export(bo, customer, "products", output=plain)
    export, _ = run_export(bo, customer, "products", output=zipped, fmt="csv.gz")
    unzipped = subprocess.run(["gzip", "-dc", str(zipped)], capture_output=True, check=True)
    assert unzipped.stdout == plain.read_bytes()
    assert export.size_bytes == zipped.stat().st_size


def test_a_crash_never_leaves_a_half_file_under_the_final_name(bo, customer, tmp_path, monkeypatch):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")

    def lost(conn, claim):
        raise runner.LeaseLost()

    monkeypatch.setattr("app.exports.job.fence", lost)
    out = tmp_path / "never.csv"
    _export, outcome = run_export(bo, customer, "products", output=out)
    assert outcome.status == "lost"
    assert not out.exists() and list(tmp_path.iterdir()) == [], "no part file either"


def test_export_routes_generate_names_and_serve_the_file(bulk_app, bo, customer):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    created = client.post(
        "/api/exports",
        headers=headers,
        json={"dataset": "products", "customer_id": customer.id, "format": "csv.gz"},
    )
    assert created.status_code == 202, created.json
    export_id = created.json["export"]["id"]
    early = client.get(f"/api/exports/{export_id}/download")
    assert early.status_code == 409 and early.json["error"]["code"] == "not_ready"
    run_now(bo, created.json["job"]["id"])
    shown = client.get(f"/api/exports/{export_id}").json["export"]
    assert shown["status"] == "succeeded" and shown["rows"] == 3
    download = client.get(f"/api/exports/{export_id}/download")
    assert download.status_code == 200
    assert f"products-{customer.code}-{export_id}.csv.gz" in download.headers["Content-Disposition"]
    assert gzip.decompress(download.data).startswith(b"sku,name,")
    for body, code in [
        ({"dataset": "../../etc/passwd", "customer_id": customer.id}, "unknown_dataset"),
        ({"dataset": "products", "customer_id": 987654}, "unknown_customer"),
        ({"dataset": "products", "customer_id": customer.id, "format": "xlsx"}, "invalid_field"),
        ({"dataset": "products", "customer_id": str(customer.id)}, "invalid_customer_id"),
        ({"dataset": "products", "customer_id": True}, "invalid_customer_id"),
        (
            {"dataset": "products", "customer_id": customer.id, "neutralize_formulas": 1},
            "invalid_field",
        ),
    ]:
        response = client.post("/api/exports", headers=headers, json=body)
        assert response.status_code == 422 and response.json["error"]["code"] == code
    assert client.get("/api/exports/999999/download").status_code == 404


# A customer's file whose text cells a spreadsheet would run as formulas.
def queued_export(bo, customer) -> tuple[int, int, Path]:
    """An API-style export (generated name under EXPORT_DIR): (export id, job id, its path)."""
    with session_scope(bo.session_factory) as session:
        export = exports.create(
            session, bo.references, dataset="products", customer_id=customer.id, created_by=None
        )
        return (
            export.id,
            export.job_id,
            exports.export_dir(bo.settings, bo.instance_path) / export.file_name,
        )


def test_a_job_row_pointing_outside_the_folders_fails_and_touches_nothing(bo, customer, tmp_path):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    export_id, export_job, _ = queued_export(bo, customer)
    import_id, import_job = queue_import(bo, customer, b"a\n1\n")
    with bo.engines.data.begin() as conn:  # their own jobs are not run: the planted ones are
        conn.execute(
            text("UPDATE workspace.jobs SET status = 'cancelled' WHERE id IN (:e, :i)"),
            {"e": export_job, "i": import_job},
        )
    folder = exports.export_dir(bo.settings, bo.instance_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("sku\nsecret\n")
    planted = [
        ("export", {"export_id": export_id, "output": str(tmp_path / "written.csv")}),
        ("export", {"export_id": export_id, "output": f"{folder}/../escaped.csv"}),
        ("import", {"import_id": import_id, "local_path": str(secret)}),
    ]
    for kind, params in planted:
        with bo.engines.data.begin() as conn:
            job_id = conn.execute(
                text(
                    "INSERT INTO workspace.jobs (kind, params, customer_id) "
                    "VALUES (:kind, CAST(:params AS jsonb), :c) RETURNING id"
                ),
                {"kind": kind, "params": json.dumps(params), "c": customer.id},
            ).scalar()
        outcome = run_now(bo, job_id)  # as a worker runs it: nobody vouches for the path
        assert outcome.status == "failed", (kind, outcome)
        assert "outside the folders jobs may use" in outcome.error, outcome.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]
    assert not (folder.parent / "escaped.csv").exists()
    with bo.session_factory() as session:
        assert exports.get(session, export_id).rows is None
    with bo.engines.data.connect() as conn:
        staged_tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE tablename LIKE :t"),
            {"t": f"import_{import_id}%"},
        ).scalar()
    assert staged_tables == 0, "nothing of the secret file was read into the database"


def test_a_symbolic_link_planted_at_the_export_s_name_is_not_followed(bo, customer, tmp_path):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    _, job_id, final = queued_export(bo, customer)
    final.parent.mkdir(parents=True, exist_ok=True)
    final.symlink_to(victim)
    outcome = run_now(bo, job_id)
    assert outcome.status == "failed" and "symbolic link" in outcome.error
    _, job_id, final = queued_export(bo, customer)
    part = final.with_name(f".{final.name}.part-{job_id}-1")
    part.symlink_to(victim)
    outcome = run_now(bo, job_id)
    assert outcome.status == "failed" and "already exists" in outcome.error
    assert victim.read_text() == "keep me" and part.is_symlink() and not final.exists()


def test_export_files_and_their_folder_are_private_from_the_start(bulk_app, bo, customer, tmp_path):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    _, job_id, final = queued_export(bo, customer)
    assert run_now(bo, job_id).status == "succeeded"
    assert stat.S_IMODE(final.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    out = tmp_path / "cli.csv.gz"
    _, outcome = run_export(bo, customer, "products", output=out, fmt="csv.gz")
    assert outcome.status == "succeeded" and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert gzip.decompress(out.read_bytes()).startswith(b"sku,name,")


def test_a_download_whose_stored_name_leaves_the_folder_is_refused(
    bulk_app, bo, customer, tmp_path
):
    run_transform(bo, run_import(bo, customer, PRODUCTS), "products")
    export_id, job_id, final = queued_export(bo, customer)
    assert run_now(bo, job_id).status == "succeeded"
    (final.parent.parent / "outside.csv").write_text("secret")
    with bo.engines.data.begin() as conn:
        conn.execute(
            text("UPDATE workspace.exports SET file_name = '../outside.csv' WHERE id = :id"),
            {"id": export_id},
        )
    client = bulk_app.test_client()
    viewer = create_user(bo.session_factory, "viewer")
    login(client, viewer.email)
    response = client.get(f"/api/exports/{export_id}/download")
    assert response.status_code == 404 and response.json["error"]["code"] == "file_missing"


def test_viewers_do_not_see_a_job_s_parameters(bulk_app, bo, customer, tmp_path):
    out = tmp_path / "p.csv"
    export, _ = run_export(bo, customer, "products", output=out)
    for role, sees in (("viewer", False), ("operator", True)):
        client = bulk_app.test_client()
        login(client, create_user(bo.session_factory, role).email)
        shown = [
            client.get(f"/api/jobs/{export.job_id}").json["job"],
            next(j for j in client.get("/api/jobs").json["jobs"] if j["id"] == export.job_id),
            client.get(f"/api/exports/{export.id}").json["job"],
        ]
        for job in shown:
            assert ("params" in job) is sees, (role, job)
            assert job["status"] == "succeeded"
        if sees:
            assert shown[0]["params"]["output"] == str(out)


def audit_rows(bo, action: str, target_id) -> list:
    from app import audit

    with bo.session_factory() as session:
        return [r for r in audit.entries(session, action=action) if r.target_id == str(target_id)]


def test_imports_transforms_exports_and_downloads_are_audited_over_http(bulk_app, bo, customer):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    uploaded = client.post(
        "/api/imports",
        headers=headers,
        data={"customer_id": str(customer.id), "file": (io.BytesIO(PRODUCTS.encode()), "p.csv")},
        content_type="multipart/form-data",
    ).json
    run_now(bo, uploaded["job"]["id"])
    import_id = uploaded["import"]["id"]
    body = {"import_id": import_id, "dataset": "products"}
    cast = client.post("/api/transforms", headers=headers, json=body).json
    run_now(bo, cast["job"]["id"])
    body = {"dataset": "products", "customer_id": customer.id}
    made = client.post("/api/exports", headers=headers, json=body).json
    run_now(bo, made["job"]["id"])
    export_id = made["export"]["id"]
    assert client.get(f"/api/exports/{export_id}/download").status_code == 200
    expected = [
        ("import.create", import_id, {"job_id": uploaded["job"]["id"], "file_name": "p.csv"}),
        ("transform.create", cast["transform"]["id"], {"import_id": import_id}),
        ("export.create", export_id, {"job_id": made["job"]["id"], "dataset": "products"}),
        ("export.download", export_id, {"dataset": "products"}),
    ]
    for action, target_id, details in expected:
        (row,) = audit_rows(bo, action, target_id)
        assert (row.actor_id, row.actor_email) == (operator.id, operator.email), action
        assert row.details["customer_id"] == customer.id
        assert details.items() <= row.details.items(), (action, row.details)


def test_bulk_commands_are_audited_with_the_shell_user(bulk_env, bo, customer, tmp_path):
    source = tmp_path / "p.csv"
    source.write_text(PRODUCTS)
    imported = backoffice(bulk_env, "import", str(source), "--customer", customer.code, "--json")
    import_id = json.loads(imported.stdout)["import"]["id"]
    cast = backoffice(bulk_env, "transform", str(import_id), "--dataset", "products", "--json")
    transform_id = json.loads(cast.stdout)["transform"]["id"]
    out = tmp_path / "out.csv"
    written = backoffice(
        bulk_env, "export", "products", "--customer", customer.code, "--output", str(out), "--json"
    )
    export_id = json.loads(written.stdout)["export"]["id"]
    for action, target_id in [
        ("import.create", import_id),
        ("transform.create", transform_id),
        ("export.create", export_id),
    ]:
        (row,) = audit_rows(bo, action, target_id)
        assert row.actor_id is None and row.actor_email.startswith("cli:"), action
        assert row.details["customer_id"] == customer.id
    (row,) = audit_rows(bo, "export.create", export_id)
    assert row.details["output"] == str(out)
