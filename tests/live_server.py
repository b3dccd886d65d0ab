"""A real uvicorn server on a free loopback port, in a thread, that tests can stop and restart.

Used by the SDK, MCP and chat tests (anything that must talk HTTP to a real socket). Import the
`live_server` fixture into a test module or conftest; it reuses the suite's `settings`/`engine`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

__all__ = ["LiveServer", "free_port", "live_server"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"uvicorn on port {self.port} did not stop")
        self._server = self._thread = None


@pytest.fixture(scope="session")
def live_server(settings, engine) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    from api.app import create_app

    server = LiveServer(create_app(settings, engine)).start()
    yield server
    server.stop()
