"""BuiltinLLM: the deterministic, offline, extractive `LLM` used when no model is configured.

No model, no randomness, no clock: the same input gives the same output on every machine, so the
embedded default works offline and consolidation re-runs are idempotent. It is a floor, not a
rival to a real model: summaries pick sentences, gists drop function words, facts are the
speaker's own declarative sentences made self-contained (names for pronouns, absolute dates for
relative ones) with (subject, attribute) keys for a few common single-valued relations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property

from memsvc.llm.gateway import (
    GIST_MAX_WORDS,
    Episode,
    Fact,
    Usage,
    UsageMeter,
    normalize_attribute,
    normalize_key,
)
from memsvc.llm.summary import faithful_summary, keyword_gist

MIN_FACT_WORDS = 3


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP = _wordset("""a about above after again against all also am an and any are aren't as at be because
been before being below between both but by can can't could couldn't did didn't do does doesn't doing
don't down during each few for from further had hadn't has hasn't have haven't having he he'd he'll
he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it
it's its itself just let's me more most my myself nor of off on once only or other ought our ours
ourselves out over own same she she'd she'll she's should so some such than that that's the their
theirs them themselves then there there's these they they'd they'll they're they've this those through
to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll
you're you've your yours yourself yourselves really like get got gonna yeah oh wow okay ok well
actually lot lots thing things""")
NEGATIONS = frozenset({"not", "no", "never", "n't", "nor", "without"})
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_ABBREV = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e|approx)\.$", re.I)
_TOKEN = re.compile(r"[$€£]?\d[\d,.:%]*[A-Za-z]*|[A-Za-z][A-Za-z'-]*")


def split_sentences(text: str) -> list[str]:
    parts: list[str] = []
    for piece in _SENT_SPLIT.split(text.replace("\u2019", "'").strip()):
        piece = " ".join(piece.split())
        if not piece:
            continue
        if parts and _ABBREV.search(parts[-1]):
            parts[-1] += " " + piece
        else:
            parts.append(piece)
    return parts


def _content(tokens: Sequence[str]) -> list[str]:
    return [t for t in tokens if t.lower() not in STOP and (len(t) > 1 or t.isdigit())]


# ---------------------------------------------------------------------------------------------
# Relative dates

_NUMS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
         "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a couple": 2}
_VAGUE = ("a few", "several", "some")
_NUM_RE = r"\d+|a couple of|a couple|a few|several|some|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"  # noqa: E501
_PART = r"morning|afternoon|evening|night"
_DATE_RE = re.compile(
    r"\b(?:(?P<dby>(?:the\s+)?day\s+before\s+yesterday)|(?P<dat>(?:the\s+)?day\s+after\s+tomorrow)"
    rf"|(?P<rel>yesterday|today|tomorrow|tonight)(?:\s+(?P<relpart>{_PART}))?"
    rf"|(?P<thispart>this|last)\s+(?P<part>{_PART})|earlier\s+today"
    rf"|(?P<n>{_NUM_RE})\s+(?P<unit>day|week|month|year)s?\s+ago"
    r"|(?P<which>last|next|this|coming)\s+(?P<span>weekend|week|month|year)"
    rf"|(?:(?P<on>on)\s+)?(?:(?P<wwhich>last|next|this|coming)\s+)?(?P<wday>{'|'.join(WEEKDAYS)}))\b",
    re.I,
)
_FUTURE = re.compile(r"\b(?:will|won't|'ll|going to|gonna|plan(?:s|ning)?\s+to|about to|next|tomorrow|soon|"
                     r"upcoming|can't wait|looking forward|(?:am|is|are|'m|'s|'re)\s+\w+ing)\b", re.I)
_PREPS = _wordset("on in at since until till by before after from of to during for through around")


def _d(d: date) -> str:
    return f"{d.day} {MONTHS[d.month - 1].title()} {d.year}"


def _month(d: date, shift: int) -> str:
    idx = d.year * 12 + d.month - 1 + shift
    return f"{MONTHS[idx % 12].title()} {idx // 12}"


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def resolve_relative_dates(sentence: str, when: datetime | date) -> str:
    """Replace relative time expressions with absolute dates seen from `when` (the episode date):
    "yesterday" -> "on 7 May 2023", "last year" -> "in 2022", "two weeks ago" -> "in the week of
    24 April 2023", "last Friday" -> "on 5 May 2023". Bare weekdays count forward when the
    sentence talks about the future, backward otherwise; "next Friday" is the first Friday after."""
    day = when.date() if isinstance(when, datetime) else when
    future = bool(_FUTURE.search(sentence))

    def render(m: re.Match[str]) -> str:
        g = {k: (v.lower() if v else v) for k, v in m.groupdict().items()}
        prep, core = _render(g, day, future)
        before = sentence[: m.start()].split()
        if prep and before and before[-1].lower() in _PREPS:
            prep = ""  # "since last year" -> "since 2022", not "since in 2022"
        return f"{prep} {core}".strip()

    out = _DATE_RE.sub(render, sentence)
    return out[:1].upper() + out[1:] if out else out


def _render(g: dict[str, str | None], day: date, future: bool) -> tuple[str, str]:
    if g["dby"]:
        return "on", _d(day - timedelta(days=2))
    if g["dat"]:
        return "on", _d(day + timedelta(days=2))
    if g["rel"]:
        d = day + timedelta(days={"yesterday": -1, "tomorrow": 1}.get(g["rel"], 0))
        part = g["relpart"] or ("night" if g["rel"] == "tonight" else None)
        return ("on", f"the {part} of {_d(d)}") if part else ("on", _d(d))
    if g["part"]:
        back = g["thispart"] == "last" and g["part"] in ("night", "evening")
        return "on", f"the {g['part']} of {_d(day - timedelta(days=1 if back else 0))}"
    if g["unit"]:
        n_word, unit = g["n"] or "", g["unit"] or ""
        if n_word in _VAGUE:
            return "", f"{n_word} {unit}s before {_d(day)}"
        n = int(n_word) if n_word.isdigit() else _NUMS[n_word]
        if unit == "day":
            return "on", _d(day - timedelta(days=n))
        if unit == "week":
            return "in", f"the week of {_d(_monday(day - timedelta(weeks=n)))}"
        if unit == "month":
            return "in", _month(day, -n)
        return "in", str(day.year - n)
    if g["span"]:
        step = {"last": -1, "next": 1, "coming": 1}.get(g["which"] or "", 0)
        if g["span"] == "week":
            return "in", f"the week of {_d(_monday(day) + timedelta(weeks=step))}"
        if g["span"] == "weekend":
            return "on", f"the weekend of {_d(_monday(day) + timedelta(days=5 + 7 * step))}"
        if g["span"] == "month":
            return "in", _month(day, step)
        return "in", str(day.year + step)
    if g["wday"]:
        target = WEEKDAYS.index(g["wday"])
        forward = g["wwhich"] in ("next", "coming") or (g["wwhich"] != "last" and future)
        delta = ((target - day.weekday()) % 7 or 7) if forward else -((day.weekday() - target) % 7 or 7)
        return "on", _d(day + timedelta(days=delta))
    return "on", _d(day)  # "earlier today"


# ---------------------------------------------------------------------------------------------
# First person -> the speaker's name

_ADVERB = (r"(?:really|also|just|still|never|no longer|not|always|often|usually|sometimes|actually|"
           r"finally|recently|even|already|definitely|totally|absolutely|truly|now|only|mostly|generally|honestly|"
           r"basically|probably|\w+ly)")
_KEEP_VERB = _wordset("""can could will would shall should may might must was were did had went made took saw
got came gave found thought told became left felt brought began kept held wrote stood heard let meant
met ran paid sat spoke led read grew lost fell sent built understood drew broke spent cut drove bought
wore chose caught taught sold fought won slept swam sang ate drank flew forgot hid knew rode shook threw
woke hung bit blew dug fed fled lit put quit set shut hit hurt cost bet spread used can't couldn't won't
wouldn't didn't wasn't weren't shouldn't mustn't hadn't tried""")
_COMPANIONS = _wordset("husband wife partner boyfriend girlfriend friend friends sister brother mom dad mother "
                       "father kids children son daughter family he she they him her")
_THIRD = {"am": "is", "have": "has", "do": "does", "go": "goes", "don't": "doesn't", "haven't": "hasn't",
          "be": "is", "'m": "is"}


def _third_person(verb: str) -> str:
    low = verb.lower()
    if low in _THIRD:
        return _THIRD[low]
    if low in _KEEP_VERB or "'" in low or (low.endswith("ed") and not low.endswith("eed")):
        return verb
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"


def first_person_to_name(sentence: str, name: str) -> str:
    """"I love my dog" -> "Melanie loves Melanie's dog"; "we" -> "Melanie and others" (plural,
    so its verbs already agree)."""
    s = sentence
    s = re.sub(r"\bI'm\b", f"{name} is", s)
    s = re.sub(r"\bI've\b", f"{name} has", s)
    s = re.sub(r"\bI'll\b", f"{name} will", s)
    s = re.sub(r"\bI'd(?=\s+(\w+))",
               lambda m: f"{name} had" if re.fullmatch(r"been|\w+ed|gone|done|seen|never", m.group(1))
               else f"{name} would", s)

    def conjugate(m: re.Match[str]) -> str:
        before = m.string[: m.start()].split()
        # "Caroline and I love it", "my wife and I love it": a plural subject keeps its verb
        # (but "..., and I love it" is a new clause).
        plural = len(before) >= 2 and before[-1] == "and" and not before[-2].endswith((",", ";")) and (
            before[-2][:1].isupper() or before[-2].lower() in _COMPANIONS)
        return f"{name}{m.group(1)}{m.group(2) if plural else _third_person(m.group(2))}"

    s = re.sub(rf"\bI(\s+(?:{_ADVERB}\s+)*)([A-Za-z']+)", conjugate, s)
    s = re.sub(r"\bI\b", name, s)
    # Case-sensitive on purpose: "US" and "ME" are places, not pronouns.
    s = re.sub(r"\b(?:[Mm]e|[Mm]yself)\b", name, s)
    s = re.sub(r"\b(?:[Mm]y|[Mm]ine|[Oo]urs?)\b", f"{name}'s", s)
    s = re.sub(r"\b[Ww]e'(re|ve|ll|d)\b",
               lambda m: f"{name} and others " + {"re": "are", "ve": "have", "ll": "will", "d": "would"}[m.group(1)], s)
    s = re.sub(r"\b(?:[Ww]e|us)\b", f"{name} and others", s)
    return s


# ---------------------------------------------------------------------------------------------
# Self-contained declarative sentences, and their (subject, attribute, value)

# Chat filler before the statement, with an optional vocative: "Hey Mel!", "Wow, Caroline,".
_LEAD = re.compile(r"^(?:(?i:hey|hi|hello|oh|wow|yeah|yep|yes|well|so|ok|okay|haha|lol|aw+|omg|um+|uh+|hm+|ah+|"
                   r"sure|cool|great|awesome|nice|thanks|thank you|and|but|also|plus|by the way|btw|anyway)"
                   r"\b(?:,?\s+[A-Z][a-z]+)?\s*[,!.]*\s*)+")
_VOCATIVE_END = re.compile(r",\s*[A-Z][a-z]+\s*(?=[.!]*$)")  # "Totally agree, Mel."
# Sentences opening with these point outside themselves ("It was great") or lack a subject
# ("Sounds good"): not self-contained.
_DANGLING = _wordset("he she it they this that these those him them his its their such he's she's it's "
                     "that's they're they've they'll it'll it'd that'll here here's sounds looks seems feels "
                     "gonna gotta wanna")
_FIRST = re.compile(r"\b(?:I|I'm|I've|I'll|I'd|[Mm]e|[Mm]y|[Mm]ine|[Mm]yself|[Ww]e|us|[Oo]urs?)\b")
_SECOND = re.compile(r"\b(?:you|your|yours|yourself|you're|you've|you'll|you'd|ya|u)\b", re.I)
_IMPERATIVE = _wordset("keep let let's take check look see make try enjoy have congrats congratulations good please "
                       "tell remember don't do")
_HEDGE = re.compile(r"\b(?:maybe|might|probably|perhaps|i think|i guess|not sure|i suppose|kind of|sort of)\b",
                    re.I)

_SUBJ = r"(?P<subj>[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*){0,3}(?:'s\s+[a-z]+)?)"
_ADV = (r"(?:\s+(?:now|still|currently|also|recently|finally|just|already|actually|officially|really|"
        r"truly|absolutely|totally|definitely|so|even))*")
_VAL = (r"(?P<val>[^,.;:!?()\"]+?)(?=\s+(?:with|since|because|and|but|for|when|after|before|on|in|at|from|"
        r"to|now|anymore|again|last|next|this|who|which|where|so|as|while|during|until|every|near|"
        r"recently|together)\b|[,.;:!?()\"]|$)")
_NUM_WORD = r"\d+|one|two|three|four|five|six|seven|eight|nine|ten"
_OCCUPATIONS = _wordset("""teacher nurse doctor engineer developer programmer lawyer artist painter writer
designer counselor therapist student chef cook manager accountant scientist musician photographer
firefighter officer mechanic pilot architect professor researcher dentist pharmacist consultant analyst
cashier waiter waitress barista electrician plumber carpenter farmer veterinarian vet journalist editor
librarian coach trainer intern entrepreneur psychologist surgeon paramedic soldier dancer singer actor
actress author illustrator tutor""")


@dataclass(frozen=True)
class _Relation:
    """A sentence pattern that fills a (subject, attribute) slot. `pattern` follows the subject."""

    attribute: str
    pattern: str
    negated: bool = False  # value becomes "not <value>" ("no longer lives in Boston")
    fixed_value: str | None = None  # the pattern implies the value ("broke up with" -> "single")
    value_prefix: str = ""
    occupation_only: bool = False  # "is a <x>" counts only when x is an occupation
    polarity: str | None = None  # opinions: attribute "opinion:<object>", value positive/negative

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(_SUBJ + _ADV + r"\s+" + self.pattern)


_RELATIONS: tuple[_Relation, ...] = (
    _Relation("lives_in", r"(?:no longer lives|doesn't live|does not live|moved out of|moved away from)"
                          r"(?:\s+in)?\s+" + _VAL, negated=True),
    _Relation("lives_in", r"(?:lives|is living|has been living|resides|has moved|moved(?: back)?|"
                          r"has relocated|relocated)\s+(?:in|to|at)\s+" + _VAL),
    _Relation("works_at", r"(?:no longer works|doesn't work|does not work|stopped working|quit|left|lost)"
                          r"(?:\s+(?:his|her|their|the|a|\w+'s))?(?:\s+job)?\s+(?:at|for|with)\s+" + _VAL,
              negated=True),
    _Relation("occupation", r"(?:works|is working|got a (?:new )?job|started working) as\s+(?:an?\s+)?" + _VAL),
    _Relation("occupation", r"(?:is|became|has become)\s+an?\s+" + _VAL, occupation_only=True),
    _Relation("works_at", r"(?:works|is working|has been working|started working|started a (?:new )?job|"
                          r"got a (?:new )?job|took a (?:new )?job|is employed)\s+(?:at|for|with)\s+" + _VAL),
    _Relation("studies", r"(?:studies|is studying|majors in|is majoring in)\s+" + _VAL),
    _Relation("age", r"(?:is\s+(?P<val>\d{1,3})\s+(?:years?\s+old|yo)|turned\s+(?P<val2>\d{1,3}))\b"),
    _Relation("relationship_status", r"(?:is|got|has been)\s+(?P<val>married|engaged|divorced|single|"
                                     r"widowed|separated)\b"),
    _Relation("relationship_status", r"(?:is dating|started dating|is seeing|is in a relationship with)\s+"
              + _VAL, value_prefix="dating "),
    _Relation("relationship_status", r"(?:broke up with|split up with)\b", fixed_value="single"),
    _Relation("children_count", rf"has\s+(?P<val>{_NUM_WORD})\s+(?:kids|children)\b"),
    _Relation("opinion", r"(?:hates|dislikes|detests|can't stand|cannot stand|doesn't like|does not like|"
                         r"doesn't enjoy|does not enjoy|no longer likes|is not a fan of|isn't a fan of)\s+"
              + _VAL, polarity="negative"),
    _Relation("opinion", r"(?:likes|loves|enjoys|adores|is into|is a (?:big |huge )?fan of|prefers)\s+"
              + _VAL, polarity="positive"),
)
_FAVORITE = re.compile(_SUBJ.replace("(?:'s\\s+[a-z]+)?", "") + r"'s\s+(?:favou?rite|fave)\s+"
                       r"(?P<thing>[a-z]+(?:\s+[a-z]+)?)\s+(?:is|are)\s+" + _VAL)
_OBJ_STOP = _wordset("with in at on for about to from of by when because")


def _clean_subject(subj: str) -> str:
    words = subj.split()
    while words and (words[0].lower() in STOP or words[0].lower() in MONTHS or words[0].lower() in WEEKDAYS
                     or words[0].lower() in _PREPS):
        words = words[1:]
    return normalize_key(" ".join(words))


def _opinion_object(value: str) -> str:
    """Head of the liked thing: "painting with her kids" -> "painting", "to paint" -> "paint"."""
    words: list[str] = []
    for w in value.removeprefix("to ").split():
        if w in _OBJ_STOP or len(words) == 3:
            break
        words.append(w)
    return " ".join(words)


def keyed_relation(sentence: str) -> tuple[str, str, str] | None:
    """(subject, attribute, value) when the sentence fills a known single-valued slot."""
    fav = _FAVORITE.search(sentence)
    if fav and _clean_subject(fav["subj"]):
        return _clean_subject(fav["subj"]), normalize_attribute("favorite " + fav["thing"]), normalize_key(fav["val"])
    for rel in _RELATIONS:
        m = rel.regex.search(sentence)
        subj = _clean_subject(m["subj"]) if m else ""
        if not m or not subj:
            continue
        groups = m.groupdict()
        value = rel.fixed_value or normalize_key(groups.get("val") or groups.get("val2") or "")
        if not value or len(value.split()) > 6:
            continue
        if rel.occupation_only and value.split()[-1] not in _OCCUPATIONS:
            continue
        attribute = rel.attribute
        if rel.polarity:
            obj = _opinion_object(value)
            if not obj:
                continue
            attribute, value = f"opinion:{obj}", rel.polarity
        value = ("not " if rel.negated else "") + rel.value_prefix + value
        return subj, normalize_attribute(attribute), value
    return None


_NAME = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")


def _names(text: str) -> set[str]:
    """Capitalized words that are not sentence openers: names as far as a regex can tell."""
    names = set()
    for sentence in split_sentences(text):
        for m in _NAME.finditer(sentence):
            if m.start() > 0:
                names.update(w.lower() for w in _clean_subject(m.group()).split())
    return names - STOP


def _subject(sentence: str, speaker: str | None, known: set[str]) -> str:
    """The first name in the sentence (possessive dropped), else the speaker, else its first word.
    A capitalized opener counts only when it is a name seen elsewhere ("Painting's fun" is not)."""
    for m in _NAME.finditer(sentence):
        subj = _clean_subject(m.group())
        if subj and (m.start() > 0 or subj.split()[0].removesuffix("'s") in known):
            return subj.removesuffix("'s")
    if speaker:
        return normalize_key(speaker)
    content = _content(_TOKEN.findall(sentence))
    return normalize_key(content[0]) if content else ""


def _mentions_name(sentence: str, known: set[str]) -> bool:
    return any(w.removesuffix("'s") in known for w in normalize_key(sentence).split())


def _fact_sentence(raw: str, speaker: str | None) -> str | None:
    """The raw sentence stripped of chat filler if it can stand alone as a fact, else None."""
    s = _VOCATIVE_END.sub("", _LEAD.sub("", raw)).strip()
    words = s.split()
    if not words or s.endswith("?") or not _content(_TOKEN.findall(s)):
        return None
    first = words[0].lower().strip(",")
    if first in _DANGLING or first in _IMPERATIVE or _SECOND.search(s):
        return None
    if speaker is None and _FIRST.search(s):
        return None
    return s


BUILTIN = "builtin"  # memories.summary_by of the old summarizer's summaries (stale: see memsvc.llm.summarizer)


def builtin_summary(text: str) -> str | None:
    """The faithful extractive summary (memsvc.llm.summary): whole sentences of the text, verbatim, or
    None where the text is its own summary (one statement, nothing to leave out, or not 75% or less)."""
    return faithful_summary(text)


class BuiltinLLM(UsageMeter):
    """Offline, deterministic `LLM`. Usage counts calls only (no tokens, no cost)."""

    def _count(self) -> None:
        self._record(Usage(calls=1))

    def summarize(self, text: str) -> str:
        """The extractive summary, or the text itself (whitespace collapsed) where there is none: a
        demotion then keeps every statement rather than a summary that lost one."""
        self._count()
        return faithful_summary(text) or " ".join(text.split())

    def gist(self, text: str) -> str:
        """Whole content words of the most informative sentences, or the text itself where it is short."""
        self._count()
        return keyword_gist(text, GIST_MAX_WORDS) or " ".join(text.split())

    def extract_facts(self, episodes: Sequence[Episode]) -> list[Fact]:
        self._count()
        facts: dict[str, Fact] = {}
        known = set().union(*(_names(ep.text) for ep in episodes),
                            *({normalize_key(ep.speaker)} for ep in episodes if ep.speaker))
        for ep in episodes:
            for raw in split_sentences(ep.text):
                s = _fact_sentence(raw, ep.speaker)
                if s is None:
                    continue
                s = resolve_relative_dates(s, ep.occurred_at)
                if ep.speaker:
                    s = first_person_to_name(s, ep.speaker)
                s = s[:1].upper() + s[1:]
                s = re.sub(r"[.!]+$", "", s) + "."
                if len(s.split()) < MIN_FACT_WORDS:  # "Me too." -> "Melanie too.": not a fact
                    continue
                if ep.speaker and not _mentions_name(s, known):
                    # Chat without a name left in it ("Love that painting.", "The colors blend
                    # nicely.") is about something outside the sentence.
                    continue
                keyed = keyed_relation(s)
                confidence = 0.7 if keyed else 0.5
                if _HEDGE.search(raw):
                    confidence *= 0.6
                dedupe = normalize_key(s)
                if dedupe in facts:  # the same statement twice: one fact, all its sources
                    old = facts[dedupe]
                    old.source_ids = list(dict.fromkeys([*old.source_ids, ep.id]))
                    old.valid_from = max(filter(None, [old.valid_from, ep.occurred_at]))
                    continue
                facts[dedupe] = Fact(
                    text=s,
                    subject=keyed[0] if keyed else _subject(s, ep.speaker, known),
                    attribute=keyed[1] if keyed else None,
                    value=keyed[2] if keyed else None,
                    source_ids=[ep.id],
                    confidence=round(confidence, 3),
                    valid_from=ep.occurred_at,
                )
        return list(facts.values())
