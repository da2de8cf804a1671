"""CSV imports: dialects, bad input, the HTTP routes, and purging. Jobs run for real."""

import hashlib
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app.audit import Actor
from app.customers import service as customers
from app.db.session import session_scope
from app.imports import service as imports
from app.jobs.worker import run_now
from tests.conftest import create_user, login, queue_import

ACTOR = Actor(None, "tests")


@pytest.fixture(scope="module")
def bulk_env(committed_env):
    return {**committed_env, "MAX_UPLOAD_BYTES": "100000"}


@pytest.fixture(scope="module")
def operator(bulk_app, bo):
    user = create_user(bo.session_factory, "operator")
    client = bulk_app.test_client()
    return client, {"X-CSRF-Token": login(client, user.email)}


def stage(bo, customer, content: bytes, **options):
    """Receive bytes as an upload and run the import job here; the import and job after."""
    import_id, job_id = queue_import(bo, customer, content, **options)
    outcome = run_now(bo, job_id)
    with bo.session_factory() as session:
        batch = imports.get_import(session, import_id)
        rows = (
            imports.staged_rows(session, batch, offset=0, limit=1000)
            if batch.status == "staged"
            else None
        )
        return batch, outcome, rows


def staging_tables(bo, import_id) -> list[str]:
    with bo.engines.connect("data") as conn:
        return list(
            conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'workspace' "
                    "AND tablename LIKE :name"
                ),
                {"name": f"import\\_{import_id}%"},
            ).scalars()
        )


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        (b"\xef\xbb\xbfsku,name\nA1,Widget\n", {}, [(2, {"sku": "A1", "name": "Widget"})]),
        (
            b"sku,name\r\nA1,Widget\r\nA2,Gadget",
            {},
            [(2, {"sku": "A1", "name": "Widget"}), (3, {"sku": "A2", "name": "Gadget"})],
        ),
        (
            b'sku,name\nA1,"two\nlines, and a ""quote"""\nA2,x\n',
            {},
            [
                (2, {"sku": "A1", "name": 'two\nlines, and a "quote"'}),
                (4, {"sku": "A2", "name": "x"}),
            ],
        ),
        (b"sku;price\nA1;1,50\n", {}, [(2, {"sku": "A1", "price": "1,50"})]),
        (b"sku\tname\nA1\tWid get\n", {}, [(2, {"sku": "A1", "name": "Wid get"})]),
        (b"sku|name\nA1|x\n", {"delimiter": "|"}, [(2, {"sku": "A1", "name": "x"})]),
        (b"sku,name\nA1,Caf\xe9\n", {"encoding": "latin-1"}, [(2, {"sku": "A1", "name": "Café"})]),
        (
            b"sku,name\nA1,\x80uro\n",
            {"encoding": "windows-1252"},
            [(2, {"sku": "A1", "name": "€uro"})],
        ),
        (b'sku,name,note\nA1,,""\n', {}, [(2, {"sku": "A1", "name": None, "note": ""})]),
        (
            b"sku,name\n\nA1,x\n\n\nA2,y\n\n",
            {},
            [(3, {"sku": "A1", "name": "x"}), (6, {"sku": "A2", "name": "y"})],
        ),
        (
            b"code\nA\n\\.\nB\n\\.",
            {},
            [(2, {"code": "A"}), (3, {"code": "\\."}), (4, {"code": "B"}), (5, {"code": "\\."})],
        ),
        (
            b'sku,name\r\n\r\nA1,"x\r\ny"\r\nA2,z\r\n\r\nA3,"p\r\nq\r\nr"\r\nA4,w\r\n',
            {},
            [
                (3, {"sku": "A1", "name": "x\r\ny"}),
                (5, {"sku": "A2", "name": "z"}),
                (7, {"sku": "A3", "name": "p\r\nq\r\nr"}),
                (10, {"sku": "A4", "name": "w"}),
            ],
        ),
    ],
    ids=[
        "bom",
        "crlf-no-final-newline",
        "quoted-newlines",
        "semicolon",
        "tab",
        "pipe",
        "latin-1",
        "windows-1252",
        "empty-vs-missing",
        "blank-lines",
        "copy-end-marker-is-data",
        "blank-crlf-lines-and-multiline-records",
    ],
)
def test_csv_dialects_are_staged_with_their_source_lines(bo, customer, content, options, expected):
    batch, outcome, rows = stage(bo, customer, content, **options)
    assert (batch.status, outcome.status) == ("staged", "succeeded"), batch.error
    assert [(r["line"], r["values"]) for r in rows] == expected
    assert batch.rows_staged == len(expected)


def test_a_header_only_file_is_a_valid_empty_import(bo, customer):
    batch, _outcome, rows = stage(bo, customer, b"sku,name\n")
    assert batch.status == "staged" and rows == [] and batch.header == ["sku", "name"]


def test_blank_and_repeated_header_names_are_made_unique(bo, customer):
    batch, _, rows = stage(bo, customer, b"sku,,SKU,sku\n1,2,3,4\n")
    assert batch.header == ["sku", "column_2", "SKU_2", "sku_3"]
    assert rows[0]["values"] == {"sku": "1", "column_2": "2", "SKU_2": "3", "sku_3": "4"}


@pytest.mark.parametrize(
    ("content", "options", "line", "message"),
    [
        (b"a,b\n1,2\n3,\xff\n", {}, 3, 'invalid byte sequence for encoding "UTF8": 0xff'),
        (b"a,b\n1,2\n3,4\x00\n", {}, 3, "NUL byte"),
        (b"a,b\n1,2\n\n1,2,3\n", {}, 4, "more fields than the header's 2"),
        (b"a,b\n1,2\n3\n", {}, 3, "fewer fields than the header's 2"),
        (b'a,b\n1,2\n3,"open\n4,5\n', {}, 3, "unterminated quoted field"),
        (b'a,b\n1,"two\nlines"\n3,4,5\n', {}, 4, "more fields than the header's 2"),
        (b"", {}, 1, "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, 3, "NUL byte"),
        (b"\xff\xfea\x00,\x00b\x00", {}, 1, "UTF-16 files are not supported"),
        (b"a,b\n1,\x81\n", {"encoding": "windows-1252"}, 2, "has no equivalent in encoding"),
    ],
    ids=[
        "bad-utf8",
        "nul",
        "extra-field",
        "missing-field",
        "unterminated-quote",
        "line-after-multiline",
        "empty",
        "binary",
        "utf-16",
        "undefined-cp1252",
    ],
)
def test_bad_files_fail_naming_the_line_and_leave_nothing_staged(
    bo, customer, content, options, line, message
):
    batch, outcome, _rows = stage(bo, customer, content, **options)
    assert batch.status == "failed" and outcome.status == "failed"
    assert batch.error["line"] == line, batch.error
    assert message in batch.error["message"]
    assert f"line {line}" in outcome.error
    assert staging_tables(bo, batch.id) == []
    with bo.session_factory() as session:
        job = session.get(imports.ImportBatch, batch.id)
        assert job.rows_staged is None


def test_unknown_encodings_and_delimiters_are_refused_before_any_work(bo, customer):
    for options, message in [
        ({"encoding": "utf-16"}, "not supported"),
        ({"encoding": "klingon"}, "unknown encoding"),
        ({"delimiter": ":"}, "delimiter must be"),
    ]:
        with bo.session_factory() as session, pytest.raises(imports.Refused, match=message):
            imports.receive(
                session,
                bo.references,
                customer_id=customer.id,
                created_by=None,
                file_name="x.csv",
                stream=io.BytesIO(b"a\n"),
                size_limit=100,
                **options,
            )


# -- over HTTP --------------------------------------------------------------------------------


def upload(client, headers, content: bytes, name="data.csv", **form):
    data = {"file": (io.BytesIO(content), name), **form}
    return client.post(
        "/api/imports", headers=headers, data=data, content_type="multipart/form-data"
    )


def test_upload_stage_and_read_rows_over_http(bo, customer, operator):
    client, headers = operator
    body = b"sku,name\n" + b"".join(b"S%d,N%d\n" % (n, n) for n in range(1, 251))
    response = upload(
        client, headers, body, name="../../etc/products.csv", customer_id=str(customer.id)
    )
    assert response.status_code == 202, response.json
    created = response.json
    assert created["job"]["status"] == "queued" and created["import"]["status"] == "pending"
    assert created["import"]["file_name"] == "products.csv", "a name, never a path"
    assert created["import"]["size_bytes"] == len(body)

    run_now(bo, created["job"]["id"])
    shown = client.get(f"/api/imports/{created['import']['id']}").json
    assert shown["import"]["status"] == "staged" and shown["import"]["rows_staged"] == 250
    assert shown["job"]["status"] == "succeeded"
    assert shown["import"]["sha256"] == hashlib.sha256(body).hexdigest()
    page = client.get(f"/api/imports/{created['import']['id']}/rows?offset=100&limit=2").json
    assert page["rows"] == [
        {"row": 101, "line": 102, "values": {"sku": "S101", "name": "N101"}, "truncated": {}},
        {"row": 102, "line": 103, "values": {"sku": "S102", "name": "N102"}, "truncated": {}},
    ]
    assert page["total"] == 250
    no_errors = client.get(f"/api/imports/{created['import']['id']}/errors").json
    assert (no_errors["errors"], no_errors["total"]) == ([], 0)
    listed = client.get(f"/api/imports?customer_id={customer.id}").json["imports"]
    assert created["import"]["id"] in [i["id"] for i in listed]


def test_a_failed_import_shows_its_error_over_http(bo, customer, operator):
    client, headers = operator
    created = upload(client, headers, b"a,b\n1,2,3\n", customer_id=str(customer.id)).json
    run_now(bo, created["job"]["id"])
    errors = client.get(f"/api/imports/{created['import']['id']}/errors").json["errors"]
    assert errors == [{"line": 2, "column": None, "message": "more fields than the header's 2"}]
    rows = client.get(f"/api/imports/{created['import']['id']}/rows")
    assert rows.status_code == 409 and rows.json["error"]["code"] == "not_staged"


def test_uploads_name_a_known_active_customer(bo, operator):
    client, headers = operator
    with session_scope(bo.session_factory) as session:
        asleep = customers.create_customer(
            session, ACTOR, code="ASLEEP", name="Zz", status="inactive"
        )
    for customer_id, code in [
        ("999999", "unknown_customer"),
        (str(asleep.id), "inactive_customer"),
        ("abc", "invalid_customer_id"),
    ]:
        response = upload(client, headers, b"a\n1\n", customer_id=customer_id)
        assert response.status_code == 422 and response.json["error"]["code"] == code


def test_uploads_over_the_limit_are_refused_and_nothing_is_kept(bo, customer, operator):
    client, headers = operator
    with bo.session_factory() as session:
        before = len(imports.list_imports(session, limit=1000))
    big = b"a\n" + b"1\n" * 60_000  # 120 kB against a 100 kB limit: refused from the headers
    response = upload(client, headers, big, customer_id=str(customer.id))
    assert response.status_code == 413 and response.json["error"]["code"] == "upload_too_large"
    # Within the multipart slack, but over the limit: refused while storing, rolled back.
    near = b"a\n" + b"1\n" * 52_000
    response = upload(client, headers, near, customer_id=str(customer.id))
    assert response.status_code == 413 and response.json["error"]["code"] == "upload_too_large"
    with bo.session_factory() as session:
        assert len(imports.list_imports(session, limit=1000)) == before
    missing = client.post(
        "/api/imports",
        headers=headers,
        data={"customer_id": "1"},
        content_type="multipart/form-data",
    )
    assert missing.status_code == 422 and missing.json["error"]["code"] == "missing_field"


def test_viewers_cannot_import(bulk_app, bo, customer):
    viewer = create_user(bo.session_factory, "viewer")
    client = bulk_app.test_client()
    headers = {"X-CSRF-Token": login(client, viewer.email)}
    assert upload(client, headers, b"a\n1\n", customer_id=str(customer.id)).status_code == 403
    assert client.get("/api/imports").status_code == 200


def test_purge_drops_staged_rows_and_keeps_the_record(bo, customer):
    batch, _, _ = stage(bo, customer, b"a\n1\n")
    assert staging_tables(bo, batch.id) == [f"import_{batch.id}"]
    with session_scope(bo.session_factory) as session:
        imports.purge(session, imports.get_import(session, batch.id))
    assert staging_tables(bo, batch.id) == []
    with bo.session_factory() as session:
        assert imports.get_import(session, batch.id).status == "purged"


def test_purging_older_imports_drops_only_theirs_and_a_dry_run_nothing(bo, customer):
    """`imports.purge_older_than`: what `backoffice imports purge --older-than` does."""
    old, _, _ = stage(bo, customer, b"a\n1\n")
    recent, _, _ = stage(bo, customer, b"a\n2\n")
    with bo.engines.begin("data") as conn:  # older than any other test's imports
        conn.execute(
            text("UPDATE workspace.imports SET created_at = '2001-01-01' WHERE id = :id"),
            {"id": old.id},
        )
    before = datetime(2002, 1, 1, tzinfo=UTC)
    with session_scope(bo.session_factory) as session:
        listed = imports.purge_older_than(session, before, dry_run=True)
        assert [batch.id for batch in listed] == [old.id]
    assert staging_tables(bo, old.id) == [f"import_{old.id}"], "a dry run touches nothing"
    with session_scope(bo.session_factory) as session:
        purged = imports.purge_older_than(session, before, dry_run=False)
        assert [(batch.id, batch.status) for batch in purged] == [(old.id, "purged")]
    assert staging_tables(bo, old.id) == [] and staging_tables(bo, recent.id) != []
    with session_scope(bo.session_factory) as session:
        assert imports.purge_older_than(session, before, dry_run=False) == []
        assert imports.get_import(session, recent.id).status == "staged"


def test_a_customer_with_imports_cannot_be_deleted(bo):
    with session_scope(bo.session_factory) as session:
        owner = customers.create_customer(session, ACTOR, code="KEEPER", name="Keeper")
    stage(bo, owner, b"a\n1\n")
    with bo.session_factory() as session, pytest.raises(imports.Refused) as info:
        customers.delete_customer(session, ACTOR, customers.get_customer(session, owner.id))
    assert info.value.code == "customer_has_data"
    assert "1 row(s) in workspace.imports" in info.value.message
    assert "1 row(s) in workspace.jobs" in info.value.message


MiB = 1 << 20


@pytest.mark.parametrize(
    "record",
    [
        b"S1," + b"x" * (17 * MiB) + b"\n",  # one long line
        b'S1,"' + (b"y" * MiB + b"\n") * 17 + b'"\n',  # a quoted field over many lines
    ],
    ids=["one-line", "quoted-lines"],
)
def test_a_record_over_16_mib_is_refused_naming_the_line_it_starts_on(bo, customer, record):
    content = b"sku,name\nS0,short\n\n" + record + b"S2,after\n"
    batch, outcome, _rows = stage(bo, customer, content)
    assert batch.status == "failed" and outcome.status == "failed"
    assert batch.error["line"] == 4, batch.error
    assert "longer than 16 MiB" in batch.error["message"]
    assert staging_tables(bo, batch.id) == []


def test_a_10_mib_record_still_loads_with_its_neighbours_lines(bo, customer):
    value = b"v" * (10 * MiB)
    content = b"sku,name\nS1," + value + b'\nS2,"two\nlines"\nS3,three\n'
    batch, outcome, rows = stage(bo, customer, content)
    assert outcome.status == "succeeded" and batch.rows_staged == 3
    shown = rows[0]["values"]["name"]  # a page shows it cut, naming its whole length
    assert shown == value.decode()[: len(shown)] and rows[0]["truncated"]["name"]["length"] == (
        10 * MiB
    )
    assert [(r["line"], r["values"]["sku"]) for r in rows] == [(2, "S1"), (3, "S2"), (5, "S3")]
