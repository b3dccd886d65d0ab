"""Where a memory stands in a prompt as its trained vectors: a marker in the text, `⟦memory:<uuid>⟧`.

The context builder writes a marker where a memory goes in as tokens; the local backend cuts the prompt
at markers, tokenizes the text between them and splices each memory's k vectors into `inputs_embeds` at
its marker. `MarkedCounter` counts a text the way the backend will see it: the text between markers under
the model's tokenizer, plus k positions per marker, so budgets hold for what the model actually reads.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence

from memsvc.tokens import TokenCounter

MEMORY_MARK = re.compile(r"⟦memory:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})⟧")


def memory_mark(memory_id: uuid.UUID | str) -> str:
    return f"⟦memory:{uuid.UUID(str(memory_id))}⟧"


def split_marked(text: str) -> list[str | uuid.UUID]:
    """Text pieces and memory ids, in order (empty text pieces left out)."""
    out: list[str | uuid.UUID] = []
    at = 0
    for m in MEMORY_MARK.finditer(text):
        if m.start() > at:
            out.append(text[at:m.start()])
        out.append(uuid.UUID(m.group(1)))
        at = m.end()
    if at < len(text):
        out.append(text[at:])
    return out


class MarkedCounter:
    """A TokenCounter for texts holding memory markers: each known marker counts as its memory's vectors."""

    def __init__(self, inner: TokenCounter, vectors: Mapping[uuid.UUID, int]) -> None:
        self.inner = inner
        self.vectors = dict(vectors)
        self.name = inner.name
        self.exact = inner.exact

    def count(self, text: str) -> int:
        if "⟦memory:" not in text:
            return self.inner.count(text)
        total = 0
        for piece in split_marked(text):
            if isinstance(piece, uuid.UUID) and piece in self.vectors:
                total += self.vectors[piece]
            else:
                total += self.inner.count(piece if isinstance(piece, str) else memory_mark(piece))
        return total

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.inner.decode(ids)

    def truncate(self, text: str, max_tokens: int) -> str:
        """Whole lines while they fit (a marker is never cut in half), then the inner cut of a plain line."""
        kept: list[str] = []
        for line in text.split("\n"):
            candidate = "\n".join([*kept, line])
            if self.count(candidate) <= max_tokens:
                kept.append(line)
                continue
            if not MEMORY_MARK.search(line):
                head = "\n".join(kept) + ("\n" if kept else "")
                rest = max_tokens - self.count(head)
                if rest > 0:
                    return head + self.inner.truncate(line, rest)
            break
        return "\n".join(kept)
