"""`flask numbers ...` against a fresh database."""

import pytest

A, B = "+447700900111", "+447700900222"


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_numbers_list_add_remove(runner):
    listed = runner.invoke(args=["numbers", "list"])
    assert listed.exit_code == 0
    assert "+447700900001\tGB\t0 active chat(s)" in listed.output

    added = runner.invoke(args=["numbers", "add", "07700 900010", "+14155550100"])
    assert added.exit_code == 0, added.output
    assert "added +447700900010" in added.output and "added +14155550100" in added.output
    assert "+14155550100\tUS" in runner.invoke(args=["numbers", "list"]).output

    removed = runner.invoke(args=["numbers", "remove", "+447700900010"])
    assert removed.exit_code == 0
    assert "+447700900010" not in runner.invoke(args=["numbers", "list"]).output


def test_numbers_add_refuses_bad_and_duplicate_numbers(runner):
    bad = runner.invoke(args=["numbers", "add", "banana"])
    assert bad.exit_code != 0
    assert "not a phone number" in bad.output
    dup = runner.invoke(args=["numbers", "add", "+447700900001"])
    assert dup.exit_code != 0
    assert "already in the pool" in dup.output


def test_a_number_in_use_cannot_be_removed(runner, client, api_headers):
    chat = client.post("/api/chats", json={"a": A, "b": B}, headers=api_headers).json
    refused = runner.invoke(args=["numbers", "remove", chat["proxy_number"]])
    assert refused.exit_code != 0
    assert "is in use by 1 active chat: it can be removed once it has ended" in refused.output
    client.post(f"/api/chats/{chat['id']}/end", headers=api_headers)
    assert runner.invoke(args=["numbers", "remove", chat["proxy_number"]]).exit_code == 0


def test_removing_an_unknown_number_says_so(runner):
    result = runner.invoke(args=["numbers", "remove", "+447700900555"])
    assert result.exit_code != 0
    assert "not in the pool" in result.output
