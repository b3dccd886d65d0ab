"""Query-focused excerpts: the sentences of a long memory that speak to the question, verbatim, gaps marked.

A long memory (a document, a tool output, a long assistant reply) used to enter a context whole, as its
generic summary, or not at all: a 5,000-character case note whose one sentence answers the question cost
~750 tokens, and a 1,024-token budget spent them on a dozen short hits instead. An excerpt is a fourth way
in, made per request: the memory's sentences (memsvc.llm.summary.split_units: any script, never cut inside
a word, a name or a number) ranked by the query terms they hold, the best ones taken in the text's order
up to a small share of it, and every omission shown as "…". Nothing is rewritten, so what the context says
the memory says, it says.

A query term weighs more the fewer of the memory's sentences hold it (a name in every sentence says
little about which one answers), and a sentence's score is the weight of the terms it holds over a mild
length penalty. Terms match on their first `PREFIX` characters: "constructed" meets "construction",
"cocktails" meets "cocktail", in every language that inflects at the end; scripts without spaces (CJK)
match on character pairs. No excerpt when no sentence holds a query term, when the text has fewer than
three sentences, or when the best sentence alone is longer than the excerpt may be: the other fidelities
stand.

Pure functions over strings; the context builder offers the result as fidelity "excerpt".
"""

from __future__ import annotations

import math
from functools import lru_cache

from memsvc.llm.summary import CJK, is_content_word, join_spans, lead_and_statements, word_count, words_of

PREFIX = 6  # characters of a word that identify its term
MIN_UNITS = 3  # fewer sentences than this: the summary and the text itself already cover it
GAP = "…"


def _terms(text: str) -> set[str]:
    """Content terms: words not in the stop list, cut to their first PREFIX characters; CJK runs as pairs."""
    out: set[str] = set()
    for word in words_of(text):
        w = word.lower()
        if CJK.search(w):
            chars = [c for c in w if CJK.match(c)]
            out.update(a + b for a, b in zip(chars, chars[1:], strict=False))
        elif is_content_word(w):
            out.add(w[:PREFIX])
    return out


@lru_cache(maxsize=8_192)
def _units(text: str) -> tuple[tuple[int, int] | None, tuple[tuple[int, int, frozenset[str], int], ...]]:
    """The text's lead-in span (a label such as "Error:", kept with whatever is kept) and its sentences as
    (start, end, terms, words); a sentence that ends in a colon is one unit with the next. Cached: the same
    long memories come back for query after query."""
    head, groups = lead_and_statements(text)
    spans = []
    for g in groups:
        body = text[g[0].start:g[-1].end]
        spans.append((g[0].start, g[-1].end, frozenset(_terms(body)), max(1, word_count(body))))
    return head, tuple(spans)


def query_excerpt(text: str, query: str, max_chars: int, max_share: float) -> str | None:
    """The sentences of `text` that hold the most of `query`'s terms, verbatim and in order, at most
    min(max_chars, max_share x len(text)) characters, "…" where the text goes on; None when there is none."""
    asked = _terms(query)
    if not asked:
        return None
    head, units = _units(text)
    if len(units) < MIN_UNITS:
        return None
    limit = min(max_chars, max_share * len(text))
    df = {t: sum(t in terms for _, _, terms, _ in units) for t in asked}
    weight = {t: math.log(1 + len(units) / n) for t, n in df.items() if n}
    if not weight:
        return None
    scored = []
    for k, (_, _, terms, words) in enumerate(units):
        held = sum(weight.get(t, 0.0) for t in terms & asked)
        if held > 0:
            scored.append((held / words ** 0.25, k))
    scored.sort(key=lambda s: (-s[0], s[1]))
    if not scored or units[scored[0][1]][1] - units[scored[0][1]][0] + 2 > limit:
        return None  # the best evidence does not fit: an excerpt without it would only mislead the packer
    kept: list[int] = []
    size = 0
    for _, k in scored:
        start, end = units[k][0], units[k][1]
        if size + (end - start) + 2 <= limit:  # a longer one is passed over; shorter ones may still fit
            kept.append(k)
            size += end - start + 2
    kept.sort()
    parts: list[str] = []
    previous = -1
    for k in kept:
        if k != previous + 1:
            parts.append(GAP)
        parts.append(join_spans(text, [(units[k][0], units[k][1])]))
        previous = k
    if kept[-1] != len(units) - 1:
        parts.append(GAP)
    lead = join_spans(text, [head]) + " " if head else ""
    return lead + " ".join(parts)
