"""Lookups and paging on GET /api/chats: by the caller's reference, a checked limit, and the total."""

from __future__ import annotations

import pytest

A = "+447700900111"


def make(client, headers, n: int, reference: str | None = None, start: int = 0) -> list[dict]:
    made = []
    for i in range(start, start + n):
        body = {"a": f"+4477009005{i:02d}", "b": f"+4477009006{i:02d}"}
        if reference:
            body["reference"] = reference
        resp = client.post("/api/chats", json=body, headers=headers)
        assert resp.status_code == 201
        made.append(resp.json)
    return made


def test_find_a_chat_by_its_reference(client, api_headers):
    make(client, api_headers, 3)
    [mine] = make(client, api_headers, 1, reference="booking-77", start=10)
    make(client, api_headers, 1, reference="booking-777", start=20)  # exact match only, not a prefix
    resp = client.get("/api/chats?reference=booking-77", headers=api_headers)
    assert resp.status_code == 200
    assert [c["id"] for c in resp.json["chats"]] == [mine["id"]]
    assert resp.json["total"] == 1
    assert client.get("/api/chats?reference=nobody", headers=api_headers).json == {
        "chats": [], "total": 0, "limit": 100, "offset": 0}


def test_reference_combines_with_status(client, api_headers):
    first, second = make(client, api_headers, 2, reference="ride-1")
    client.post(f"/api/chats/{first['id']}/end", headers=api_headers)
    ended = client.get("/api/chats?reference=ride-1&status=ended", headers=api_headers).json
    active = client.get("/api/chats?reference=ride-1&status=active", headers=api_headers).json
    assert [c["id"] for c in ended["chats"]] == [first["id"]] and ended["total"] == 1
    assert [c["id"] for c in active["chats"]] == [second["id"]] and active["total"] == 1


def test_list_pages_carry_the_total(client, api_headers):
    chats = make(client, api_headers, 5)
    page1 = client.get("/api/chats?limit=2", headers=api_headers).json
    page3 = client.get("/api/chats?limit=2&offset=4", headers=api_headers).json
    assert (page1["total"], page1["limit"], page1["offset"], len(page1["chats"])) == (5, 2, 0, 2)
    assert (page3["total"], len(page3["chats"])) == (5, 1)
    everything = client.get("/api/chats?limit=200", headers=api_headers).json
    assert {c["id"] for c in everything["chats"]} == {c["id"] for c in chats}


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"),
    ("limit=1.5", "limit"), ("offset=-1", "offset"), ("offset=x", "offset"),
])
def test_limit_outside_1_to_200_and_a_bad_offset_are_400(client, api_headers, query, field):
    resp = client.get(f"/api/chats?{query}", headers=api_headers)
    assert resp.status_code == 400
    assert resp.json["field"] == field and resp.json["error"]


def test_limits_at_the_edges_are_accepted(client, api_headers):
    make(client, api_headers, 2)
    assert len(client.get("/api/chats?limit=1", headers=api_headers).json["chats"]) == 1
    assert client.get("/api/chats?limit=200", headers=api_headers).status_code == 200
