"""Query-focused excerpts (memsvc.retrieval.excerpt): whole sentences of the memory that hold the query's
terms, in order, every omission marked; and the context that offers them for long memories."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsvc.retrieval.excerpt import GAP, query_excerpt
from tests.conftest import auth
from tests.test_summaries import GERMAN, JAPANESE, RUSSIAN, anything, assert_faithful

FILLER_SENTENCES = [
    "The weather in the valley was mild for most of the spring.",
    "Several neighbours stopped by to talk about the new playground.",
    "A local bakery started selling rye bread on weekends.",
    "The town council met twice to discuss parking on Main Street.",
    "Volunteers repainted the benches along the river path.",
    "The library extended its opening hours during the exam period.",
]
ANSWER = "Construction of the house began in March 2014, a year before the contract was signed."
DOCUMENT = " ".join(FILLER_SENTENCES[:3] + [ANSWER] + FILLER_SENTENCES[3:]) * 2


def _parts(excerpt: str) -> list[str]:
    return [p.strip() for p in excerpt.split(GAP) if p.strip()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anything, st.data())
def test_an_excerpt_is_none_or_whole_sentences_of_the_text_in_order(text: str, data: st.DataObject) -> None:
    words = text.split()
    query = " ".join(data.draw(st.lists(st.sampled_from(words), max_size=4))) if words else ""
    excerpt = query_excerpt(text, query, max_chars=300, max_share=0.5)
    if excerpt is None:
        return
    kept = " ".join(_parts(excerpt))
    # Verbatim sentence runs in the text's order, never a cut word; at most the share it may take (a lead-in
    # label such as "Error:" rides along with what it labels).
    assert_faithful(text, kept)
    assert len(kept) <= 300 + 40
    assert excerpt == query_excerpt(text, query, max_chars=300, max_share=0.5)  # deterministic


def test_the_sentence_that_answers_is_kept_and_the_rest_marked_as_left_out() -> None:
    excerpt = query_excerpt(DOCUMENT, "What year did the construction of the house begin?", 480, 0.4)
    assert excerpt is not None
    assert ANSWER in excerpt
    assert excerpt.startswith(GAP) and excerpt.endswith(GAP)  # text before and after it is not shown
    assert not any(f in excerpt for f in FILLER_SENTENCES)
    assert len(excerpt) <= 480 + 2 * len(GAP) + 4


@pytest.mark.parametrize(("sentences", "query", "expected"), [
    (GERMAN, "Wann zieht Frau Schröder nach Köln?", "Frau Dr. Schröder zieht am 3. Mai nach Köln."),
    (RUSSIAN, "Кто не любит кинзу?", "Маша не любит кинзу."),
    (JAPANESE, "ボブの嫌いなものは？", "ボブはパクチーが嫌いです。"),
])
def test_excerpts_in_other_languages(sentences: list[str], query: str, expected: str) -> None:
    text = ("" if sentences is JAPANESE else " ").join(sentences)
    excerpt = query_excerpt(text, query, 480, 0.5)
    assert excerpt is not None and expected in excerpt, excerpt
    assert len(_parts(excerpt)) == 1


def test_sentence_length_counts_cjk_words_so_the_short_answer_wins() -> None:
    """Without spaces a Japanese sentence is one 'word' by whitespace; a long sentence that merely mentions the
    term must not out-rank (and, too long to fit, block) the short one that holds it."""
    long_one = "東京" + "の会議では予算と人事と来年度の計画について長い議論が続き結論は出なかった" * 2 + "。"
    short_one = "東京の本社は来月移転する。"
    text = long_one + "天気は晴れだった。" * 3 + "昼食は蕎麦だった。" + short_one
    excerpt = query_excerpt(text, "東京", 60, 0.5)
    assert excerpt is not None and short_one in excerpt and long_one not in excerpt, excerpt


@pytest.mark.parametrize(("text", "query"), [
    ("Bob hates cilantro. He told me twice.", "What does Bob hate?"),  # two sentences: nothing to leave out
    (DOCUMENT, "What is it?"),  # no content term in the query
    (DOCUMENT, "Which dentist does Priya see?"),  # no sentence holds a query term
    ("Intro. " + "word " * 400 + "construction. Outro. More.", "construction"),  # the best sentence is too long
])
def test_no_excerpt_where_none_would_serve(text: str, query: str) -> None:
    assert query_excerpt(text, query, 480, 0.4) is None


def test_a_tight_context_shows_a_long_document_as_the_excerpt_that_answers(client, key) -> None:  # type: ignore[no-untyped-def]
    items = [{"content": DOCUMENT}] + [{"content": c} for c in (
        "Priya said the new house has a red door.",
        "The house on Elm Street was sold last year.",
        "Bob asked about the construction noise next door.",
    )]
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text
    doc_id = r.json()["items"][0]["id"]
    body = {"query": "What year did the construction of the house begin?", "budget_tokens": 150}
    r = client.post("/v1/context", headers=auth(key), json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert {i["id"]: i["fidelity"] for i in got["items"]}.get(doc_id) == "excerpt"
    assert "March 2014" in got["context"] and got["token_count"] <= 150
    # Without excerpts the document is too long for this budget at any fidelity it has.
    client.app.state.retrieval.recipes.derive("test-no-excerpts", "general", "no excerpts", excerpt_min_chars=0)
    r = client.post("/v1/context", headers=auth(key), json={**body, "recipe": "test-no-excerpts"})
    assert r.status_code == 200, r.text
    assert doc_id not in {i["id"] for i in r.json()["items"]}
    assert "March 2014" not in r.json()["context"]
