"""Hostile request input gets a clear 400, never a 500: NUL characters, absurdly nested JSON."""

import io

import pytest


def assert_refused(response, code: str) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.json["error"]["code"] == code, response.json


@pytest.mark.parametrize(
    "path",
    [
        "/api/customers?q=a%00b",
        "/api/audit?action=%00",
        "/api/jobs?a%00b=1",
        "/api/customers/%00",
    ],
)
def test_a_nul_in_the_url_is_refused(client, as_admin, path):
    response = client.get(path)
    assert_refused(response, "invalid_input")
    assert "NUL" in response.json["error"]["message"]


def test_a_nul_anywhere_in_a_json_body_is_refused(client, as_admin):
    _admin, headers = as_admin
    top = client.post("/api/customers", json={"code": "c\u0000", "name": "x"}, headers=headers)
    assert_refused(top, "invalid_input")
    nested = client.post(
        "/api/transforms",
        json={"import_id": 1, "dataset": "products", "mapping": {"sku": "a\u0000"}},
        headers=headers,
    )
    assert_refused(nested, "invalid_input")
    key = client.post(
        "/api/transforms",
        json={"import_id": 1, "dataset": "products", "mapping": {"s\u0000ku": "sku"}},
        headers=headers,
    )
    assert_refused(key, "invalid_input")


def test_a_nul_in_a_form_body_is_refused(client, as_admin):
    _admin, headers = as_admin
    urlencoded = client.post("/api/customers", data={"name": "a\x00b"}, headers=headers)
    assert_refused(urlencoded, "invalid_input")
    multipart = client.post(
        "/api/imports",
        data={"file": (io.BytesIO(b"sku\n1\n"), "a.csv"), "customer_id": "1", "encoding": "\x00"},
        headers=headers,
    )
    assert_refused(multipart, "invalid_input")
    file_name = client.post(
        "/api/imports",
        data={"file": (io.BytesIO(b"sku\n1\n"), "a\x00.csv"), "customer_id": "1"},
        headers=headers,
    )
    assert_refused(file_name, "invalid_input")


def test_a_nul_before_login_is_refused_without_a_database_query(client):
    response = client.post("/api/auth/login", json={"email": "a@b.c\u0000", "password": "x"})
    assert_refused(response, "invalid_input")


@pytest.mark.parametrize("body", ["[" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_deeply_nested_json_is_refused(client, as_admin, body):
    _admin, headers = as_admin
    response = client.post(
        "/api/customers",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_refused(response, "invalid_json")


def test_deeply_nested_json_is_refused_before_login(client):
    response = client.post(
        "/api/auth/login", data="[" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert_refused(response, "invalid_json")


def test_json_nested_a_few_hundred_levels_is_still_read(client, as_admin):
    """Deep but parseable: the NUL check walks it without recursion, the route answers."""
    _admin, headers = as_admin
    deep = {"code": "deep", "name": "Deep", "x": [[[[]]]]}
    value: list = []
    for _ in range(500):
        value = [value]
    deep["x"] = value
    response = client.post("/api/customers", json=deep, headers=headers)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "invalid_field"
