"""Relative time expressions made absolute, seen from the date an episode happened ("yesterday" said on
8 May 2023 -> "on 7 May 2023"). Used by offline fact extraction (memsvc.llm.facts), so that a fact read
later still says when."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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
