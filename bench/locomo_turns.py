"""LoCoMo conversations as episodic memories, read in place from ../shared/bench/locomo/ (CC BY-NC 4.0:
never copy the data into this repository)."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

DATA = Path(os.environ.get("MEMSVC_LOCOMO", Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo"
                           / "locomo_dev.json"))


@lru_cache(maxsize=1)
def conversations() -> list[dict[str, Any]]:
    if not DATA.exists():
        raise SystemExit(f"LoCoMo data not found at {DATA} (set MEMSVC_LOCOMO)")
    return json.loads(DATA.read_text())


def parse_date(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> aware datetime (UTC)."""
    m = re.match(r"\s*(\d+):(\d+)\s*(am|pm)\s+on\s+(\d+)\s+(\w+),?\s+(\d{4})", text, re.I)
    if not m:
        raise ValueError(f"unexpected LoCoMo date {text!r}")
    hour, minute, ampm, day, month, year = m.groups()
    h = int(hour) % 12 + (12 if ampm.lower() == "pm" else 0)
    return datetime.strptime(f"{day} {month} {year} {h}:{minute}", "%d %B %Y %H:%M").replace(tzinfo=UTC)


def sessions_of(conv: dict[str, Any]) -> list[tuple[datetime, list[dict[str, Any]]]]:
    c = conv["conversation"]
    out = []
    for key in c:
        m = re.fullmatch(r"session_(\d+)", key)
        if m and c.get(f"{key}_date_time"):
            out.append((parse_date(c[f"{key}_date_time"]), c[key]))
    return sorted(out, key=lambda s: s[0])


def turn_text(turn: dict[str, Any]) -> str:
    text = turn.get("text", "").strip()
    if turn.get("blip_caption"):
        text += f" [shares a photo: {turn['blip_caption']}]"
    return text


def insert_session(engine: Engine, tenant_id: uuid.UUID, user_id: str, at: datetime, turns: list[dict[str, Any]],
                   embedder: Any = None) -> list[uuid.UUID]:
    """One session's turns as episodic memories written at the session's time (a minute apart)."""
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from memsvc.lifecycle.retention import initial_strength
    from memsvc.models import Memory
    from memsvc.store import content_hash

    texts = [turn_text(t) for t in turns]
    vectors = embedder.embed(texts) if embedder is not None and texts else None
    rows = []
    for i, (turn, text) in enumerate(zip(turns, texts, strict=True)):
        if not text:
            continue
        when = at + timedelta(minutes=i)
        rows.append(Memory(
            id=uuid.uuid4(), tenant_id=tenant_id, user_id=user_id, kind="episodic", content=text, tier="verbatim",
            importance=0.5, strength=initial_strength(0.5), access_count=0, last_accessed_at=when,
            occurred_at=when, recorded_at=when, updated_at=when, valid_from=when, content_hash=content_hash(text),
            metadata_={"speaker": turn.get("speaker"), "dia_id": turn.get("dia_id")}, tags=[],
            embedding=vectors[i].tolist() if vectors is not None else None,
            embedding_model=getattr(embedder, "name", None),
        ))
    ids = [r.id for r in rows]
    with Session(engine) as session, session.begin():
        session.add_all(rows)
    return ids


def load_turns(engine: Engine, tenant_id: uuid.UUID, conv: dict[str, Any], embed: bool = False) -> int:
    embedder = None
    if embed:
        from memsvc.embeddings import get_embedder

        embedder = get_embedder()
    return sum(len(insert_session(engine, tenant_id, conv["sample_id"], at, turns, embedder))
               for at, turns in sessions_of(conv))
