"""An agent loop that remembers: each turn recalls what matters, answers, and writes the exchange back.

Run a server (`memsvc serve`), then:
    MEMSVC_API_KEY=msk_... python clients/python/examples/agent_loop.py
Type messages; Ctrl-D ends. Start it again later: it still knows what you told it.
The "model" here is a stand-in that only reports what it remembered; put your LLM call in `answer`.
"""

from __future__ import annotations

import os
import sys

from memsvc_client import MemsvcClient

USER = os.environ.get("AGENT_USER", "demo-user")
SESSION = os.environ.get("AGENT_SESSION", "demo-session")


def answer(message: str, memories: list[str]) -> str:
    if not memories:
        return f"Noted: {message!r}. I don't recall anything related yet."
    return "Related things I remember:\n" + "\n".join(f"  - {m}" for m in memories)


def turn(mem: MemsvcClient, message: str) -> str:
    hits = mem.search(message, user_id=USER, limit=3).hits
    reply = answer(message, [h.memory.content for h in hits])
    mem.add_batch([
        {"content": message, "user_id": USER, "session_id": SESSION, "metadata": {"role": "user"}},
        {"content": reply, "user_id": USER, "session_id": SESSION, "metadata": {"role": "assistant"},
         "importance": 0.2},
    ])
    return reply


def main() -> int:
    with MemsvcClient() as mem:  # MEMSVC_URL (default http://127.0.0.1:8420) and MEMSVC_API_KEY
        lines = sys.argv[1:] or (line.strip() for line in sys.stdin)
        for message in lines:
            if message:
                print(turn(mem, message), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
