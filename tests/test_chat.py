"""POST /v1/chat/completions through the official `openai` package against a real uvicorn server.

The model is answered by litellm's own mock_response (the app's chat backend is litellm.completion with
mock_response added), so the request still goes through litellm, sync and streaming.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import auth
from tests.live_server import LiveServer

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ANSWER = "How about a mushroom risotto? It is vegetarian."
MODEL = "gpt-4o-mini"


class MockModel:
    """litellm.completion with litellm's mock_response; records what the model was sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer: str | None = ANSWER

    def __call__(self, **kwargs: Any) -> Any:
        import litellm

        self.calls.append(kwargs)
        if self.answer is None:  # no mock: litellm itself resolves (and here rejects) the model
            return litellm.completion(**kwargs)
        return litellm.completion(**kwargs, mock_response=self.answer)


@pytest.fixture(scope="module")
def chat_server(settings, engine) -> Iterator[tuple[LiveServer, MockModel]]:  # type: ignore[no-untyped-def]
    from api.app import create_app

    app = create_app(settings, engine)
    model = MockModel()
    app.state.chat_backend = model
    server = LiveServer(app).start()
    yield server, model
    server.stop()


@pytest.fixture()
def model(chat_server: tuple[LiveServer, MockModel]) -> MockModel:
    chat_server[1].calls.clear()
    chat_server[1].answer = ANSWER
    return chat_server[1]


def _openai(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def _memories(client, key: str, **filters: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = client.get("/v1/memories", params={**filters, "limit": 200}, headers=auth(key))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _seed(client, key: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post("/v1/memories", headers=auth(key), json={
        "content": "Ivan is vegetarian and allergic to hazelnuts.", "user_id": "ivan", "kind": "semantic"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_completion_uses_memory_and_writes_the_exchange_back(chat_server, model, client, key) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(client, key)
    result = _openai(chat_server[0], key).chat.completions.create(
        model=MODEL, temperature=0.2,
        messages=[{"role": "system", "content": "You are a cooking assistant."},
                  {"role": "user", "content": "Suggest a dinner recipe for me tonight."}],
        extra_body={"memsvc": {"user_id": "ivan", "session_id": "dinner-1", "budget_tokens": 200}},
    )
    assert result.choices[0].message.content == ANSWER and result.object == "chat.completion"

    sent = model.calls[-1]
    assert sent["model"] == MODEL and sent["temperature"] == 0.2 and sent["stream"] is False
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user"]  # the caller's system prompt first, then the memory
    assert sent["messages"][0]["content"] == "You are a cooking assistant."
    assert "vegetarian" in sent["messages"][1]["content"]

    report = result.model_extra["memsvc"]
    assert report["memories_used"] == [seeded] and 0 < report["context_tokens"] <= 200
    turns = _memories(client, key, session_id="dinner-1")
    assert {(m["metadata"]["role"], m["content"]) for m in turns} == {
        ("user", "Suggest a dinner recipe for me tonight."), ("assistant", ANSWER)}
    assert all(m["user_id"] == "ivan" and m["kind"] == "episodic" for m in turns)
    assert sorted(report["memories_stored"]) == sorted(m["id"] for m in turns)
    # Using a memory in a context reinforces it (the retrieval service's batch, written within a second).
    deadline = time.monotonic() + 10
    while client.get(f"/v1/memories/{seeded}", headers=auth(key)).json()["access_count"] != 1:
        assert time.monotonic() < deadline, "the memory the context used was not reinforced"
        time.sleep(0.2)


def test_streaming_answer_is_sent_as_sse_and_remembered(chat_server, model, client, key) -> None:  # type: ignore[no-untyped-def]
    _seed(client, key)
    stream = _openai(chat_server[0], key).chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "What should I cook?"}],
        extra_body={"memsvc": {"user_id": "ivan", "session_id": "stream-1"}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER and len(chunks) > 2  # really streamed, in pieces
    assert chunks[-1].choices[0].finish_reason == "stop"
    report = chunks[-1].model_extra["memsvc"]  # the last chunk comes once the turns are stored
    assert len(report["memories_stored"]) == 2
    assert model.calls[-1]["stream"] is True and "vegetarian" in model.calls[-1]["messages"][0]["content"]
    turns = _memories(client, key, session_id="stream-1")
    assert {m["metadata"]["role"]: m["content"] for m in turns} == {"user": "What should I cook?",
                                                                    "assistant": ANSWER}


def test_raw_sse_ends_with_done(chat_server, model, key) -> None:  # type: ignore[no-untyped-def]
    with httpx.stream("POST", f"{chat_server[0].url}/v1/chat/completions", headers=auth(key), json={
        "model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}],
        "memsvc": {"remember": False, "budget_tokens": 0},
    }) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 3


def test_remember_false_needs_only_read_and_stores_nothing(chat_server, model, client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    reader = make_tenant(("read",))
    oa = _openai(chat_server[0], reader)
    result = oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}],
                                        extra_body={"memsvc": {"session_id": "ro", "remember": False}})
    assert result.choices[0].message.content == ANSWER and result.model_extra["memsvc"]["memories_stored"] == []
    with pytest.raises(openai.PermissionDeniedError) as denied:
        oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    assert denied.value.status_code == 403 and "'write' scope" in denied.value.message
    assert len(model.calls) == 1  # the refused request never reached the model
    assert _memories(client, reader) == []


def test_integral_numbers_reach_the_model_as_integers(chat_server, model, make_tenant) -> None:  # type: ignore[no-untyped-def]
    # JSON's 1.0 is the integer 1 (the schema takes it); sent on as 1.0, litellm failed on it: a 502.
    reader = make_tenant(("read",))
    r = httpx.post(f"{chat_server[0].url}/v1/chat/completions", headers={"Authorization": f"Bearer {reader}"},
                   json={"model": MODEL, "n": 1.0, "max_completion_tokens": 30.0,
                         "messages": [{"role": "user", "content": "hello"}], "memsvc": {"remember": False}},
                   timeout=120)
    assert r.status_code == 200, r.text
    sent = model.calls[-1]
    assert sent["n"] == 1 and type(sent["n"]) is int and type(sent["max_completion_tokens"]) is int


def test_a_message_without_content_is_a_400_not_an_upstream_error(chat_server, model, make_tenant) -> None:  # type: ignore[no-untyped-def]
    reader = make_tenant(("read",))
    r = httpx.post(f"{chat_server[0].url}/v1/chat/completions", headers={"Authorization": f"Bearer {reader}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": "hello"}, {"role": "developer"}],
                         "memsvc": {"remember": False}}, timeout=120)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[1].content", r.text
    assert model.calls == []  # refused before any model call


@pytest.mark.parametrize("part", [{"type": "refusal", "refusal": "no"}, {"type": "refusal"}])
def test_a_refusal_part_outside_an_assistants_message_is_a_400(chat_server, model, make_tenant, part) -> None:  # type: ignore[no-untyped-def]
    # OpenAI's refusal part is an assistant's; in a user's message litellm refused it ('Invalid user message
    # at index 1'): a 502 (found by the long fuzz run, bench/fuzz.py).
    reader = make_tenant(("read",))
    r = httpx.post(f"{chat_server[0].url}/v1/chat/completions", headers={"Authorization": f"Bearer {reader}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": "hello"},
                                                      {"role": "user", "content": [part]}],
                         "memsvc": {"remember": False}}, timeout=120)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[1].content", r.text
    assert model.calls == []


def test_restricted_key_cannot_chat_as_another_user(chat_server, model, make_tenant) -> None:  # type: ignore[no-untyped-def]
    only_jo = make_tenant(("read", "write"), user_ids=["jo"])
    with pytest.raises(openai.PermissionDeniedError, match="user_ids jo"):
        _openai(chat_server[0], only_jo).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"memsvc": {"user_id": "kim"}})
    assert model.calls == []


def test_bad_key_is_an_openai_authentication_error(chat_server, model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.AuthenticationError) as error:
        _openai(chat_server[0], "msk_wrong").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert error.value.status_code == 401 and error.value.body["type"] == "authentication_error"


@pytest.mark.parametrize("body, param, code", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model", "missing_required_parameter"),
    ({"model": MODEL}, "messages", "missing_required_parameter"),
    ({"model": MODEL, "messages": []}, "messages", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "user", "content": 42}]}, "messages[0].content", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]}, "messages", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "a\u0000b"}]}, "messages[0].content", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temprature": 1}, "temprature",
     "unknown_parameter"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "maybe"}, "stream", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "memsvc": {"budget_tokens": -5}},
     "memsvc.budget_tokens", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "memsvc": {"colour": "red"}},
     "memsvc.colour", "invalid_value"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "memsvc": {"user_id": " "}},
     "memsvc.user_id", "invalid_value"),
    ([1, 2], None, None),
])
def test_malformed_requests_get_openai_shaped_errors(chat_server, model, key, body, param, code) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{chat_server[0].url}/v1/chat/completions", json=body, headers=auth(key))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code) and error["message"]
    assert model.calls == []


def test_invalid_json_and_unknown_model(chat_server, model, key) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{chat_server[0].url}/v1/chat/completions", content=b"{not json",
                          headers={**auth(key), "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.BadRequestError) as error:  # not in the default allow-list (tests/test_chat_policy.py)
        _openai(chat_server[0], key).chat.completions.create(
            model="no-such-provider-model", messages=[{"role": "user", "content": "hi"}],
            extra_body={"memsvc": {"remember": False}}, timeout=120)
    assert error.value.body["param"] == "model" and error.value.body["code"] == "model_not_allowed"
    assert model.calls == []


def test_hf_path_models_are_refused_before_any_file_is_read(live_server, make_tenant):
    import httpx

    key = make_tenant()
    response = httpx.post(
        f"{live_server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
        json={"model": "hf:/etc", "messages": [{"role": "user", "content": "hi"}], "memsvc": {"user_id": "u"}},
    )
    assert 400 <= response.status_code < 500, response.text
    assert "hf:" in response.json()["error"]["message"]
