"""Time phrases in queries (memsvc.retrieval.timeframe): which days "a week ago" means, and what search does
with them: memories of that time rank higher, read against the request's asked_at; nothing is filtered out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memsvc.retrieval.timeframe import window_of
from tests.conftest import auth

FRIDAY = datetime(2023, 3, 10, 15, 30, tzinfo=UTC)


def _days(query: str, asked: datetime = FRIDAY) -> tuple[str, str] | None:
    window = window_of(query, asked)
    return None if window is None else (window.start.date().isoformat(), window.end.date().isoformat())


@pytest.mark.parametrize(("query", "inside", "outside"), [
    ("Which book did I finish a week ago?", ["2023-03-03", "2023-03-01", "2023-03-06"], ["2023-03-10", "2023-02-20"]),
    ("What did I cook a couple of days ago?", ["2023-03-08"], ["2023-03-10", "2023-03-03"]),
    ("the milestone I mentioned four weeks ago", ["2023-02-10"], ["2023-03-03", "2023-01-10"]),
    ("three months ago I started a course", ["2022-12-10"], ["2023-02-20", "2022-10-01"]),
    ("What did I do yesterday?", ["2023-03-09"], ["2023-03-10", "2023-03-08"]),
    ("the artist I started listening to last Friday", ["2023-03-03"], ["2023-03-10", "2023-02-24"]),
    ("on Tuesday we met", ["2023-03-07"], ["2023-03-10", "2023-02-28"]),
    ("what happened last week", ["2023-02-27", "2023-03-05"], ["2023-03-08", "2023-02-20"]),
    ("last month", ["2023-02-01", "2023-02-28"], ["2023-03-05", "2023-01-10"]),
    ("Which car did I service first in February?", ["2023-02-14"], ["2023-03-06", "2023-01-15"]),
    ("What did I eat on March 15th?", ["2022-03-15"], ["2023-03-15"]),  # not yet this year: last year's
    ("in May 2022 we moved", ["2022-05-20"], ["2023-05-20"]),
    ("What did Jon find on 1 February, 2023?", ["2023-02-01"], ["2023-02-10"]),
    ("the pet we lost on the 3rd of June 2022", ["2022-06-03"], ["2022-06-20"]),
    ("the feed I bought in the past two months", ["2023-01-15", "2023-03-09"], ["2022-12-20"]),
    ("How many weddings have I attended this year?", ["2023-01-05"], ["2022-12-20"]),
])
def test_time_phrases_point_at_the_days_meant(query: str, inside: list[str], outside: list[str]) -> None:
    window = window_of(query, FRIDAY)
    assert window is not None
    for day in inside:
        assert window.start <= datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC) < window.end, (day, window)
    for day in outside:
        assert not window.start <= datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC) < window.end, (day, window)


@pytest.mark.parametrize("query", [
    "You may want to book a table", "What is Bob's favourite food?", "Error: 3 weeks of logs missing",
    "Wann habe ich das Buch beendet?", "marching band practice", "The 4 days schedule",
])
def test_no_time_phrase_no_window(query: str) -> None:
    assert window_of(query, FRIDAY) is None


def test_february_30_is_no_day() -> None:
    assert _days("What happened on February 30?") is None


@pytest.mark.parametrize("asked", [datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)])
@pytest.mark.parametrize("query", ["4 years ago", "last year", "this week", "in December", "past 3 years"])
def test_spans_beyond_the_calendar_are_no_window(query: str, asked: datetime) -> None:
    window_of(query, asked)  # no OverflowError / ValueError: the API would have answered 500


def test_asked_at_at_the_ends_of_the_calendar_is_answered(client, key) -> None:  # type: ignore[no-untyped-def]
    for asked in ("0001-01-02T00:00:00Z", "9999-12-31T23:00:00Z"):
        body = {"query": "what did I do 4 years ago this week?", "asked_at": asked, "recipe": "dated"}
        assert client.post("/v1/search", json=body, headers=auth(key)).status_code == 200
        r = client.post("/v1/context", json={**body, "budget_tokens": 50}, headers=auth(key))
        assert r.status_code == 200, r.text


def test_a_time_phrase_ranks_the_memory_of_that_time_first(client, key) -> None:  # type: ignore[no-untyped-def]
    """Eight near-identical notes a week apart: only the time phrase tells them apart. Asked at two different
    moments, the note of "a week ago" must come first both times (by chance: 1 in 64)."""
    start = datetime(2023, 1, 2, 18, 0, tzinfo=UTC)
    books = ["Dune", "Emma", "Ulysses", "Beloved", "Rebecca", "Persuasion", "Middlemarch", "Frankenstein"]
    items = [{"content": f"I finished reading {b} tonight.", "occurred_at": (start + timedelta(days=7 * i)).isoformat(),
              "user_id": "reader"} for i, b in enumerate(books)]
    r = client.post("/v1/memories/batch", json={"items": items}, headers=auth(key))
    assert r.status_code == 201, r.text
    for index in (2, 6):
        asked = start + timedelta(days=7 * index + 7, hours=1)
        body = {"query": "Which book did I finish a week ago?", "user_id": "reader", "asked_at": asked.isoformat(),
                "recipe": "dated"}
        hits = client.post("/v1/search", json=body, headers=auth(key)).json()["hits"]
        assert books[index] in hits[0]["memory"]["content"]
        assert "time_window" in hits[0]["signals"]
        assert len(hits) == len(books)  # a boost, not a filter
        context = client.post("/v1/context", json={**body, "budget_tokens": 30}, headers=auth(key)).json()
        assert books[index] in context["context"]
