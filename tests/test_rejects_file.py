"""Rejected rows go back as a file: one line per rejected source row, in file order, with the
import's columns and `_line`, `_column`, `_reason`; fixed in a spreadsheet and imported again,
it maps like the original and the fixed rows land. Through the API, the page and the command."""

import csv
import io

from sqlalchemy import select

from app.models.primary.config import AuditEntry
from tests.bulk import reference_rows, run_import, run_transform
from tests.conftest import create_user, login
from tests.harness import backoffice

FILE = (
    "sku,name,unit_price,currency,notes\n"
    "P1,Kettle,9.99,EUR,fine\n"
    'P2,"Toaster, 2 slots",abc,EUR,"a price\nover two lines"\n'  # lines 3-4
    "P3,Grill,12,EURO,\n"  # line 5
    "P4,,-1,EUR,two refusals\n"  # line 6
    "P5,Fan,15,EUR,fine\n"
)


def test_the_rejects_file_round_trip(bulk_app, bo, customer, committed_env, tmp_path):
    import_id = run_import(bo, customer, FILE)
    transform, _ = run_transform(bo, import_id)
    assert transform.counts["rejected"] == 3
    client = bulk_app.test_client()
    viewer = create_user(bo.session_factory, "viewer")
    login(client, viewer.email)

    answer = client.get(f"/api/transforms/{transform.id}/rejects.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0] == [
        "sku",
        "name",
        "unit_price",
        "currency",
        "notes",
        "_line",
        "_column",
        "_reason",
    ]
    assert [(r[0], r[5], r[6]) for r in rows[1:]] == [
        ("P2", "3", "unit_price"),
        ("P3", "5", "currency"),
        ("P4", "6", "name; unit_price"),
    ]
    assert rows[1][1] == "Toaster, 2 slots" and rows[1][4] == "a price\nover two lines"
    assert rows[3][7].startswith("required; must be at least 0")
    with bo.session_factory() as session:
        audited = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "transform.rejects_download",
                AuditEntry.target_id == str(transform.id),
            )
        ).all()
    assert [a.actor_id for a in audited] == [viewer.id]

    # Fixed in a spreadsheet: two of the three rows, then imported and transformed again.
    rows[1][2], rows[2][3] = "19.99", "EUR"
    fixed = io.StringIO()
    csv.writer(fixed, lineterminator="\n").writerows(rows)
    again = run_import(bo, customer, fixed.getvalue())
    second, _ = run_transform(bo, again)  # the default mapping ignores the _ columns
    assert (second.counts["inserted"], second.counts["rejected"]) == (2, 1)
    assert second.extra_headers == ["notes", "_line", "_column", "_reason"]
    skus = [r["sku"] for r in reference_rows(bo, "products", customer)]
    assert skus == ["P1", "P2", "P3", "P5"]

    page = client.get(f"/transforms/{transform.id}")
    text = page.get_data(as_text=True)
    assert "Download rejected rows" in text and "<td>P3</td>" in text, "each row's key shown"
    assert client.get(f"/transforms/{transform.id}/rejects.csv").data == answer.data

    out = tmp_path / "rejects.csv"
    printed = backoffice(
        committed_env, "transforms", "rejects", str(transform.id), "--output", str(out)
    )
    assert printed.returncode == 0, printed.stderr
    assert f"3 rejected row(s) of transform {transform.id} written to" in printed.stdout
    assert out.read_bytes() == answer.data


def test_no_rejects_file_once_the_staged_rows_are_purged(bulk_app, bo, customer):
    from app.db.session import session_scope
    from app.imports import service as imports

    import_id = run_import(bo, customer, FILE)
    transform, _ = run_transform(bo, import_id)
    with session_scope(bo.session_factory) as session:
        imports.purge(session, imports.get_import(session, import_id))
    client = bulk_app.test_client()
    login(client, create_user(bo.session_factory, "viewer").email)
    answer = client.get(f"/api/transforms/{transform.id}/rejects.csv")
    assert answer.status_code == 409 and answer.json["error"]["code"] == "not_staged"
