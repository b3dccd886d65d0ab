"""A tenant's policy sections: tenants.policy (jsonb) holds one object per concern ("retrieval",
"memory_tokens", ...), each validated by its own pydantic model. This module owns reading and writing a
section, so every policy behaves alike:

- reads never fail on an old or hand-edited row: fields that no longer validate fall back to their
  defaults, one by one (logged), and callers see the effective policy;
- PUT replaces a section, PATCH merges into it; an unknown field or a wrong value is a 422 naming the
  field, and nothing is stored then.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from memsvc.errors import InvalidInput, NotFound
from memsvc.models import Tenant
from memsvc.schemas import json_numbers

log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)


def stored_policy(session: Session, tenant_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    query = select(Tenant.policy).where(Tenant.id == tenant_id)
    stored = session.scalar(query.with_for_update() if lock else query)
    if stored is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return dict(stored)


def effective(model: type[P], data: Any, section: str) -> P:
    """`data` as a `model`, keeping the fields that validate and dropping (and logging) the rest."""
    data = dict(data) if isinstance(data, Mapping) else {}
    try:
        return model.model_validate(data)
    except ValidationError:
        kept: dict[str, Any] = {}
        for name, value in data.items():
            try:
                model.model_validate({**kept, name: value})
                kept[name] = value
            except ValidationError:
                log.warning("ignoring invalid stored %s policy field %s=%r", section, name, value)
        return model.model_validate(kept)


def read_section(session: Session, tenant_id: uuid.UUID, section: str, model: type[P]) -> P:
    return effective(model, stored_policy(session, tenant_id).get(section), section)


def write_section(session: Session, tenant_id: uuid.UUID, section: str, model: type[P], data: Any, *,
                  merge: bool = False, check: Callable[[P], None] | None = None) -> tuple[P, P]:
    """Replace (merge=False) or merge into the section; returns (before, after). Not committed.
    `check` sees the new policy before it is stored and raises InvalidInput for what the model cannot know
    (names that exist only at run time)."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"the {section.replace('_', ' ')} policy must be a JSON object", details={"field": None})
    stored = stored_policy(session, tenant_id, lock=True)
    before = effective(model, stored.get(section), section)
    try:
        # strict: what the OpenAPI document says is what is taken (no "1" for 1, no 0 for false)
        after = model.model_validate(json_numbers(model, {**(before.model_dump(exclude_none=True) if merge else {}),
                                                          **data}), strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error.get("loc", ())) or None
        raise InvalidInput(f"{field}: {error.get('msg')}", details={"field": field}) from None
    if check is not None:
        check(after)
    session.execute(update(Tenant).where(Tenant.id == tenant_id).values(
        policy={**stored, section: after.model_dump(exclude_none=True)}))
    session.flush()
    return before, after
