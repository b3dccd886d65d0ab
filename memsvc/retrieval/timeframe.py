"""When a query says when: "a week ago", "yesterday", "last Friday", "in March", read against the time it is asked.

"Which book did I finish a week ago?" names no word of the answer's turn that full text or a vector could match
better than any other book talk; what sets that turn apart is when it was said. `window_of` finds the time
phrases of a query and returns the span of days they point at, widened by how vague the phrase is ("a week ago"
is about 4-10 days, "three months ago" a month either side). Search then adds the memories nearest the query
that occurred in the span as one more ranked list (memsvc.retrieval.search), so they can enter the candidates and
count a little more; a span never filters anything out, since people misremember dates.

English phrases only for now (other languages find no phrase and rank as before). Pure functions over strings
and datetimes; the reference time is the request's `asked_at`, else the server's clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a couple": 2,
            "couple of": 2, "a few": 3, "few": 3, "several": 4}
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]
_MONTH_ABBR = {m[:3]: i + 1 for i, m in enumerate(_MONTHS)} | {"sept": 9}

_AMOUNT = r"(\d{1,3}|a couple of|a couple|couple of|a few|few|several|an?|one|two|three|four|five|six|seven|eight|" \
          r"nine|ten|eleven|twelve)"
_AGO = re.compile(rf"\b{_AMOUNT}\s+(day|week|month|year)s?\s+ago\b", re.I)
_LAST_N = re.compile(rf"\b(?:last|past|previous)\s+{_AMOUNT}\s+(day|week|month|year)s?\b", re.I)
_LAST_UNIT = re.compile(r"\b(last|past|previous|this)\s+(week|month|year|weekend)\b", re.I)
_WEEKDAY = re.compile(r"\b(last|this|on|past)\s+(" + "|".join(_WEEKDAYS) + r")\b", re.I)
_DAYWORD = re.compile(r"\b(yesterday|today|tonight|this morning|this afternoon|this evening|last night|"
                      r"the day before yesterday)\b", re.I)
_MONTH_NAME = "|".join(_MONTHS) + "|" + "|".join(k for k in _MONTH_ABBR if k != "may")
# "in March", "in March 2023", "March 2023", "on March 5th", "March 5", "on 3 June, 2023". A month name alone is
# not a date ("June said", "march on"), and "may" needs a day or a year (the verb).
_MONTH = re.compile(rf"\b(?:(in|during|since|of|on)\s+(?:early\s+|mid-?\s*|late\s+)?)?"
                    rf"(?:(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?)?({_MONTH_NAME}|may)\b\.?"
                    rf"(?:\s+(\d{{1,2}})(?:st|nd|rd|th)?\b)?(?:,?\s+(\d{{4}})\b)?", re.I)


@dataclass(frozen=True)
class Window:
    """The span a query's time phrase points at: [start, end), and the phrase, for explanations."""

    start: datetime
    end: datetime
    phrase: str


def window_of(query: str, asked_at: datetime) -> Window | None:
    """The span of the first time phrase in `query`, relative to `asked_at`; None without one."""
    try:
        return _first_window(query, asked_at.replace(hour=0, minute=0, second=0, microsecond=0))
    except (OverflowError, ValueError):  # a span past year 1 or 9999: no window rather than a failed search
        return None


def _first_window(query: str, day: datetime) -> Window | None:
    found: list[tuple[int, Window]] = []
    for match in _AGO.finditer(query):
        n = _amount(match.group(1))
        days = n * _UNIT_DAYS[match.group(2).lower()]
        slack = max(1.0, days * 0.3) + (2 if match.group(2).lower() == "week" else 0)
        centre = day - timedelta(days=days)
        found.append((match.start(), _span(centre - timedelta(days=slack), centre + timedelta(days=slack + 1),
                                           match.group(0))))
    for match in _LAST_N.finditer(query):  # "in the past two months": up to now
        days = _amount(match.group(1)) * _UNIT_DAYS[match.group(2).lower()]
        found.append((match.start(), _span(day - timedelta(days=days + max(1.0, days * 0.1)), day + timedelta(days=1),
                                           match.group(0))))
    for match in _LAST_UNIT.finditer(query):
        found.append((match.start(), _calendar(day, match.group(1).lower(), match.group(2).lower(), match.group(0))))
    for match in _WEEKDAY.finditer(query):
        target = _WEEKDAYS.index(match.group(2).lower())
        back = (day.weekday() - target) % 7 or 7  # "last Friday" asked on a Friday: a week ago
        if match.group(1).lower() == "last" and back < 2:
            back += 7
        when = day - timedelta(days=back)
        found.append((match.start(), _span(when - timedelta(days=1), when + timedelta(days=2), match.group(0))))
    for match in _DAYWORD.finditer(query):
        word = match.group(1).lower()
        back = 2 if word.startswith("the day before") else 1 if word in ("yesterday", "last night") else 0
        when = day - timedelta(days=back)
        found.append((match.start(), _span(when, when + timedelta(days=1), match.group(0))))
    for match in _MONTH.finditer(query):
        window = _month_window(match, day)
        if window is not None:
            found.append((match.start(), window))
    return min(found, key=lambda f: f[0])[1] if found else None


def _amount(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBERS[" ".join(text.lower().split())]


def _span(start: datetime, end: datetime, phrase: str) -> Window:
    return Window(start, end, phrase.strip())


def _calendar(day: datetime, which: str, unit: str, phrase: str) -> Window:
    """"last week" (the calendar week before this one, a day either side), "this month", "past year"..."""
    if unit in ("week", "weekend"):
        monday = day - timedelta(days=day.weekday())
        if which == "this":
            return _span(monday, day + timedelta(days=1), phrase)
        if which == "past":
            return _span(day - timedelta(days=7), day + timedelta(days=1), phrase)
        start = monday - timedelta(days=7)
        if unit == "weekend":
            start += timedelta(days=4)  # Friday to Monday
        return _span(start - timedelta(days=1), monday + timedelta(days=1), phrase)
    if unit == "month":
        first = day.replace(day=1)
        if which == "this":
            return _span(first, day + timedelta(days=1), phrase)
        if which == "past":
            return _span(day - timedelta(days=31), day + timedelta(days=1), phrase)
        previous = (first - timedelta(days=1)).replace(day=1)
        return _span(previous - timedelta(days=2), first + timedelta(days=2), phrase)
    january = day.replace(month=1, day=1)
    if which == "this":
        return _span(january, day + timedelta(days=1), phrase)
    if which == "past":
        return _span(day - timedelta(days=366), day + timedelta(days=1), phrase)
    return _span(january.replace(year=january.year - 1), january, phrase)


def _month_window(match: re.Match[str], day: datetime) -> Window | None:
    preposition, name, year = match.group(1), match.group(3).lower(), match.group(5)
    date = match.group(2) or match.group(4)  # "3 June" or "June 3"
    if not (date or year) and (name == "may" or not preposition):
        return None
    month = _MONTH_ABBR[name[:3]]  # every name the pattern takes starts with its month's abbreviation
    # Without a year: the latest such month (or day) that has begun by the time of asking.
    y = int(year) if year else day.year if (month, int(date or 1)) <= (day.month, day.day) else day.year - 1
    try:
        if date:
            when = day.replace(year=y, month=month, day=int(date))
            return _span(when - timedelta(days=1), when + timedelta(days=2), match.group(0))
        start = day.replace(year=y, month=month, day=1)
    except ValueError:  # "February 30": no such day
        return None
    end = start.replace(year=y + 1, month=1) if month == 12 else start.replace(month=month + 1)
    return _span(start - timedelta(days=2), end + timedelta(days=2), match.group(0))
