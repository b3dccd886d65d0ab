"""How a conversation turn reads when stored: "[8 May 2023] Caroline: text" (date and speaker optional).

One home for the pattern, shared by the summarizer (which keeps the prefix as it is) and ranking (which
prefers the turns of the person a query names).
"""

from __future__ import annotations

import re

_DATE = r"\[[^\]]{1,60}\]\s*"
_NAME = r"[A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,2}"  # one to three capitalised words
TURN_PREFIX = re.compile(rf"^(?:{_DATE})?(?:{_NAME}:\s+)?")
_SPEAKER = re.compile(rf"^(?:{_DATE})?({_NAME}):\s")


def speaker_of(content: str) -> str | None:
    """The speaker of a turn stored as "[date] Name: text" or "Name: text"; None for other texts."""
    m = _SPEAKER.match(content)
    return m.group(1) if m else None
