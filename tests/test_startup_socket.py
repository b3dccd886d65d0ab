"""The socket `memsvc serve` binds before it starts: connections accepted on it have Nagle off."""

from __future__ import annotations

import asyncio
import socket
import time

from memsvc.startup import reserve_port


def test_connections_on_the_reserved_socket_have_nagle_off() -> None:
    sock = reserve_port("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: dict[str, int] = {}

    class Reply(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen["nodelay"] = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            # A response in two writes, as uvicorn sends headers and body.
            self.transport.write(b"head")  # type: ignore[attr-defined]
            self.transport.write(b"body")  # type: ignore[attr-defined]

    async def main() -> list[float]:
        server = await asyncio.get_running_loop().create_server(Reply, sock=sock)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        took = []
        for _ in range(6):  # back to back on one connection, where delayed ACKs bite
            started = time.perf_counter()
            writer.write(b"ask")
            await reader.readexactly(8)
            took.append(time.perf_counter() - started)
        writer.close()
        server.close()
        await server.wait_closed()
        return took

    took = asyncio.run(main())
    assert seen["nodelay"] != 0  # asyncio sets it only on a socket whose proto is IPPROTO_TCP
    assert sorted(took)[len(took) // 2] < 0.03  # with Nagle on: ~40 ms each (the peer's delayed ACK)
