"""What an episode says and who says it, read from structured fields only: whose first-person statements
are the user's own (`speaks_for_user`), and where a block pasted into a turn begins (`strip_wrapper`).
Both the offline extractor (memsvc.llm.facts) and the litellm gateway read episodes this way."""

from __future__ import annotations

import re

# Roles whose first-person statements are the speaker's own. None: a note written without a role
# (an SDK `add("I live in Berlin", user_id="alice")`), which is the scope's user speaking.
FACT_ROLES = frozenset({"user"})


def speaks_for_user(role: str | None) -> bool:
    return role is None or role.lower() in FACT_ROLES


# ---------------------------------------------------------------------------------------------
# Wrapper text

# A line that introduces a block instead of stating something: "Related things I remember:",
# "Long-term memory (from memsvc): ...", "## Facts", "Facts:". What follows it is the block
# (usually memories restated), not the speaker's statement.
_HEADER = re.compile(r"^\s*(?:#{1,6}\s|[^\n]*:\s*$|[^\n]*\b(?:from memsvc|long-term memory)\b)", re.I)


def strip_wrapper(text: str) -> str:
    """The text up to its first wrapper header line (the header and the block under it dropped)."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _HEADER.match(line):
            break
        kept.append(line)
    return "\n".join(kept)
