"""LongMemEval-S haystacks as memsvc batch items, and a client-side cache of their embeddings.

The data (MIT) is read in place from ../shared/bench/longmemeval/ and never copied into the repository.
What is written for a turn: its raw content, its role (metadata `role` and `speaker`), the session's date
(turns a few seconds apart, in order) and a neutral session id (a hash of the question id and the session's
index). Never the dataset's session ids (evidence ones begin with "answer_") nor `has_answer`: those stay
on this side, to score with.

Embeddings: the same session recurs in a few haystacks (5718 haystack sessions, 5432 distinct in the dev
file), and every question is its own scope, so each copy is written again. MemoryCreate takes an optional
precomputed `embedding`, so each distinct text is embedded once, with the service's own embedder (whatever
MEMSVC_EMBEDDING_MODEL names), and sent with every copy. The vectors are kept in a cache directory (outside
the repository) keyed by the embedder's name and each text's SHA-256: a second run, or a run of another
checkout with the same embedder, skips the slow part (about 20 texts/s on two shared CPU cores).

Usage (fill the cache ahead of a run): python bench/lme_data.py [--questions N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "longmemeval" / "lme_s_dev.json"
DEFAULT_CACHE = Path(os.environ.get("MEMSVC_LME_EMBED_CACHE", "/tmp/memsvc-lme-embeddings"))
TYPES = ("single-session-user", "single-session-assistant", "single-session-preference", "multi-session",
         "knowledge-update", "temporal-reasoning")
TURN_GAP_S = 5


def load(path: str | Path = DEFAULT_DATA) -> dict[str, Any]:
    if not Path(path).exists():
        raise SystemExit(f"LongMemEval data not found at {path}")
    return json.loads(Path(path).read_text())  # type: ignore[no-any-return]


def select(questions: list[dict[str, Any]], per_type: int | None, types: Iterable[str] | None) -> list[dict[str, Any]]:
    """The first `per_type` questions of each wanted type, in file order."""
    wanted = set(types) if types else set(TYPES)
    unknown = wanted - set(TYPES)
    if unknown:
        raise SystemExit(f"unknown question types {sorted(unknown)}; known: {', '.join(TYPES)}")
    seen: dict[str, int] = {}
    out = []
    for q in questions:
        t = q["question_type"]
        if t in wanted and (per_type is None or seen.get(t, 0) < per_type):
            seen[t] = seen.get(t, 0) + 1
            out.append(q)
    return out


def parse_date(text: str) -> datetime:
    """'2023/03/21 (Tue) 08:01' -> aware datetime (UTC; the dataset gives no zone)."""
    m = re.fullmatch(r"\s*(\d{4})/(\d{2})/(\d{2})\s*\(\w+\)\s*(\d{1,2}):(\d{2})\s*", text)
    if not m:
        raise ValueError(f"unexpected LongMemEval date {text!r}")
    year, month, day, hour, minute = map(int, m.groups())
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def neutral_session_id(question_id: str, index: int) -> str:
    """A per-question, per-session id that says nothing about evidence (the dataset's ids do)."""
    return "s-" + hashlib.sha256(f"{question_id}/{index}".encode()).hexdigest()[:16]


def haystack(question: dict[str, Any], sessions: dict[str, Any], max_chars: int) -> list[dict[str, Any]]:
    """The question's turns, oldest session first as the haystack lists them: each a batch item (`item`)
    beside what only the scorer sees (`gold`: has_answer, `evidence_session`: one of answer_session_ids)."""
    evidence = set(question["answer_session_ids"])
    out = []
    for index, (sid, date) in enumerate(zip(question["haystack_session_ids"], question["haystack_dates"],
                                            strict=True)):
        # The question's own haystack_dates, not the session's "date": they differ for some reused sessions.
        start = parse_date(date)
        session_id = neutral_session_id(question["question_id"], index)
        for i, turn in enumerate(sessions[sid]["turns"]):
            content = turn["content"]
            if not content.strip():
                continue
            role = turn["role"]
            item = {"content": content[:max_chars], "session_id": session_id,
                    "occurred_at": (start + timedelta(seconds=TURN_GAP_S * i)).isoformat(),
                    "metadata": {"role": role, "speaker": role}}
            out.append({"item": item, "gold": bool(turn.get("has_answer")), "evidence_session": sid in evidence,
                        "truncated": len(content) > max_chars})
    return out


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class EmbeddingCache:
    """Vectors by text hash for one embedder, in append-only chunks (`<n>.npy` + `<n>.json`, the keys), so an
    interrupted fill keeps what it finished."""

    def __init__(self, root: Path, embedder: Any) -> None:
        self.embedder = embedder
        self.dir = root / re.sub(r"[^\w.-]+", "_", f"{embedder.name}-{embedder.dim}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vectors: dict[str, np.ndarray] = {}
        for keys_file in sorted(self.dir.glob("*.json")):
            vec_file = keys_file.with_suffix(".npy")
            if vec_file.exists():
                keys = json.loads(keys_file.read_text())
                self.vectors.update(zip(keys, np.load(vec_file), strict=True))

    def fill(self, texts: Iterable[str], chunk: int = 512, log: bool = True) -> float:
        """Embed every text not cached yet; returns the seconds spent embedding."""
        todo = list(dict.fromkeys(t for t in texts if text_key(t) not in self.vectors))
        spent = 0.0
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            t = time.perf_counter()
            vecs = np.asarray(self.embedder.embed(part), dtype=np.float32)
            spent += time.perf_counter() - t
            keys = [text_key(x) for x in part]
            name = f"{time.time_ns()}"
            np.save(self.dir / f"{name}.npy", vecs)
            (self.dir / f"{name}.json").write_text(json.dumps(keys))  # written last: marks the chunk complete
            self.vectors.update(zip(keys, vecs, strict=True))
            if log:
                done = min(start + chunk, len(todo))
                print(f"embedded {done}/{len(todo)} new texts ({done / max(spent, 1e-9):.1f}/s)", flush=True)
        return spent

    def get(self, text: str) -> list[float]:
        return [float(x) for x in self.vectors[text_key(text)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--questions", type=int, default=None, help="first N questions per type")
    parser.add_argument("--types", default="", help="comma-separated question types (default all)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.torch_threads)
    from memsvc.config import get_settings
    from memsvc.embeddings import get_embedder

    data = load(args.data)
    chosen = select(data["questions"], args.questions, [t for t in args.types.split(",") if t])
    max_chars = get_settings().max_content_chars
    texts = [t["item"]["content"] for q in chosen for t in haystack(q, data["sessions"], max_chars)]
    cache = EmbeddingCache(Path(args.cache), get_embedder())
    print(f"{len(texts)} turns, {len(set(texts))} distinct, {len(cache.vectors)} cached in {cache.dir}", flush=True)
    cache.fill(texts)


if __name__ == "__main__":
    main()
