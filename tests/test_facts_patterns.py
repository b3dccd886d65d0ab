"""The offline fact extractor's patterns (memsvc.llm.facts), without a database: the exact sentence
each supported pattern writes, its (subject, attribute, value) key, and sentences that must make
no fact (most of them were false facts once: issue 14, or found by running LoCoMo / LongMemEval
turns through the extractor)."""

from __future__ import annotations

from datetime import datetime

import pytest

from memsvc.llm import BuiltinLLM, Episode
from memsvc.llm.facts import strip_wrapper

WHEN = datetime(2024, 6, 3, 12)  # a Monday


def facts(text: str, speaker: str | None = "alice", role: str | None = "user") -> list[tuple[str, str, str, str]]:
    out = BuiltinLLM().extract_facts([Episode("e", text, WHEN, speaker=speaker, role=role)])
    return [(f.text, f.subject, f.attribute or "", f.value or "") for f in out]


@pytest.mark.parametrize(("said", "fact", "attribute", "value"), [
    ("I live in Berlin.", "Alice lives in Berlin.", "residence", "berlin"),
    ("I'm based in New York City now.", "Alice lives in New York City.", "residence", "new york city"),
    ("I moved to Lisbon in 2024.", "Alice moved to Lisbon in 2024.", "residence", "lisbon"),
    ("I moved to Lisbon last year.", "Alice moved to Lisbon in 2023.", "residence", "lisbon"),
    ("I just moved to Lisbon two years ago with my family.", "Alice moved to Lisbon in 2022.", "residence", "lisbon"),
    ("I moved to Porto yesterday!", "Alice moved to Porto on 2 June 2024.", "residence", "porto"),
    ("I work as a nurse at St. Mary's hospital.", "Alice works as a nurse.", "occupation", "nurse"),
    ("I'm a software engineer.", "Alice is a software engineer.", "occupation", "software engineer"),
    ("I work at St. Mary's Hospital.", "Alice works at St. Mary's Hospital.", "employer", "st mary's hospital"),
    ("I work for Google.", "Alice works for Google.", "employer", "google"),
    ("My name is Alice Martin.", "Alice's name is Alice Martin.", "name", "alice martin"),
    ("I like green tea.", "Alice likes green tea.", "opinion:green tea", "positive"),
    ("I love jazz!", "Alice loves jazz.", "opinion:jazz", "positive"),
    ("I hate cilantro, it tastes like soap.", "Alice hates cilantro.", "opinion:cilantro", "negative"),
    ("I don't like meetings.", "Alice does not like meetings.", "opinion:meetings", "negative"),
    ("I can't stand traffic.", "Alice cannot stand traffic.", "opinion:traffic", "negative"),
    ("I prefer tea over coffee.", "Alice prefers tea over coffee.", "opinion:tea", "positive"),
    ("I'm a huge fan of Lord of the Rings!", "Alice is a fan of Lord of the Rings.", "opinion:lord of the rings",
     "positive"),
    ("I'm allergic to peanuts.", "Alice is allergic to peanuts.", "allergy:peanuts", "yes"),
    ("My favorite color is blue.", "Alice's favorite color is blue.", "favorite_color", "blue"),
    ("My partner is Sam.", "Alice's partner is Sam.", "partner", "sam"),
    ("My dog's name is Rex.", "Alice's dog's name is Rex.", "dog_name", "rex"),
    ("I have a dog named Rex.", "Alice has a dog named Rex.", "pet:rex", "dog"),
    ("I adopted a rescue cat named Luna last week.",
     "Alice adopted a rescue cat named Luna in the week of 27 May 2024.", "pet:luna", "rescue cat"),
    ("I'm 34 years old.", "Alice is 34 years old.", "age", "34"),
    ("I'm married.", "Alice is married.", "relationship_status", "married"),
    ("I'm vegetarian.", "Alice is vegetarian.", "diet", "vegetarian"),
    ("I'm from Portugal.", "Alice is from Portugal.", "origin", "portugal"),
    ("I study computer science at MIT.", "Alice studies computer science.", "studies", "computer science"),
    ("I have two kids.", "Alice has two kids.", "children_count", "2"),
])
def test_each_pattern_writes_its_exact_sentence(said: str, fact: str, attribute: str, value: str) -> None:
    assert facts(said) == [(fact, "alice", attribute, value)]


def test_third_person_subjects_agree_and_keep_their_own_name() -> None:
    assert facts("Bob lives in Oslo. Bob doesn't like dogs. My sister lives in Austin. User prefers dark mode.",
                 role=None) == [
        ("Bob lives in Oslo.", "bob", "residence", "oslo"),
        ("Bob does not like dogs.", "bob", "opinion:dogs", "negative"),
        ("Alice's sister lives in Austin.", "alice's sister", "residence", "austin"),
        ("Alice prefers dark mode.", "alice", "opinion:dark mode", "positive"),
    ]
    assert facts("Bob live in Oslo.", role=None) == []  # no agreement: not the pattern
    # A speaker from the metadata is used as given; a one-word lowercase id is capitalized, others kept.
    assert facts("I live in Oslo.", speaker="Dr. Kim")[0][0] == "Dr. Kim lives in Oslo."
    assert facts("I live in Oslo.", speaker="demo-user")[0][0] == "demo-user lives in Oslo."


def test_a_statement_quoted_after_a_colon_is_the_reporters() -> None:
    # issue 14: "Bob told the assistant again: Bob hates cilantro." made no fact; the quoted statement is read
    # on its own, its "I" being the named reporter, never the writer.
    assert facts("Bob told the assistant again: Bob hates cilantro.") == [
        ("Bob hates cilantro.", "bob", "opinion:cilantro", "negative")]
    assert facts('Yesterday Maria Lopez told me: "I work for Google."') == [
        ("Maria Lopez works for Google.", "maria lopez", "employer", "google")]
    assert facts("Bob said: I live in Oslo.", speaker=None) == [("Bob lives in Oslo.", "bob", "residence", "oslo")]
    # A paraphrase, a hedge, a negated report, a label before the colon: no fact, and never the writer's.
    for said in ("Bob said he lives in Oslo.", "Bob said: maybe I live in Oslo.", "Bob never said: I live in Oslo.",
                 "Note said: I live in Oslo.", "Error: Bob said nothing.", "Sarah: I live in Madrid."):
        assert facts(said) == [], said


@pytest.mark.parametrize("said", [
    # issue 14
    "I'm an AI assistant, so I cannot browse the web in real time.",
    "Related things I remember:\n  - I live in Berlin\n  - Bob hates cilantro",
    "Long-term memory (from memsvc): what you know about this user.\n\n## Facts\n- I live in Paris.",
    # questions, plans, hedges, negations, conditionals
    "Where do I live?", "I think I live in Berlin.", "I will move to Rome.", "Maybe I like jazz.",
    "I no longer live in Oslo.", "I live in Berlin, but not for long.", "If I live in Paris, I will be happy.",
    "I'd love to live in Lisbon.", "I used to live in Rome.",
    # values that point outside the sentence or say something else
    "I like it.", "I love you.", "I like your idea.", "I love the color and texture.",
    "I love the thought Nate!", "I really like the Athleisure Chic idea.", "I like also cheese pizza and prosciutto.",
    "I love fantasy and sci-fi movies.", "I prefer routes with minimal traffic.", "I prefer to work at night.",
    "I love hiking in the mountains.", "I'm a fan of both classical like Bach and Mozart.",
    "My favorite is a park with a forest trail.", "My hard work is paying off.",
    "My alma mater is the same one where Rachel studied.", "My flight is at 6pm.", "My birthday is tomorrow.",
    "My sister is Anna.", "My problem is that I cannot sleep.",
    "Engineering studies are still going strong.", "I'm 34 years old and I'm vegetarian.",
    # labels, tool output, a "Name:" in the content (never a speaker), other languages
    "Error: connection refused", "Note: I live in Berlin.", "Sarah: I live in Madrid.", "TODO: renew passport.",
    "Ich wohne seit 2020 in Hamburg und arbeite als Lehrerin.", "Я живу в Москве и люблю джаз.",
    "J'habite à Paris.",
])
def test_no_fact(said: str) -> None:
    assert facts(said) == []


@pytest.mark.parametrize("role", ["assistant", "tool", "system", "developer"])
def test_only_user_turns_and_role_less_notes_speak_for_the_user(role: str) -> None:
    assert facts("I live in Berlin. Bob hates cilantro.", role=role) == []
    assert facts("I live in Berlin.", role=None) == [("Alice lives in Berlin.", "alice", "residence", "berlin")]
    assert facts("I live in Berlin.", speaker=None) == []  # first person with nobody known to say it


def test_wrapper_text_is_cut_at_its_header() -> None:
    assert strip_wrapper("I live in Berlin.\nRelated things I remember:\n  - I live in Paris") == "I live in Berlin."
    assert strip_wrapper("## Facts\n- x") == ""
    assert facts("I live in Berlin.\nRelated things I remember:\n  - I live in Paris") == [
        ("Alice lives in Berlin.", "alice", "residence", "berlin")]


def test_multi_valued_relations_never_share_a_slot() -> None:
    keys = {(a, v) for _, _, a, v in facts("I like tea. I like coffee. I have a cat named Tom. I have a cat named Mia. "
                                           "I'm allergic to peanuts. I'm allergic to shellfish.")}
    assert keys == {("opinion:tea", "positive"), ("opinion:coffee", "positive"), ("pet:tom", "cat"),
                    ("pet:mia", "cat"), ("allergy:peanuts", "yes"), ("allergy:shellfish", "yes")}
