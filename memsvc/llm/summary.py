"""Extractive summaries of short, chatty texts: one turn of a conversation, one agent observation.

A chat turn is mostly packaging ("Hey Mel! Wow, that's so cool!") around one or two statements. Its
summary keeps the statements a reader would need to answer a question about it (who did what, names,
numbers, places, what a shared photo shows) and drops greetings, interjections, vocatives and
intensifiers, so a context can hold about twice as many memories at summary fidelity. The result stays
readable text with the speaker and any leading "[date]", not a bag of keywords (that is the gist).

Pure functions over strings; `BuiltinLLM.summarize` calls `summarize_turn` for texts that look like one.
"""

from __future__ import annotations

import re

from memsvc.turns import TURN_PREFIX

_CAPTION = re.compile(r"\s*\[shares? (?:an? )?(?:image|photo|picture)s?:\s*(?:an? )?"
                      r"(?:(?:photo|picture|image|photography)\b\s*)?(?:of\s+)?"
                      r"(?P<what>[^\]]*)\]", re.I)
# Openers that carry no statement: "Hey Mel!", "Wow,", "Haha yeah,", "Thanks, Caroline!".
_LEAD = re.compile(r"^(?:(?i:hey|hi|hello|oh|ooh|wow|whoa|yeah|yep|yes|yay|well|ok|okay|haha|hahaha|lol|aw+|omg|um+|"
                   r"uh+|hm+|ah+|sure|cool|great|awesome|amazing|nice|thanks|thank you|totally|absolutely|"
                   r"congrats|congratulations|by the way|btw|anyway)\b(?:,?\s+[A-Z][a-z]+)?\s*[,!.]*\s*)+")
_VOCATIVE = re.compile(r",\s*[A-Z][a-z]+(?=\s*[.!?]*$)")
_INTENSIFIERS = re.compile(r"\b(?:so|really|very|just|totally|pretty|super|actually|definitely|absolutely|truly|"
                           r"quite|kinda|sorta|literally|honestly|basically)\s+(?=\w)", re.I)
# Whole sentences that are reactions, not statements ("That's so cool!", "Sounds great.").
_REACTION = re.compile(r"^(?:that(?:'s| is| was| sounds| looks)|sounds|looks|what a|how (?:cool|awesome|great|nice|"
                       r"sweet|lovely|fun|amazing)|so (?:cool|happy|glad|proud)|i'm so (?:happy|glad|proud)|"
                       r"good (?:to|for)|glad|love (?:it|that)|you(?:'re| are) (?:so |really )?(?:welcome|right)|"
                       r"(?:good|nice|great) to (?:see|hear|meet|chat|talk)|take care|talk (?:to you )?(?:soon|later)|"
                       r"see you|bye|"
                       r"me too|same here|no worries|of course)\b", re.I)
_WORD = re.compile(r"[A-Za-z0-9$€£][\w'$%.-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_FUNCTION = frozenset(re.findall(r"\S+", """
a an the and or but to of in on at for with by from is am are was were be been it its it's this that these
those i i'm i've i'd you you're your we we're our they them their he she his her me my so do did does have has had not
no can will would could should what how why when where who which if as just really very about up out some any all"""))

SUMMARY_SHARE = 0.5  # of the body's characters a summary aims at (a chat turn is short already)
MIN_SUMMARY_CHARS = 32


def looks_like_turn(text: str) -> bool:
    """A chat turn or a short note: the sentence-picking summarizer has too little to pick from."""
    return len(text) <= 600


def _content_words(sentence: str) -> list[str]:
    return [w for w in _WORD.findall(sentence) if w.lower() not in _FUNCTION and len(w) > 1]


def tighten(sentence: str) -> str:
    """The sentence without its opener, trailing vocative and intensifiers."""
    s = _LEAD.sub("", sentence.strip())
    s = _VOCATIVE.sub("", s)
    s = _INTENSIFIERS.sub("", s)
    s = " ".join(s.split())
    return s[:1].upper() + s[1:] if s else s


def _statements(body: str) -> list[str]:
    out = []
    for raw in _SENTENCE_END.split(body):
        s = tighten(raw)
        if not s or _REACTION.match(s) and len(_content_words(s)) < 4:
            continue
        if len(_content_words(s)) < 2:
            continue
        out.append(s)
    return out


def _informativeness(sentence: str) -> float:
    words = _WORD.findall(sentence)
    content = _content_words(sentence)
    names = sum(1 for i, w in enumerate(words) if i > 0 and w[:1].isupper() and w != "I")
    numbers = sum(1 for w in words if any(ch.isdigit() for ch in w))
    question = 0.5 if sentence.rstrip().endswith("?") else 1.0  # a question states less than an answer
    return question * (len(content) + 1.5 * names + numbers) / max(len(words), 1) ** 0.5


def summarize_turn(text: str) -> str:
    """The statements of a chat turn, most informative first until about half its length, in order."""
    text = " ".join(text.split())
    prefix = TURN_PREFIX.match(text).group(0)  # type: ignore[union-attr]  # kept as it is
    body = text[len(prefix):]
    caption = ""
    m = _CAPTION.search(body)
    if m:
        caption = f"[photo: {' '.join(m.group('what').split()[:12])}]"
        body = (body[: m.start()] + body[m.end():]).strip()
    statements = _statements(body)
    if not statements and not caption:
        statements = [tighten(body)] if body else []
    budget = max(int(len(body) * SUMMARY_SHARE), MIN_SUMMARY_CHARS)
    order = sorted(range(len(statements)), key=lambda i: (-_informativeness(statements[i]), i))
    kept: list[int] = []
    used = 0
    for i in order:
        if kept and used + len(statements[i]) > budget:
            continue
        kept.append(i)
        used += len(statements[i]) + 1
    parts = [statements[i] for i in sorted(kept)]
    if caption:
        parts.append(caption)
    summary = prefix + " ".join(parts)
    return summary if len(summary) < len(text) else text
