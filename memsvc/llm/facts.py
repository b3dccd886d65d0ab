"""Offline fact extraction: a closed set of sentence patterns, each restated from its own template.

The built-in extractor writes a fact only when a whole clause matches a pattern it understands
("I live in X", "I moved to X in 2024", "my X is Y", ...). The fact is then written from a template
("{name} lives in {X}."), never by rewriting the user's sentence, so it is grammatical by
construction: no "cannots", no pronouns, absolute dates only. Everything else yields nothing; fewer,
true facts beat many false ones.

Who said what comes from structured fields only (Episode.role / Episode.speaker, filled from the
memory's metadata and scope), never from "Name:" in the content. Assistant, tool and system turns
yield no fact offline: an assistant's "I cannot browse the web" is not a fact about the user.
Text after a wrapper header (a context block pasted into a turn, "Related things I remember:") is
cut off before anything is read: it restates memories, it is not a statement of the speaker.

Every fact carries a (subject, attribute) key. Single-valued slots (residence, employer, occupation,
"my X is Y"...) let consolidation close an old value when a new one arrives; multi-valued relations
put their object into the attribute ("opinion:tea", "pet:rex", "allergy:peanuts") so they never close
each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from memsvc.llm.dates import MONTHS, resolve_relative_dates
from memsvc.llm.episodes import speaks_for_user, strip_wrapper
from memsvc.llm.gateway import Episode, Fact, normalize_attribute, normalize_key

CONFIDENCE = 0.8

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ---------------------------------------------------------------------------------------------
# Sentences

_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|;\s+")
# A period after these does not end the sentence: "I work at St. Mary's hospital".
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Mt|Jr|Sr|Inc|Ltd|Co|Corp|vs|etc|approx|e\.g|i\.e)|\b[A-Z])\.$")
_FILLER = re.compile(r"^(?:(?:oh|well|so|also|btw|by the way|anyway|actually|yeah|yes|ok|okay|fyi|just so you "
                     r"know|for the record|hey|hi|hello)\b[,!]?\s+)+", re.I)
_CONTRACTIONS = (
    (r"\bI'm\b", "I am"), (r"\bI've\b", "I have"), (r"\bdon't\b", "do not"), (r"\bdoesn't\b", "does not"),
    (r"\bcan't\b", "cannot"), (r"\bcan not\b", "cannot"),
)


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for piece in _SPLIT.split(strip_wrapper(text).replace("\u2019", "'")):
        if pieces and _ABBREV.search(pieces[-1]) and not pieces[-1].endswith("\n"):
            pieces[-1] += " " + piece
        else:
            pieces.append(piece)
    out = []
    for raw in pieces:
        s = _FILLER.sub("", " ".join(raw.split()).lstrip("-*\u2022 ")).strip()
        if not s or "?" in s:  # questions ask, they do not state
            continue
        s = s.rstrip(".! ")
        for pattern, repl in _CONTRACTIONS:
            s = re.sub(pattern, repl, s)
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Values

# A value ends where the clause goes on: "Lisbon in 2024", "Google because ...", "tea, but ...".
_DELIMS = _words("""with since because and but when after before in on at from now anymore again last next this
who which where so as while during until every near recently together for yesterday today tomorrow ago or
though although if than these right currently""")
# Words that make a value depend on something outside the sentence or say something else than a value.
_BAD_VALUE = _words("""i me my mine myself you your yours yourself he him his she her hers it its they them their
theirs we us our ours this that these those there here something anything everything nothing someone anyone
everyone not never no what who how why where when which whether if lot lots am is are was were be been being has
have had do does did will would can could shall should may might must both like such either neither kind sort
same other another""")
_SOFT = _words("also really just totally absolutely especially truly")
_ENDS_BADLY = _words("a an the of to for and or but with in on at by my your his her their our")
_NUM = r"(?:\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)"
_ABS_DATE = re.compile(
    rf"^(?:in|on|since)?\s*(?:(?:\d{{1,2}}\s+)?(?:{'|'.join(MONTHS)})\s+)?\d{{4}}$|"
    rf"^(?:in|on)\s+(?:the week of |the weekend of |the \w+ of )?\d{{1,2}}\s+(?:{'|'.join(MONTHS)})\s+\d{{4}}$|"
    rf"^in\s+(?:{'|'.join(MONTHS)})\s+\d{{4}}$", re.I)
_RELATIVE_SRC = (rf"^(?:(?:in|on)\s+)?(?:yesterday|today|tomorrow|tonight|last\s+(?:week|month|year|weekend)|"
                       rf"this\s+(?:week|month|year)|{_NUM}\s+(?:day|week|month|year)s?\s+ago|a\s+(?:day|week|month|year)"
                 rf"\s+ago|the day before yesterday|earlier today)")
_RELATIVE = re.compile(_RELATIVE_SRC + "$", re.I)
_RELATIVE_START = re.compile(_RELATIVE_SRC + r"\b", re.I)
_NEGATION = re.compile(r"\b(?:not|no longer|never|anymore|n't|cannot|neither|nor|used to)\b", re.I)
_HEDGE = re.compile(r"\b(?:maybe|might|perhaps|probably|possibly|i think|i guess|i suppose|not sure|kind of|sort "
                    r"of|would|could|should|wish|hope|want|plan|planning|going to|will)\b", re.I)


@dataclass(frozen=True)
class _Value:
    text: str
    date: str | None  # an absolute date phrase ("in 2024", "on 7 May 2023") found right after it
    tail: str  # the rest of the clause, dropped from the fact
    cut: str | None = None  # the word the value was cut at ("and" in "fantasy and sci-fi movies")


def _value(region: str, when: datetime, *, place: bool = False, name: bool = False,
           max_words: int = 6) -> _Value | None:
    """The value at the start of `region`, cut where the clause goes on, and a date right after it.
    None when it is not a self-contained value (pronouns, dangling words, too long)."""
    words = region.split()
    while words and words[0].lower() in _SOFT:  # "I like also cheese pizza"
        words = words[1:]
    n, cut = 0, None
    while n < len(words):
        if words[n] in ("-", "\u2013", "\u2014"):  # "pottery - the creativity ...": a new clause
            break
        if words[n][-1:] in ",;":  # the clause goes on after the comma: keep the word, stop there
            words = [*words[:n], words[n][:-1], ","] + words[n + 1:]
            n += 1
            break
        low = words[n].lower()
        # "Trinidad and Tobago", "Tom and Jerry": 'and' between capitalized words is part of a name.
        joins_names = low == "and" and n + 1 < len(words) and words[n + 1][:1].isupper() and words[n - 1][:1].isupper()
        if low in _DELIMS and n > 0 and not joins_names:
            cut = low
            break
        if n > 0 and re.fullmatch(_NUM + r"|an?", low) and _RELATIVE_START.match(" ".join(words[n:])):
            break
        n += 1
    value, tail = words[:n], " ".join(words[n:]).lstrip(", ")
    while value and value[-1].lower() in ("too", "also", "either"):  # "I love traveling too"
        value = value[:-1]
    if not value or len(value) > max_words:
        return None
    lows = [w.lower().strip("'") for w in value]
    if any(w in _BAD_VALUE for w in lows) or lows[-1] in _ENDS_BADLY or lows[0] in _DELIMS:
        return None
    if not all(re.fullmatch(r"[\w'&./+-]*\w[\w'&./+-]*", w) for w in value):
        return None
    if (place or name) and not (value[0][:1].isupper() or (place and lows[0] in ("a", "an", "the") and len(value) > 1)):
        return None
    if name and not all(w[:1].isupper() for w in value):
        return None
    if tail and (_NEGATION.search(tail) or _HEDGE.search(tail)):
        return None  # "I live in Berlin, or I used to", "... but not for long"
    return _Value(" ".join(value), _date(tail, when), tail, cut)


# Words after which the clause says something else, so the value before them stands as said.
_CLAUSE_CUTS = _words("because but so since while though although when if as which who where now anymore again")


def _narrowed(v: _Value) -> bool:
    """The value was cut at a word that narrows it ("routes with minimal traffic", "fantasy and sci-fi
    movies", "a mix of mystery and ..."): for a taste or a "my X is Y" slot, the head alone is another
    statement. (A place or employer cut there is still true: "lives in Berlin" of "in Berlin with Tom".)"""
    return v.cut is not None and v.cut not in _CLAUSE_CUTS


def _date(tail: str, when: datetime) -> str | None:
    """An absolute date phrase at the start of the tail ("in 2024", "last year" -> "in 2023")."""
    tail = re.split(r"[,;]|\s+(?:with|and|but|because|for|to|after|before)\s+", tail.strip())[0].strip()
    if not tail:
        return None
    if _ABS_DATE.match(tail):
        return tail if tail.split()[0].lower() in ("in", "on", "since") else f"in {tail}"
    if _RELATIVE.match(tail):
        resolved = resolve_relative_dates(tail, when)
        resolved = resolved[:1].lower() + resolved[1:]
        return resolved if re.search(r"\d{4}$", resolved) else None
    return None


# ---------------------------------------------------------------------------------------------
# Subjects

_KIN = ("wife", "husband", "partner", "spouse", "girlfriend", "boyfriend", "fiance", "fiancee", "mother", "father",
        "mom", "dad", "sister", "brother", "son", "daughter", "boss", "roommate", "grandmother", "grandfather",
        "best friend")
_SINGLE_KIN = frozenset({"wife", "husband", "partner", "spouse", "girlfriend", "boyfriend", "fiance", "fiancee",
                         "mother", "father", "mom", "dad", "boss"})
_NOT_NAMES = _words("""the this that these those it he she they we you there here today yesterday tomorrow error
note todo warning info debug assistant system user tool related long please let remember maybe also my your our
his her their every each some any all no yes hi hello hey thanks thank ok okay well so and but or if when then
now just what who how why where which summary context memory memories facts episodes profile fyi ps re""")
_NAME = r"[A-Z\u00C0-\u00DE][a-z\u00DF-\u00FF'-]+(?: [A-Z\u00C0-\u00DE][a-z\u00DF-\u00FF'-]+)?"
_SUBJECT = re.compile(
    rf"^(?:(?P<i>I)|(?P<my>[Mm]y) (?P<kin>{'|'.join(_KIN)})|(?P<user>(?:[Tt]he )?[Uu]ser)|(?P<name>{_NAME}))"
    r"(?:\s+(?:now|currently|still|also|really|actually|just|recently|finally|officially))*\s+(?P<rest>.+)$")


@dataclass(frozen=True)
class _Subject:
    text: str  # as the fact writes it: "Alice", "Alice's sister"
    key: str  # normalized: "alice", "alice's sister"
    first: bool  # spoken in the first person ("I ...") rather than the third ("Alice ...")


def display_name(name: str) -> str:
    """How a fact names someone: a speaker as given; an all-lowercase one-word id ("alice") capitalized."""
    return name.title() if re.fullmatch(r"[a-z]+", name) else name


def _subject(m: re.Match[str], speaker: str | None) -> _Subject | None:
    if m["i"] or m["my"] or m["user"]:
        if not speaker:
            return None  # first person, but nobody known to have said it
        me = display_name(speaker)
        if m["my"]:
            return _Subject(f"{me}'s {m['kin']}", normalize_key(f"{me}'s {m['kin']}"), False)
        return _Subject(me, normalize_key(me), bool(m["i"]))
    name = m["name"]
    if any(w.lower().strip("'") in _NOT_NAMES for w in name.split()):
        return None
    if " " not in name and re.search(r"(?:ing|tion|sion|ness|ment|ism|ity)$", name):
        return None  # "Engineering studies are ...", "Cooking is ...": a capitalized opener, not a name
    return _Subject(name, normalize_key(name), False)


# ---------------------------------------------------------------------------------------------
# Predicates: each a regex over what follows the subject, in the first-person and the third-person
# form, and a template that restates it.

_VERBS = {"be": ("am", "is"), "have": ("have", "has"), "do": ("do", "does")}


def _forms(template: str, first: bool) -> str:
    """'{be} from' -> 'am from' / 'is from'; '{live}' -> 'live' / 'lives'."""
    def one(m: re.Match[str]) -> str:
        verb = m.group(1)
        if verb in _VERBS:
            return _VERBS[verb][0 if first else 1]
        return verb if first else _third(verb)
    return re.sub(r"\{(\w+)\}", one, template)


def _third(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


@dataclass(frozen=True)
class _Found:
    text: str  # the restated predicate: "lives in Berlin", "moved to Lisbon in 2024"
    attribute: str
    value: str


Rule = Callable[[re.Match[str], datetime], _Found | None]


@dataclass(frozen=True)
class _Predicate:
    pattern: str  # with {be}/{have}/{do} and {verb} placeholders, matched against the rest of the sentence
    rule: Rule

    def regex(self, first: bool) -> re.Pattern[str]:
        return re.compile(r"^(?:" + _forms(self.pattern, first) + r")$", re.I)


def _residence(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, place=True)
    return v and _Found(f"lives in {v.text}", "residence", normalize_key(v.text))


def _moved(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, place=True)
    return v and _Found(f"moved to {v.text}" + (f" {v.date}" if v.date else ""), "residence", normalize_key(v.text))


def _works_as(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, max_words=4)
    return v and _Found(f"works as {_article(v.text)} {v.text}", "occupation", normalize_key(v.text))


def _employer(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, place=True, max_words=5)
    return v and _Found(f"works {m['prep'].lower()} {v.text}", "employer", normalize_key(v.text))


_OCCUPATIONS = _words("""teacher nurse doctor engineer developer programmer lawyer artist painter writer designer
counselor therapist student chef cook manager accountant scientist musician photographer firefighter officer
mechanic pilot architect professor researcher dentist pharmacist consultant analyst cashier waiter waitress barista
electrician plumber carpenter farmer veterinarian vet journalist editor librarian coach trainer intern entrepreneur
psychologist surgeon paramedic soldier dancer singer actor actress author illustrator tutor freelancer translator
administrator admin scientist economist banker salesperson realtor driver""")


def _is_a(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, max_words=4)
    if not v or v.text.split()[-1].lower() not in _OCCUPATIONS or v.date:
        return None
    return _Found(f"is {_article(v.text)} {v.text}", "occupation", normalize_key(v.text))


def _article(noun_phrase: str) -> str:
    return "an" if noun_phrase[:1].lower() in "aeiou" else "a"


def _diet(m: re.Match[str], when: datetime) -> _Found | None:
    diet = m["val"].lower()
    return _Found(f"is {diet}", "diet", diet)


def _age(m: re.Match[str], when: datetime) -> _Found | None:
    return _Found(f"is {int(m['val'])} years old", "age", str(int(m["val"])))


def _status(m: re.Match[str], when: datetime) -> _Found | None:
    status = m["val"].lower()
    if m["to"]:
        v = _value(m["to"], when, name=True, max_words=3)
        if not v:
            return None
        return _Found(f"is {status} to {v.text}", "relationship_status", f"{status} to {normalize_key(v.text)}")
    return _Found(f"is {status}", "relationship_status", status)


def _origin(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, place=True)
    return v and _Found(f"is from {v.text}", "origin", normalize_key(v.text))


def _studies(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, max_words=4)
    return v and _Found(f"studies {v.text}", "studies", normalize_key(v.text))


def _allergy(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, max_words=4)
    return v and _Found(f"is allergic to {v.text}", f"allergy:{v.text}", "yes")


_POSITIVE = {"like": "likes", "love": "loves", "enjoy": "enjoys", "adore": "adores", "prefer": "prefers"}
_NEGATIVE = {"hate": "hates", "dislike": "dislikes", "do not like": "does not like", "do not enjoy": "does not enjoy",
             "cannot stand": "cannot stand", "detest": "detests"}


def _opinion(m: re.Match[str], when: datetime) -> _Found | None:
    verb = " ".join(m["verb"].lower().split())
    base = next((b for b, third in {**_POSITIVE, **_NEGATIVE}.items() if verb in (b, third)), None)
    if base is None:
        return None
    region = m["val"]
    if base == "prefer":  # "tea over coffee" is one preference, not "tea"
        region = re.sub(r"\s+(over|to)\s+", r" \1_ ", region, count=1)
    v = _value(region, when, max_words=6)
    if not v or v.date or re.match(r"(?:to be|being)\b", v.text):
        return None
    words = v.text.split()
    first = words[0]
    if v.tail and (first == "to" or (first.endswith("ing") and first.islower())):
        return None  # "prefers to work" is not what "I prefer to work at night" said
    if _narrowed(v):
        return None
    titled = len(words) > 1 and all(w[:1].isupper() for w in words[1:])
    if first.lower() in ("the", "this", "that", "all") and not titled:
        return None  # "I love the color", "the Garden Party idea": outside the sentence ("the Beatles" is fine)
    if len(words) > 1 and words[-1][:1].isupper() and words[-2].islower() and not words[-2].endswith("ing") \
            and words[-2] not in _ENDS_BADLY:
        return None  # "I love the thought Nate": a vocative, not part of the value
    text = v.text.replace("over_ ", "over ").replace("to_ ", "to ")
    obj = re.split(r"\s+(?:over|to)_?\s+", v.text)[0].removeprefix("to ")
    polarity = "positive" if base in _POSITIVE else "negative"
    return _Found(f"{({**_POSITIVE, **_NEGATIVE})[base]} {text}", f"opinion:{obj}", polarity)


def _fan(m: re.Match[str], when: datetime) -> _Found | None:
    v = _value(m["val"], when, max_words=6)
    if not v or v.date or _narrowed(v) or v.text.split()[0].lower() in ("the", "this", "that", "all"):
        return None
    return _Found(f"is a fan of {v.text}", f"opinion:{v.text}", "positive")


_PETS = r"dog|cat|puppy|kitten|parrot|rabbit|bunny|hamster|guinea pig|horse|turtle|snake|lizard|fish|bird"


def _pet(m: re.Match[str], when: datetime) -> _Found | None:
    name = _value(m["val"], when, name=True, max_words=2)
    if not name:
        return None
    verb = m["verb"].lower()
    verb = "has" if verb in ("have", "has") else verb
    kind = " ".join(m["pet"].split()).lower()
    if _BAD_VALUE & set(kind.split()):
        return None
    date = f" {name.date}" if name.date and verb != "has" else ""
    return _Found(f"{verb} {_article(kind)} {kind} named {name.text}{date}", f"pet:{name.text}", normalize_key(kind))


_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _children(m: re.Match[str], when: datetime) -> _Found | None:
    n = m["val"].lower()
    count = str(_NUMBERS.index(n) + 1) if n in _NUMBERS else n
    noun = m["what"].lower()
    if count == "1":
        noun = {"kids": "kid", "children": "child"}[noun]
    return _Found(f"has {n} {noun}", "children_count", count)


_PREDICATES: tuple[_Predicate, ...] = (
    _Predicate(r"(?:{live}|{be} living|{be} based) in (?P<val>.+)", _residence),
    _Predicate(r"(?:{have} )?(?:moved|relocated)(?: back)? to (?P<val>.+)", _moved),
    _Predicate(r"(?:{work}|{be} working) as an? (?P<val>.+)", _works_as),
    _Predicate(r"(?:{work}|{be} working|{be} employed) (?P<prep>at|for) (?P<val>.+)", _employer),
    _Predicate(r"{be} (?:an? )?(?P<val>vegetarian|vegan|pescatarian)", _diet),
    _Predicate(r"{be} (?P<val>\d{1,3})(?: years? old)?", _age),
    _Predicate(r"{be} (?P<val>married|single|engaged|divorced|widowed)(?: to (?P<to>.+))?", _status),
    _Predicate(r"{be} allergic to (?P<val>.+)", _allergy),
    _Predicate(r"{be} an? (?:big |huge |great |massive |total )?fan of (?P<val>.+)", _fan),
    _Predicate(r"{be} an? (?P<val>.+)", _is_a),
    _Predicate(r"(?:{be}|{come}) from (?P<val>.+)", _origin),
    _Predicate(r"(?:{study}|{be} studying) (?P<val>.+)", _studies),
    _Predicate(r"(?P<verb>{have}|adopted|got) an? (?P<pet>(?:[a-z]+ ){0,2}?(?:" + _PETS + r")) (?:named|called) "
               r"(?P<val>.+)", _pet),
    _Predicate(r"{have} (?P<val>\d|one|two|three|four|five|six|seven|eight|nine|ten) (?P<what>kids|children)",
               _children),
    _Predicate(r"(?P<verb>{like}|{love}|{enjoy}|{adore}|{prefer}|{hate}|{dislike}|{detest}|{do} not like|"
               r"{do} not enjoy|cannot stand) (?P<val>.+)", _opinion),
)
_COMPILED = {first: [(p, p.regex(first)) for p in _PREDICATES] for first in (True, False)}

# "my X is Y" / "Alice's X is Y": a single-valued slot named by X.
_POSSESSIVE = re.compile(
    rf"^(?:(?P<my>[Mm]y|(?:[Tt]he )?[Uu]ser's)|(?P<name>{_NAME})'s) (?P<attr>[a-z]+(?: [a-z]+){{0,2}}?"
    r"(?:'s name)?) is (?P<val>.+)$")
_SLOT_STOP = _words("""own current new old first last next real only main favorite favourite""")


def _possessive(s: str, speaker: str | None, when: datetime) -> tuple[_Subject, _Found] | None:
    m = _POSSESSIVE.match(s)
    if not m:
        return None
    if m["my"]:
        if not speaker:
            return None
        owner = display_name(speaker)
    else:
        owner = m["name"]
        if any(w.lower() in _NOT_NAMES for w in owner.split()):
            return None
    attr = m["attr"]
    words = attr.replace("'s name", "").split()
    if set(words) & (_BAD_VALUE | _DELIMS) or (words[0] in _SLOT_STOP and words[0] not in ("favorite", "favourite")):
        return None
    if words[-1] in _SLOT_STOP:
        return None  # "my favorite is a park": favorite what?
    kin = attr in _KIN
    if kin and attr not in _SINGLE_KIN:
        return None  # "my sister is Anna": one of possibly several sisters, not a slot
    v = _value(m["val"], when, name=kin, max_words=5)
    if not v or v.date or _narrowed(v) or _RELATIVE.match(v.text) or v.text.lower().endswith("ing"):
        return None
    if len(v.text.split()) > 1 and v.text.split()[0].endswith("ing") and v.text[:1].islower():
        return None  # "my hard work is paying off": a happening, not the value of a slot
    if re.match(r"(?:in|on|at|to|from|with|by|for|about|over|under|going|being|not)\b", v.text, re.I):
        return None  # "my flight is at 6", "my code is in the repo": not a value of the slot
    subject = _Subject(owner, normalize_key(owner), False)
    return subject, _Found(f"'s {attr} is {v.text}", normalize_attribute(attr.replace("'s name", " name")),
                           normalize_key(v.text))


def _clause(s: str, speaker: str | None, when: datetime) -> tuple[_Subject, _Found] | None:
    """(subject, predicate) when the whole sentence is one pattern this module understands."""
    if _HEDGE.match(s) or re.match(r"(?:if|when|whether|because|unless)\b", s, re.I):
        return None
    pos = _possessive(s, speaker, when)
    if pos:
        return pos
    m = _SUBJECT.match(s)
    if not m:
        return None
    subject = _subject(m, speaker)
    if subject is None:
        return None
    rest = m["rest"]
    for predicate, regex in _COMPILED[subject.first]:
        pm = regex.match(rest)
        if pm:
            found = predicate.rule(pm, when)
            if found:
                return subject, found
            return None  # the first predicate that matches the verb owns the sentence
    return None


# "Bob told the assistant again: Bob hates cilantro", "Today Bob said: I am planning a trip": a statement
# reported word for word after a colon, by one named person. The statement is read on its own, its "I"
# being the reporter. Only a colon: "Bob said he ..." or "Bob said that ..." paraphrase, and a paraphrase
# is not first-hand enough to become a fact offline.
_REPORTED = re.compile(
    rf"^(?:(?i:today|yesterday|earlier|again|once|also),?\s+)?(?P<who>{_NAME})\s+(?:(?:once|again|also)\s+)?"
    r"(?:said|says|wrote|writes|mentioned|told|tells|explained|added|replied|messaged)"
    r"(?:\s+(?:me|us|him|her|them|the assistant|the agent|you))?(?:\s+(?:again|once|today|yesterday))?"
    r"\s*:\s*[\"'\u201c]?(?P<said>.+?)[\"'\u201d]?$")


def _reported(s: str) -> tuple[str, str] | None:
    """(who, what they said) for a statement quoted after a colon by one named person, else None."""
    m = _REPORTED.match(s)
    if not m or any(w.lower().strip("'") in _NOT_NAMES for w in m["who"].split()):
        return None
    return m["who"], m["said"].strip().rstrip(".! ")


def _fact_text(subject: _Subject, found: _Found) -> str:
    if found.text.startswith("'s "):
        return f"{subject.text}{found.text}."
    return f"{subject.text} {found.text}."


def extract_facts(episodes: Sequence[Episode]) -> list[Fact]:
    """The facts the patterns find in the user's (and role-less) episodes, one per statement,
    with all the episodes that stated it as sources."""
    facts: dict[str, Fact] = {}
    for ep in episodes:
        if not speaks_for_user(ep.role):
            continue  # assistant, tool and system turns: nothing offline (see the module docstring)
        for sentence in _sentences(ep.text):
            reported = _reported(sentence)
            if reported:
                who, sentence = reported
                found = _clause(sentence, who, ep.occurred_at)
            else:
                found = _clause(sentence, ep.speaker, ep.occurred_at)
            if found is None:
                continue
            subject, pred = found
            text = _fact_text(subject, pred)
            dedupe = normalize_key(text)
            if dedupe in facts:
                old = facts[dedupe]
                old.source_ids = list(dict.fromkeys([*old.source_ids, ep.id]))
                old.valid_from = max(filter(None, [old.valid_from, ep.occurred_at]))
                continue
            facts[dedupe] = Fact(text=text, subject=subject.key, attribute=normalize_attribute(pred.attribute),
                                 value=pred.value, source_ids=[ep.id], confidence=CONFIDENCE,
                                 valid_from=ep.occurred_at)
    return list(facts.values())
