"""The offline built-in LLM and the litellm gateway (driven by litellm's own mock_response)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from memsvc.llm import (
    BuiltinLLM,
    Episode,
    Fact,
    LiteLLMGateway,
    LLMCallError,
    LLMOutputError,
    get_llm,
    track_usage,
)
from memsvc.llm.dates import resolve_relative_dates
from memsvc.llm.gateway import GIST_MAX_WORDS
from tests.llm_mock import script_litellm

MAY8 = datetime(2023, 5, 8, 13, 56)  # a Monday

STORY = (
    "Melanie ran a charity race for mental health last Saturday and raised $300 for the local shelter. "
    "She said the weather was great and that her kids cheered for her at the finish line. "
    "Afterwards they all went out for ice cream, which was a nice treat. "
    "She is already planning to run the 10K in September with her friend Caroline, who has been training "
    "since March."
)


def facts_of(text: str, speaker: str | None = "Melanie", when: datetime = MAY8, eid: str = "e1",
             role: str | None = "user") -> list[Fact]:
    return BuiltinLLM().extract_facts([Episode(eid, text, when, speaker=speaker, role=role)])


# --- built-in -------------------------------------------------------------------------------


def test_builtin_is_deterministic() -> None:
    eps = [Episode("a", "I moved to Boston last year. I love hiking!", MAY8, speaker="Melanie"),
           Episode("b", "Yesterday I adopted a dog named Rex.", MAY8, speaker="Caroline")]
    a, b = BuiltinLLM(), BuiltinLLM()
    assert a.summarize(STORY) == b.summarize(STORY) == a.summarize(STORY)
    assert a.gist(STORY) == b.gist(STORY)
    assert a.extract_facts(eps) == b.extract_facts(eps) == a.extract_facts(list(eps))


def test_yesterday_becomes_an_absolute_date() -> None:
    [fact] = facts_of("I moved to Boston yesterday.", speaker="Caroline")
    assert fact.text == "Caroline moved to Boston on 7 May 2023."
    assert fact.source_ids == ["e1"] and fact.valid_from == MAY8


@pytest.mark.parametrize(("text", "expected"), [
    ("I moved there last year.", "in 2022"),
    ("We met two days ago.", "on 6 May 2023"),
    ("The trip is next month.", "in June 2023"),
    ("I painted it last Friday.", "on 5 May 2023"),
    ("I will see the doctor on Friday.", "on 12 May 2023"),  # future tense: the coming Friday
    ("I saw the doctor on Friday.", "on 5 May 2023"),
    ("Three weeks ago I started.", "In the week of 17 April 2023"),
    ("I have been busy since last week.", "since the week of 1 May 2023"),
    ("We went camping last weekend.", "on the weekend of 6 May 2023"),
    ("It rained the day before yesterday.", "on 6 May 2023"),
    ("I start a new job tomorrow.", "on 9 May 2023"),
    ("A few days ago it snowed.", "A few days before 8 May 2023"),
])
def test_relative_dates(text: str, expected: str) -> None:
    assert expected in resolve_relative_dates(text, MAY8)


def test_first_person_is_the_speaker_and_only_in_user_turns() -> None:
    # The built-in used to rewrite any sentence ("I'm an AI assistant, so I cannot ..." became "Alice is an
    # AI assistant, so alice cannots ..."); now a fact is a pattern restated from a template, by its speaker.
    [fact] = facts_of("I adopted a puppy named Biscuit last month.")
    assert fact.text == "Melanie adopted a puppy named Biscuit in April 2023." and fact.subject == "melanie"
    reply = "I'm an AI assistant, so I cannot browse the web in real time. I live in the cloud."
    assert facts_of(reply, speaker="assistant", role="assistant") == []
    assert facts_of("I live in Berlin.", speaker="search", role="tool") == []
    # The first sentence is no pattern, whoever says it; the second is, when a user says it.
    assert [f.text for f in facts_of(reply, speaker="alice", role="user")] == ["Alice lives in the cloud."]
    # Without a speaker, first person cannot be resolved: such sentences are dropped.
    assert facts_of("I live in Berlin.", speaker=None) == []
    assert [f.text for f in facts_of("Bob lives in Berlin.", speaker=None, role=None)] == ["Bob lives in Berlin."]


def test_only_understood_statements_become_facts() -> None:
    texts = [f.text for f in facts_of(
        "Hey Caroline! How are you? It was so much fun. You should come too. Where do I live? "
        "Thanks! I finished my first pottery class. Me too! I think I live in Rome. I will move to Paris. "
        "I no longer live in Oslo. I live in Berlin, but not for long. I like it.")]
    assert texts == []
    assert [f.text for f in facts_of("Oh, I live in Berlin with my wife. I'm vegetarian!")] == \
        ["Melanie lives in Berlin.", "Melanie is vegetarian."]


def test_keys_make_contradictions_detectable() -> None:
    old = facts_of("I moved to Boston last year. I love pizza.", eid="e1")
    new = facts_of("I live in Seattle now. I hate pizza. I love tea.", when=datetime(2024, 2, 1), eid="e2")
    keyed = {(f.attribute, f.value) for f in old + new}
    assert {("residence", "boston"), ("residence", "seattle"), ("opinion:pizza", "positive"),
            ("opinion:pizza", "negative"), ("opinion:tea", "positive")} <= keyed
    boston, pizza_yes = old
    seattle, pizza_no, tea = new
    assert seattle.contradicts(boston) and pizza_no.contradicts(pizza_yes)
    assert not tea.contradicts(pizza_yes) and not seattle.contradicts(pizza_no)
    assert seattle.valid_from is not None and boston.valid_from is not None
    assert seattle.valid_from > boston.valid_from


@pytest.mark.parametrize(("text", "key"), [
    ("I work at Google.", ("employer", "google")),
    ("I'm 32 years old.", ("age", "32")),
    ("I'm married.", ("relationship_status", "married")),
    ("My favorite color is blue.", ("favorite_color", "blue")),
    ("I work as a nurse at the clinic.", ("occupation", "nurse")),
    ("My sister lives in Austin.", ("residence", "austin")),
])
def test_simple_patterns(text: str, key: tuple[str, str]) -> None:
    [fact] = facts_of(text)
    assert (fact.attribute, fact.value) == key
    assert fact.subject == ("melanie's sister" if "sister" in text else "melanie")


def test_repeated_statement_is_one_fact_with_all_sources() -> None:
    llm = BuiltinLLM()
    facts = llm.extract_facts([Episode("a", "Melanie lives in Boston.", MAY8),
                               Episode("b", "Melanie lives in Boston!", datetime(2023, 6, 1))])
    assert len(facts) == 1
    assert facts[0].source_ids == ["a", "b"] and facts[0].valid_from == datetime(2023, 6, 1)


def test_summary_is_shorter_and_gist_is_short() -> None:
    llm = BuiltinLLM()
    summary, gist = llm.summarize(STORY), llm.gist(STORY)
    assert 0 < len(summary) <= 0.6 * len(STORY)
    assert "Melanie" in summary and "$300" in summary
    assert 8 <= len(gist.split()) <= GIST_MAX_WORDS
    assert "$300" in gist and "Melanie" in gist
    # One statement has no faithful summary: the demotion that asks keeps the text (it used to drop the
    # leading clause and keep "Caroline finally decided to take the weekend off...", losing the why).
    one = ("After a long and difficult week at the hospital, Caroline finally decided to take the weekend off "
           "and visit her grandmother in Vermont.")
    assert llm.summarize(one) == one
    assert len(llm.gist(one).split()) <= GIST_MAX_WORDS
    # Very short texts are their own summary and gist; empty stays empty.
    assert llm.summarize("Melanie likes tea.") == "Melanie likes tea." == llm.gist("Melanie likes tea.")
    assert llm.summarize("  ") == "" and llm.extract_facts([]) == []


def test_builtin_usage_counts_calls() -> None:
    llm = BuiltinLLM()
    with track_usage() as used:
        llm.summarize(STORY)
        llm.gist(STORY)
    assert used.calls == 2 and used.total_tokens == 0 and used.cost_usd == 0
    assert llm.usage.calls == 2


# --- gateway (litellm mock) -------------------------------------------------------------------

EPISODES = [Episode("e1", "I moved to Boston yesterday.", MAY8, speaker="Melanie"),
            Episode("e2", "I adopted a dog.", datetime(2023, 5, 9), speaker="Melanie")]
GOOD = json.dumps({"facts": [
    {"text": "Melanie moved to Boston on 7 May 2023.", "subject": "Melanie", "attribute": "Lives In",
     "value": "Boston", "source_ids": ["e1"], "confidence": 0.9},
    {"text": "Melanie adopted a dog.", "subject": "Melanie", "attribute": None, "value": None,
     "source_ids": ["e2", "e1"], "confidence": 0.8},
]})


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records what the gateway sends to litellm (the mock still answers)."""
    import litellm

    calls: list[dict[str, Any]] = []
    real = litellm.completion

    def completion(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", completion)
    return calls


def test_gateway_valid_json_gives_facts(spy: list[dict[str, Any]]) -> None:
    g = LiteLLMGateway("gpt-4o-mini", mock_response=GOOD)
    facts = g.extract_facts(EPISODES)
    assert [f.text for f in facts] == ["Melanie moved to Boston on 7 May 2023.", "Melanie adopted a dog."]
    # "Lives In" (the old prompt's lives_in) is read as today's residence slot.
    assert facts[0].key == ("melanie", "residence") and facts[0].value == "boston"
    assert facts[1].key is None and facts[1].source_ids == ["e2", "e1"]
    assert facts[1].valid_from == datetime(2023, 5, 9)  # the latest source
    assert len(spy) == 1 and spy[0]["response_format"] == {"type": "json_object"}
    assert "8 May 2023" in spy[0]["messages"][1]["content"]  # episode dates reach the model


def test_gateway_sends_roles_and_speakers_and_skips_batches_without_a_user(spy: list[dict[str, Any]]) -> None:
    g = LiteLLMGateway("gpt-4o-mini", mock_response=GOOD)
    turns = [Episode("e1", "I moved to Boston yesterday.", MAY8, speaker="Melanie", role="user"),
             Episode("e2", "I adopted a dog.", MAY8, speaker="Melanie"),
             Episode("e3", "I'm an AI assistant, so I cannot browse the web.", MAY8, speaker="helper",
                     role="assistant")]
    g.extract_facts(turns)
    sent = [json.loads(line) for line in spy[0]["messages"][1]["content"].split("Episodes:\n")[1].splitlines()]
    assert [(e["id"], e["role"], e["speaker"]) for e in sent] == [
        ("e1", "user", "Melanie"), ("e2", None, "Melanie"), ("e3", "assistant", "helper")]
    # Nothing a user said: no fact can come of it, so no call is made.
    assert g.extract_facts(turns[2:]) == [] and len(spy) == 1
    assert g.extract_facts([Episode("w", "Related things I remember:\n  - x", MAY8, role="user")]) == []
    assert len(spy) == 1


def test_gateway_retries_after_invalid_json(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = script_litellm(monkeypatch, ["Sure! Here are the facts:", GOOD])
    g = LiteLLMGateway("gpt-4o-mini", max_retries=2)
    assert len(g.extract_facts(EPISODES)) == 2
    assert len(sent) == 2
    feedback = sent[1]["messages"][-1]["content"]
    assert "rejected" in feedback and "invalid JSON" in feedback
    assert sent[1]["messages"][-2] == {"role": "assistant", "content": "Sure! Here are the facts:"}
    assert g.usage.calls == 2 and g.usage.rejected_outputs == 1


@pytest.mark.parametrize(("answer", "reason"), [
    ("this is not json", "invalid JSON"),
    ('{"facts": [{"text": "x"}]}', "wrong schema"),
    ('{"facts": [{"text": "a", "subject": "b", "source_ids": ["zz"], "confidence": 1}]}', "not episodes"),
    ("   ", "empty answer"),
    ("", "empty answer"),
])
def test_gateway_gives_up_with_the_reason(answer: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    script_litellm(monkeypatch, [answer, answer])
    g = LiteLLMGateway("gpt-4o-mini", max_retries=1)
    with pytest.raises(LLMOutputError, match=reason) as e:
        g.extract_facts(EPISODES)
    assert e.value.status == 502 and e.value.code == "llm_output_invalid"
    assert len(e.value.details["reasons"]) == 2 and e.value.details["task"] == "extract_facts"
    assert g.usage.calls == 2


def test_gateway_usage_is_accounted_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    script_litellm(monkeypatch, ['{"summary": "Melanie moved to Boston."}', '{"gist": "Melanie Boston move"}', GOOD])
    g = LiteLLMGateway("gpt-4o-mini")
    text = "Melanie told Caroline that she moved to Boston yesterday because of a new job at a hospital."
    with track_usage() as outer:
        assert g.summarize(text) == "Melanie moved to Boston."
        with track_usage() as inner:
            assert g.gist(text) == "Melanie Boston move"
    g.extract_facts(EPISODES)
    assert inner.calls == 1 and outer.calls == 2 and g.usage.calls == 3
    assert inner.prompt_tokens > 0 and inner.completion_tokens > 0
    assert outer.total_tokens == 2 * inner.total_tokens
    assert g.usage.cost_usd >= outer.cost_usd >= inner.cost_usd >= 0
    assert set(outer.as_dict()) >= {"prompt_tokens", "completion_tokens", "cost_usd", "calls"}


def test_gateway_rejects_a_summary_longer_than_the_text() -> None:
    text = "Melanie told Caroline that she moved to Boston yesterday for a new job."
    g = LiteLLMGateway("gpt-4o-mini", max_retries=0, mock_response=json.dumps({"summary": text + " Indeed."}))
    with pytest.raises(LLMOutputError, match="shorter than the text"):
        g.summarize(text)


def test_gateway_call_errors_are_retryable_llm_call_errors() -> None:
    with pytest.raises(LLMCallError) as e:
        LiteLLMGateway("gpt-4o-mini", mock_response="litellm.RateLimitError").gist(STORY)
    assert e.value.retryable


def test_get_llm() -> None:
    assert isinstance(get_llm(None), BuiltinLLM)
    assert isinstance(get_llm("  "), BuiltinLLM)
    gw = get_llm("ollama/llama3")
    assert isinstance(gw, LiteLLMGateway) and gw.model == "ollama/llama3"


def test_a_chat_turn_summary_keeps_its_statements_and_drops_the_packaging() -> None:
    # Whole filler sentences go; the statements stay word for word (the old summarizer also dropped
    # "so" and rewrote the caption, which is how it came to cut names and words).
    llm = BuiltinLLM()
    turn = ("[8 May 2023] Melanie: Hey Caroline! Good to see you! I'm swamped with the kids & work. "
            "What's up with you? Anything new?")
    summary = llm.summarize(turn)
    assert summary == "[8 May 2023] Melanie: I'm swamped with the kids & work."
    # Dropping two short openers from a long turn is not worth a second copy (not <= 75%): no summary.
    turn = ("[8 May 2023] Caroline: Hey Mel! Good to see you! I went to a LGBTQ support group yesterday and it "
            "was so powerful. [shares an image: a photo of a dog walking past a wall with a painting]")
    assert llm.summarize(turn) == turn
    # A turn that is only packaging has no summary either (rather than becoming nothing or the speaker).
    only = "Melanie: Wow, that's so cool, Caroline! Thanks so much for telling me!"
    assert llm.summarize(only) == only


def test_a_turn_of_one_statement_has_no_summary() -> None:
    # These used to be cut by clauses ("[8 May 2023] Caroline: I'm keen on counseling", "... Audrey: Keep
    # going"): each is one statement, so there is nothing to leave out and no summary is stored.
    from memsvc.llm.builtin import builtin_summary

    for text in (
        "[8 May 2023] Caroline: I'm keen on counseling or working in mental health - I'd love to support "
        "those with similar issues.",
        "[6 September 2023] Audrey: Keep going, you'll find a great place to live for your pet soon!",
    ):
        assert builtin_summary(text) is None
