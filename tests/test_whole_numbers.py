"""Every whole number read from an address or a form is ASCII digits: "²" (a digit to
`str.isdigit`, not to `int`), fullwidth digits, "1_000" or "+5" get a 400 that says which
parameter, on the pages and in the API, never a 500."""

import pytest

from tests.bulk import PRODUCT_HEADER, run_import, run_transform
from tests.conftest import create_user, login

NOT_NUMBERS = ("²", "\uff11\uff12", "1_000", "+5", " 7", "1e3")  # \uff11: fullwidth 1


@pytest.fixture
def admin_client(bulk_app, bo):
    client = bulk_app.test_client()
    login(client, create_user(bo.session_factory, "admin").email)
    return client


def test_pages_answer_400_for_a_number_that_is_not_ascii_digits(admin_client, bo, customer):
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\n")
    transform, _ = run_transform(bo, import_id)
    pages = [
        ("/customers", "page"),
        (f"/imports/{import_id}", "page"),
        (f"/transforms/{transform.id}", "page"),
        ("/audit", "actor"),
        ("/audit", "before"),
        ("/datasets/products", "customer"),
    ]
    for path, name in pages:
        for value in (*NOT_NUMBERS, "9" * 30):
            answer = admin_client.get(path, query_string={name: value})
            assert answer.status_code == 400, (path, name, value, answer.status_code)
            assert f"{name} must be a whole number" in answer.get_data(as_text=True)
        assert admin_client.get(path, query_string={name: "1"}).status_code == 200, path


def test_the_api_answers_400_for_a_number_that_is_not_ascii_digits(admin_client):
    for path, name in (("/api/customers", "limit"), ("/api/audit", "before_id")):
        for value in NOT_NUMBERS:
            answer = admin_client.get(path, query_string={name: value})
            assert answer.status_code == 400, (path, value, answer.status_code)
            assert answer.json["error"] == {
                "code": "invalid_query",
                "message": f"{name} must be a whole number",
            }
        assert admin_client.get(path, query_string={name: "5"}).status_code == 200
