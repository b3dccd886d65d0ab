"""Bad input gets a clear 4xx in the standard error shape, and nothing is stored half-way."""

from __future__ import annotations

import pytest

from tests.conftest import auth


def count(client, key, **params) -> int:
    return len(client.get("/v1/memories", headers=auth(key), params={"limit": 200, **params}).json()["items"])


def assert_error(response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert fragment.lower() in error["message"].lower(), error["message"]
    return error


@pytest.mark.parametrize("content", ["", "   ", "\n\t "])
def test_empty_or_whitespace_content(client, key, content):
    assert_error(client.post("/v1/memories", headers=auth(key), json={"content": content}), 422, "empty")


def test_content_over_the_size_limit_is_413(client, key, settings):
    too_long = "x" * (settings.max_content_chars + 1)
    error = assert_error(client.post("/v1/memories", headers=auth(key), json={"content": too_long}), 413)
    assert error["details"]["limit"] == settings.max_content_chars


def test_nul_bytes_are_rejected_not_500(client, key):
    assert_error(client.post("/v1/memories", headers=auth(key), json={"content": "a\u0000b"}), 422, "NUL")
    assert_error(client.post("/v1/memories", headers=auth(key),
                             json={"content": "ok", "metadata": {"k": "v\u0000"}}), 422, "NUL")
    assert_error(client.post("/v1/memories", headers=auth(key), json={"content": "ok", "user_id": "u\u0000"}), 422)


def test_invalid_surrogates_are_rejected(client, key):
    raw = b'{"content": "broken \\ud800 text", "session_id": "surrogates"}'
    response = client.post("/v1/memories", headers={**auth(key), "Content-Type": "application/json"}, content=raw)
    assert response.status_code == 422, response.text
    assert count(client, key, session_id="surrogates") == 0


def test_malformed_json_is_400(client, key):
    response = client.post("/v1/memories", headers={**auth(key), "Content-Type": "application/json"},
                           content=b'{"content": ')
    assert_error(response, 400, "json")


def test_unknown_kind_and_fields(client, key):
    error = assert_error(client.post("/v1/memories", headers=auth(key), json={"content": "x", "kind": "dream"}), 422)
    assert "kind" in error["message"]
    assert_error(client.post("/v1/memories", headers=auth(key), json={"content": "x", "colour": "red"}), 422)
    assert_error(client.post("/v1/memories", headers=auth(key), json={"content": "x", "importance": 3}), 422)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
def test_bad_uuids(client, key, bad_id):
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/v1/memories/{bad_id}", headers=auth(key))
        assert_error(response, 422, "uuid")
    assert_error(client.patch(f"/v1/memories/{bad_id}", headers=auth(key), json={"importance": 0.1}), 422, "uuid")


def test_unknown_uuid_is_404(client, key):
    assert_error(client.get("/v1/memories/8f1d1c0e-9d3c-4a53-9d55-111111111111", headers=auth(key)), 404)


def test_malformed_and_foreign_cursors(client, key, make_tenant):
    client.post("/v1/memories/batch", headers=auth(key), json={"items": [{"content": f"c{i}"} for i in range(3)]})
    cursor = client.get("/v1/memories", headers=auth(key), params={"limit": 1}).json()["next_cursor"]
    assert cursor
    for bad in ("garbage", "abc.def", cursor[:-3] + "zzz", cursor.replace(".", "x")):
        assert_error(client.get("/v1/memories", headers=auth(key), params={"cursor": bad}), 400, "cursor")
    other = make_tenant()
    assert_error(client.get("/v1/memories", headers=auth(other), params={"cursor": cursor}), 400, "cursor")
    # The same tenant reusing a cursor with other filters is told so too.
    assert_error(client.get("/v1/memories", headers=auth(key), params={"cursor": cursor, "kind": "semantic"}), 400)


def test_embedding_of_wrong_dimension(client, key):
    error = assert_error(
        client.post("/v1/memories", headers=auth(key), json={"content": "x", "embedding": [0.1, 0.2, 0.3]}),
        422, "384",
    )
    assert error["code"] == "embedding_dimension_mismatch"
    nan = b'{"content": "x", "embedding": [' + b",".join([b"NaN"] * 384) + b"]}"
    response = client.post("/v1/memories", headers={**auth(key), "Content-Type": "application/json"}, content=nan)
    assert 400 <= response.status_code < 500, response.text


def test_batch_with_one_bad_item_stores_none_and_names_it(client, key):
    items = [{"content": f"good {i}", "session_id": "batch-bad"} for i in range(5)]
    items[3] = {"content": "bad \u0000", "session_id": "batch-bad"}
    error = assert_error(client.post("/v1/memories/batch", headers=auth(key), json={"items": items}), 422, "item 3")
    assert error["details"]["index"] == 3
    assert count(client, key, session_id="batch-bad") == 0
    items[3] = {"content": "bad dimension", "embedding": [1.0], "session_id": "batch-bad"}
    assert_error(client.post("/v1/memories/batch", headers=auth(key), json={"items": items}), 422, "item 3")
    assert count(client, key, session_id="batch-bad") == 0


def test_batch_size_limits(client, key, settings):
    assert_error(client.post("/v1/memories/batch", headers=auth(key), json={"items": []}), 422)
    too_many = {"items": [{"content": "x"}] * (settings.max_batch_items + 1)}
    assert_error(client.post("/v1/memories/batch", headers=auth(key), json=too_many), 413, "1000")


def test_update_validation_keeps_the_stored_memory(client, key):
    mid = client.post("/v1/memories", headers=auth(key), json={"content": "stable"}).json()["id"]
    assert_error(client.patch(f"/v1/memories/{mid}", headers=auth(key), json={"content": "  "}), 422)
    assert_error(client.patch(f"/v1/memories/{mid}", headers=auth(key), json={"content": None}), 422)
    assert_error(client.patch(f"/v1/memories/{mid}", headers=auth(key), json={"embedding": [1, 2]}), 422)
    assert_error(client.patch(f"/v1/memories/{mid}", headers=auth(key),
                              json={"valid_from": "2024-01-02T00:00:00Z", "valid_to": "2024-01-01T00:00:00Z"}), 422)
    assert client.get(f"/v1/memories/{mid}", headers=auth(key)).json()["content"] == "stable"


def test_search_bad_input(client, key):
    assert_error(client.post("/v1/search", headers=auth(key), json={"query": ""}), 422)
    assert_error(client.post("/v1/search", headers=auth(key), json={"query": "   "}), 422)
    assert_error(client.post("/v1/search", headers=auth(key), json={"query": "x", "limit": 0}), 422)
    assert_error(client.post("/v1/search", headers=auth(key), json={"query": "x\u0000"}), 422)


def test_missing_invalid_and_revoked_keys_are_401(client, make_tenant):
    assert_error(client.get("/v1/memories"), 401, "missing")
    assert_error(client.get("/v1/memories", headers={"Authorization": "Basic abc"}), 401)
    assert_error(client.get("/v1/memories", headers=auth("msk_not_a_real_key")), 401, "invalid")
    admin = make_tenant(("admin",))
    created = client.post("/v1/admin/keys", headers=auth(admin), json={"scopes": ["read"]}).json()
    assert client.get("/v1/memories", headers=auth(created["key"])).status_code == 200
    assert client.delete(f"/v1/admin/keys/{created['id']}", headers=auth(admin)).status_code == 200
    assert_error(client.get("/v1/memories", headers=auth(created["key"])), 401, "revoked")


def test_keys_without_the_scope_are_403(client, make_tenant):
    reader = make_tenant(("read",))
    assert_error(client.post("/v1/memories", headers=auth(reader), json={"content": "x"}), 403, "write")
    assert_error(client.post("/v1/erase", headers=auth(reader), json={"user_id": "u"}), 403)
    assert_error(client.post("/v1/admin/keys", headers=auth(reader), json={"scopes": ["read"]}), 403, "admin")
    writer = make_tenant(("write",))
    assert client.post("/v1/memories", headers=auth(writer), json={"content": "x"}).status_code == 201
    assert_error(client.post("/v1/admin/tenants", headers=auth(writer), json={"name": "nope"}), 403, "root")
    admin = make_tenant(("admin",))
    assert_error(client.post("/v1/admin/keys", headers=auth(admin), json={"scopes": ["root"]}), 403, "root")


def test_secrets_are_stored_hashed(client, make_tenant, engine):
    from sqlalchemy import select

    from memsvc.db import session_scope
    from memsvc.models import ApiKey

    secret = make_tenant()
    with session_scope(engine) as session:
        stored = list(session.scalars(select(ApiKey.key_hash)))
    assert secret not in stored and all(len(h) == 64 for h in stored)


def test_a_body_announced_over_the_limit_is_413_before_it_is_read() -> None:
    import asyncio

    from api.limits import BodyLimit

    reached: list[str] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        reached.append(scope["path"])

    async def call(length: bytes) -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            raise AssertionError("the body must not be read")

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/v1/memories", "headers": [(b"content-length", length)]}
        await BodyLimit(app, max_body=100)(scope, receive, send)
        return sent

    sent = asyncio.run(call(b"101"))
    assert sent[0]["status"] == 413 and b"over 100 bytes" in sent[1]["body"] and reached == []
    assert asyncio.run(call(b"100")) == [] and reached == ["/v1/memories"]


NUL = "a\x00b"
EDGE = "9999-12-31T23:59:59-14:00"  # a valid ISO time that is past year 9999 in UTC


@pytest.mark.parametrize(("path", "param"), [
    ("/v1/memories", "user_id"), ("/v1/memories", "agent_id"), ("/v1/memories", "session_id"),
    ("/v1/memories", "tag"), ("/v1/jobs", "kind"), ("/v1/jobs", "status"),
])
def test_nul_in_a_query_parameter_is_422(client, key, path, param):
    error = assert_error(client.get(path, headers=auth(key), params={param: NUL}), 422, "NUL")
    assert param in error["message"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/erase", {"user_id": NUL}, "user_id"),
    ("/v1/erase", {"session_id": NUL}, "session_id"),
    ("/v1/consolidate", {"user_id": NUL}, "user_id"),
    ("/v1/consolidate", {"session_id": NUL}, "session_id"),
    ("/v1/admin/keys", {"scopes": ["read"], "name": NUL}, "name"),
    ("/v1/admin/keys", {"scopes": ["read"], "user_ids": [NUL]}, "user_ids"),
    ("/v1/search", {"query": "x", "user_id": NUL}, "user_id"),
    ("/v1/search", {"query": "x", "tags": [NUL]}, "tags"),
    ("/v1/context", {"query": "x", "budget_tokens": 100, "session_id": NUL}, "session_id"),
])
def test_nul_in_a_body_field_is_422(client, key, path, body, field):
    error = assert_error(client.post(path, headers=auth(key), json=body), 422, "NUL")
    assert field in error["message"]


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("post", "/v1/memories", {"content": "x", "occurred_at": EDGE}, "occurred_at"),
    ("post", "/v1/memories", {"content": "x", "valid_to": EDGE}, "valid_to"),
    ("post", "/v1/memories", {"content": "x", "valid_from": "0001-01-01T00:00:00+14:00"}, "valid_from"),
    ("post", "/v1/memories/batch", {"items": [{"content": "x", "occurred_at": EDGE}]}, "occurred_at"),
    ("patch", "/v1/memories/{id}", {"valid_to": EDGE}, "valid_to"),
    ("post", "/v1/search", {"query": "x", "as_of": EDGE}, "as_of"),
    ("post", "/v1/search", {"query": "x", "occurred_after": EDGE}, "occurred_after"),
])
def test_times_outside_the_calendar_are_422(client, key, method, path, body, field):
    mid = client.post("/v1/memories", headers=auth(key), json={"content": "edge"}).json()["id"]
    response = getattr(client, method)(path.format(id=mid), headers=auth(key), json=body)
    error = assert_error(response, 422, "9999")
    assert field in error["message"]


def test_times_at_the_edges_of_the_calendar_are_stored_and_read(client, key):
    body = {"content": "far future", "occurred_at": "9999-12-31T09:59:59-14:00", "valid_to": "9999-12-31T23:59:59Z",
            "valid_from": "0001-01-01T00:00:00Z", "session_id": "calendar-edges"}
    created = client.post("/v1/memories", headers=auth(key), json=body)
    assert created.status_code == 201, created.text
    assert created.json()["occurred_at"].startswith("9999-12-31T23:59:59")
    assert client.get(f"/v1/memories/{created.json()['id']}", headers=auth(key)).status_code == 200
    assert client.post("/v1/search", headers=auth(key), json={"query": "far future", "session_id": "calendar-edges",
                                                               "as_of": "9999-12-31T23:59:58Z"}).status_code == 200


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[1, NaN]", b'{"deep": -1e999}'])
@pytest.mark.parametrize("path", ["/v1/memories", "/v1/memories/batch", "/v1/memories/{id}"])
def test_metadata_numbers_must_be_finite(client, key, number, path):
    mid = client.post("/v1/memories", headers=auth(key), json={"content": "finite"}).json()["id"]
    item = b'{"content": "x", "session_id": "nonfinite", "metadata": {"score": ' + number + b"}}"
    body = b'{"items": [' + item + b"]}" if path.endswith("batch") else item
    method = "PATCH" if "{id}" in path else "POST"
    if method == "PATCH":
        body = b'{"content": "changed", "metadata": {"score": ' + number + b"}}"
    response = client.request(method, path.format(id=mid), content=body,
                              headers={**auth(key), "Content-Type": "application/json"})
    error = assert_error(response, 422, "finite")
    assert "metadata.score" in error["message"]
    assert count(client, key, session_id="nonfinite") == 0
    assert client.get(f"/v1/memories/{mid}", headers=auth(key)).json()["content"] == "finite"


def test_deeply_nested_metadata_is_422(client, key):
    depth = 600
    body = b'{"content": "x", "metadata": {"k": ' + b"[" * depth + b"]" * depth + b"}}"
    response = client.post("/v1/memories", content=body, headers={**auth(key), "Content-Type": "application/json"})
    assert_error(response, 422, "nested")


@pytest.mark.parametrize("depth", [100_000, 600])
def test_a_deeply_nested_chat_body_is_400(client, key, depth):
    body = (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": '
            + b"[" * depth + b"]" * depth + b"}}")
    response = client.post("/v1/chat/completions", content=body,
                           headers={**auth(key), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "nested" in response.json()["error"]["message"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"1e999"])
def test_a_chat_body_with_a_non_finite_number_is_400(client, key, number):
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": ' + number + b"}"
    response = client.post("/v1/chat/completions", content=body,
                           headers={**auth(key), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "finite" in response.json()["error"]["message"]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/policy", b'{"tau0_days": Infinity}'), ("/v1/policy", b'{"ttl_days": 1e999}'),
    ("/v1/policy", b'{"tau0_days": NaN}'),
])
def test_policy_numbers_must_be_finite(client, key, path, body):
    response = client.put(path, content=body, headers={**auth(key), "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("path", ["/v1/memories", "/v1/search", "/v1/policy"])
def test_a_body_nested_past_the_recursion_limit_says_what_to_fix(client, key, path):
    # FastAPI's own JSON reader gives up on it with a bare 400 "There was an error parsing the body".
    depth = 100_000
    body = b'{"content": "x", "metadata": {"k": ' + b"[" * depth + b"]" * depth + b"}}"
    method = "PUT" if path == "/v1/policy" else "POST"
    response = client.request(method, path, content=body, headers={**auth(key), "Content-Type": "application/json"})
    error = assert_error(response, 400, "nested too deeply")
    assert error["code"] == "invalid_json"


def test_a_body_that_is_not_utf8_says_so(client, key):
    response = client.post("/v1/maintenance/sparse-backfill", content=b'{"reencode": "\xb9"}',
                           headers={**auth(key), "Content-Type": "application/json"})
    assert assert_error(response, 400, "utf-8")["code"] == "invalid_json"


def test_an_undeclared_method_is_405_with_allow(client, key):
    response = client.request("TRACE", "/v1/search", headers=auth(key))
    assert_error(response, 405)
    assert response.headers["allow"] == "POST"
    listed = client.request("TRACE", "/v1/memories", headers=auth(key)).headers["allow"]
    assert listed == "GET, HEAD, POST"  # two routes, one path


@pytest.mark.parametrize("value", [1e39, -3.5e38, 65505.0])
def test_an_embedding_value_a_16_bit_float_cannot_hold_is_422(client, key, settings, value):
    # 1e39 was a 500 at the insert (beyond pgvector's 32-bit vector), 65505 at a search (its 16-bit halfvec).
    vector = [0.0] * settings.embedding_dim
    vector[3] = value
    created = client.post("/v1/memories", headers=auth(key), json={"content": "x", "embedding": vector})
    assert_error(created, 422, "16-bit")
    mid = client.post("/v1/memories", headers=auth(key), json={"content": "y"}).json()["id"]
    assert_error(client.patch(f"/v1/memories/{mid}", headers=auth(key), json={"embedding": vector}), 422, "16-bit")
