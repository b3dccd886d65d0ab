"""bench/lme_data.py: what a LongMemEval haystack writes (nothing that reveals the evidence), and the
client-side embedding cache (the service's own vectors, kept across runs)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from lme_data import EmbeddingCache, haystack, neutral_session_id, parse_date, select  # noqa: E402

SESSIONS = {
    "answer_4be1b6b4_1": {"date": "2023/05/01 (Mon) 09:00", "turns": [
        {"role": "user", "content": "I adopted a cat named Miso last week.", "has_answer": True},
        {"role": "assistant", "content": "Congratulations on adopting Miso!"},
        {"role": "user", "content": "   "},
    ]},
    "sharegpt_x9_0": {"date": "2023/05/02 (Tue) 10:30", "turns": [
        {"role": "user", "content": "x" * 50},
        {"role": "assistant", "content": "Sure."},
    ]},
}
QUESTION = {"question_id": "q1", "question_type": "single-session-user", "question": "What is my cat's name?",
            "answer": "Miso", "question_date": "2023/06/01 (Thu) 12:00",
            # The question's own dates rule (a reused session's "date" can differ from them).
            "haystack_dates": ["2023/04/30 (Sun) 08:15", "2023/05/02 (Tue) 10:30"],
            "haystack_session_ids": ["answer_4be1b6b4_1", "sharegpt_x9_0"], "answer_session_ids": ["answer_4be1b6b4_1"]}


def test_haystack_writes_no_evidence_marks_and_keeps_order_and_dates() -> None:
    turns = haystack(QUESTION, SESSIONS, max_chars=20)
    items = [t["item"] for t in turns]
    written = json.dumps(items)
    assert "answer_" not in written and "has_answer" not in written and "sharegpt" not in written
    assert [i["content"] for i in items] == ["I adopted a cat name", "Congratulations on a", "x" * 20, "Sure."]
    assert [i["metadata"] for i in items] == [{"role": r, "speaker": r} for r in ("user", "assistant") * 2]
    times = [datetime.fromisoformat(i["occurred_at"]) for i in items]
    assert times[0] == parse_date("2023/04/30 (Sun) 08:15") and times == sorted(times)
    assert (times[1] - times[0]).total_seconds() == 5
    assert {i["session_id"] for i in items[:2]} == {neutral_session_id("q1", 0)} != {items[2]["session_id"]}
    # What only the scorer sees.
    assert [t["gold"] for t in turns] == [True, False, False, False]
    assert [t["evidence_session"] for t in turns] == [True, True, False, False]
    assert [t["truncated"] for t in turns] == [True, True, True, False]


def test_select_takes_the_first_n_of_each_type() -> None:
    qs = [{"question_id": str(i), "question_type": t} for i, t in
          enumerate(["multi-session", "temporal-reasoning", "multi-session", "multi-session", "temporal-reasoning"])]
    assert [q["question_id"] for q in select(qs, 2, None)] == ["0", "1", "2", "4"]
    assert [q["question_id"] for q in select(qs, None, ["temporal-reasoning"])] == ["1", "4"]


def test_embedding_cache_holds_the_service_vectors_across_runs(tmp_path: Path) -> None:
    from memsvc.embeddings import get_embedder

    embedder = get_embedder()
    texts = ["I adopted a cat named Miso.", "The train leaves at nine.", "I adopted a cat named Miso."]
    cache = EmbeddingCache(tmp_path, embedder)
    assert cache.fill(texts, log=False) > 0
    expected = embedder.embed(texts[:2])
    again = EmbeddingCache(tmp_path, embedder)  # a later run: read back, nothing embedded
    assert len(again.vectors) == 2 and again.fill(texts, log=False) == 0.0
    for text, vector in zip(texts[:2], expected, strict=True):
        assert np.allclose(again.get(text), vector, atol=1e-5)
