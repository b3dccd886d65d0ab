"""Synthetic but varied agent-memory sentences (no external data), reproducible from a seed."""

from __future__ import annotations

import random

PEOPLE = ["Alice", "Bob", "Carol", "Dan", "Erin", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca"]
VERBS = ["visited", "called", "cooked dinner with", "argued with", "went hiking with", "emailed", "met",
         "played chess with", "painted with", "studied with", "travelled to Lisbon with", "adopted a cat with"]
TOPICS = ["the quarterly budget", "a new job offer", "their sister's wedding", "a broken laptop",
          "learning Portuguese", "a marathon in spring", "the garden fence", "an allergy to peanuts",
          "a trip to Kyoto", "the book club", "a jazz concert", "moving to Berlin", "a sourdough recipe",
          "the dentist appointment", "a promotion", "volunteering at the shelter"]
FEELINGS = ["happy", "worried", "excited", "tired", "relieved", "curious", "annoyed", "proud"]


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(PEOPLE, 2)
        out.append(
            f"{a} {rng.choice(VERBS)} {b} and talked about {rng.choice(TOPICS)}; "
            f"{a} felt {rng.choice(FEELINGS)} about {rng.choice(TOPICS)} (note {i})."
        )
    return out


def queries(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [f"What did {rng.choice(PEOPLE)} say about {rng.choice(TOPICS)}?" for _ in range(n)]
