"""A page of staged rows is bounded in size: a few records of megabytes each make no answer of
tens of megabytes. Long cells are cut in the database, named with their whole length and where
their whole value is; pages of very many columns get fewer rows."""

from app.imports import service as imports
from tests.bulk import run_import
from tests.conftest import create_user, login

BIG = 3 * 1024 * 1024  # characters in each long cell


def test_long_cells_are_cut_with_their_length_and_a_link_to_the_whole_value(bulk_app, bo, customer):
    rows = "".join(f"S{n},{'é' * BIG}\n" for n in range(4))
    import_id = run_import(bo, customer, "sku,notes\n" + rows + "S9,short\n")
    client = bulk_app.test_client()
    login(client, create_user(bo.session_factory, "viewer").email)

    answer = client.get(f"/api/imports/{import_id}/rows?limit=100")
    assert answer.status_code == 200
    assert len(answer.data) < 1024 * 1024, f"{len(answer.data):,} bytes"
    first, last = answer.json["rows"][0], answer.json["rows"][-1]
    assert len(first["values"]["notes"]) == imports.CELL_CHARS
    cut = first["truncated"]["notes"]
    assert cut["length"] == BIG and cut["column"] == 2
    assert last["values"]["notes"] == "short" and last["truncated"] == {}

    whole = client.get(cut["url"])
    assert whole.status_code == 200 and whole.mimetype == "text/plain"
    assert whole.get_data(as_text=True) == "é" * BIG

    page = client.get(f"/imports/{import_id}")
    assert page.status_code == 200 and len(page.data) < 1024 * 1024
    assert f"whole value, {BIG:,} characters" in page.get_data(as_text=True)
    download = client.get(f"/imports/{import_id}/rows/1/columns/2")
    assert download.status_code == 200 and len(download.data) == len("é".encode()) * BIG
    assert client.get(f"/api/imports/{import_id}/rows/99/columns/2").status_code == 404
    assert client.get(f"/api/imports/{import_id}/rows/1/columns/9").status_code == 404


def test_a_page_of_very_many_columns_gets_fewer_rows(bulk_app, bo, customer):
    header = ",".join(f"h{n}" for n in range(1000))
    line = ",".join("v" for _ in range(1000))
    import_id = run_import(bo, customer, header + "\n" + (line + "\n") * 30)
    client = bulk_app.test_client()
    login(client, create_user(bo.session_factory, "viewer").email)
    answer = client.get(f"/api/imports/{import_id}/rows?limit=1000")
    assert answer.status_code == 200
    assert answer.json["limit"] == imports.PAGE_CHARS // (1000 * imports.MIN_CELL_CHARS)
    assert len(answer.json["rows"]) == answer.json["limit"]
