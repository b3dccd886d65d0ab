"""Chat models: the allow-list, and no call to a local or private address unless the operator allows it.

The live tests run the real litellm backend (no mock) against a real HTTP listener on a loopback port: if
the policy let a request through, the listener would receive the prompt with its memory context.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from memsvc.chat_policy import ChatPolicy, Target, is_local_host, refusal
from tests.conftest import auth
from tests.live_server import LiveServer

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
SECRET = "Ines keeps her spare key under the blue flowerpot."


@pytest.mark.parametrize("host", [
    "localhost", "LOCALHOST.", "api.localhost", "printer.local", "metadata.google.internal", "ollama",
    "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0.0.0.0", "10.1.2.3", "172.16.0.1",
    "172.31.255.255", "192.168.1.20", "169.254.169.254", "100.64.0.1", "::1", "[::1]", "::ffff:127.0.0.1",
    "fe80::1", "fc00::1", "::", "",
])
def test_local_and_private_hosts(host: str) -> None:
    assert is_local_host(host)


@pytest.mark.parametrize("host", ["api.openai.com", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_hosts(host: str) -> None:
    assert not is_local_host(host)


def test_the_rule() -> None:
    default, anything = ChatPolicy(), ChatPolicy(models=("*",))
    assert refusal(Target("gpt-4o-mini", "openai"), default) is None
    assert refusal(Target("anthropic/claude-3-5-sonnet", "anthropic"), default) is None
    ollama = Target("ollama/llama3", "ollama", default_bases=("http://localhost:11434",))
    assert refusal(ollama, default).code == "model_not_allowed"  # type: ignore[union-attr]
    assert "localhost:11434" in refusal(ollama, anything).message  # type: ignore[union-attr]
    assert refusal(ollama, ChatPolicy(models=("*",), allow_local=True)) is None
    assert refusal(ollama, ChatPolicy(models=("*",), api_bases=("http://localhost:11434/",))) is None
    # A local provider with no base known still counts as local; so does a hosted one pointed at a private base.
    assert refusal(Target("lm_studio/x", "lm_studio"), anything) is not None
    assert refusal(Target("gpt-4o", "openai", default_bases=("http://10.0.0.7:4000/v1",)), default) is not None
    # A caller-named api_base must be one the operator listed, public or not.
    assert refusal(Target("gpt-4o", "openai", api_base="https://evil.example.com"), default).param == "api_base"  # type: ignore[union-attr]
    listed = ChatPolicy(api_bases=("http://10.0.0.7:4000",))
    assert refusal(Target("gpt-4o", "openai", api_base="http://10.0.0.7:4000/"), listed) is None
    # Models the server runs itself need no network: always allowed, whatever the list says.
    assert refusal(Target("local/smollm2"), ChatPolicy(models=()), in_process={"local/smollm2"}) is None
    assert refusal(Target("local/smollm2"), ChatPolicy(models=())) is not None


class _Listener:
    """A real HTTP server on a loopback port that records what reaches it (stands in for an Ollama)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                listener.bodies.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.close()


def _server(settings: Any, engine: Any, **update: Any) -> LiveServer:
    from api.app import create_app

    return LiveServer(create_app(settings.model_copy(update=update), engine)).start()


def _chat(server: LiveServer, key: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", headers=auth(key), timeout=60, json={
        "model": model, "messages": [{"role": "user", "content": "Where is the spare key?"}],
        "memsvc": {"user_id": "ines", "remember": False}, **extra})


def _seed(server: LiveServer, key: str) -> None:
    response = httpx.post(f"{server.url}/v1/memories", headers=auth(key), timeout=60,
                          json={"content": SECRET, "user_id": "ines", "kind": "semantic"})
    assert response.status_code == 201, response.text


def test_local_models_never_reach_a_local_port(settings, engine, make_tenant, listener, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant(("read", "write"))
    monkeypatch.setenv("OLLAMA_API_BASE", listener.url)  # where litellm's ollama provider would now go
    server = _server(settings, engine)  # the defaults
    permissive = _server(settings, engine, chat_models=["*"])
    try:
        _seed(server, key)
        for srv, model, extra, code in [
            (server, "ollama/llama3", {}, "model_not_allowed"),
            (permissive, "ollama/llama3", {}, "model_not_allowed"),
            (permissive, "ollama/llama3", {"api_base": listener.url}, "api_base_not_allowed"),
            (server, "gpt-4o-mini", {"api_base": listener.url}, "api_base_not_allowed"),
        ]:
            response = _chat(srv, key, model, **extra)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == code and error["type"] == "invalid_request_error", error
            assert "MEMSVC_CHAT" in error["message"]
        assert listener.bodies == []
    finally:
        server.stop()
        permissive.stop()


def test_operator_can_allow_a_local_model(settings, engine, make_tenant, listener, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The control: configured, the same request does reach the local port, memory context and all."""
    key = make_tenant(("read", "write"))
    monkeypatch.setenv("OLLAMA_API_BASE", listener.url)
    server = _server(settings, engine, chat_models=["ollama/*"], chat_allow_local=True)
    listed = _server(settings, engine, chat_models=["ollama/*"], chat_api_bases=[listener.url])
    try:
        _seed(server, key)
        assert _chat(server, key, "ollama/llama3").status_code != 200  # the stand-in answers 404
        assert len(listener.bodies) == 1 and b"blue flowerpot" in listener.bodies[0]
        assert _chat(listed, key, "ollama/llama3", api_base=listener.url).status_code != 200
        assert len(listener.bodies) == 2
    finally:
        server.stop()
        listed.stop()


def test_unknown_model_allowed_by_the_list_is_litellms_to_reject(settings, engine, make_tenant) -> None:  # type: ignore[no-untyped-def]
    server = _server(settings, engine, chat_models=["*"])
    try:
        error = _chat(server, make_tenant(), "no-such-provider-model").json()["error"]
        assert (error["param"], error["code"]) == ("model", "model_not_found")
    finally:
        server.stop()
