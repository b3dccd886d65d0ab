"""API shapes of the lifecycle endpoints (consolidate, feedback, policy, retention curve)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from memsvc.schemas import RequestModel, ScopeId

_ID = Field(default=None, min_length=1, max_length=200)


class ConsolidateRequest(RequestModel):
    user_id: ScopeId | None = _ID
    agent_id: ScopeId | None = _ID
    session_id: ScopeId | None = Field(default=None, min_length=1, max_length=200,
                                   description="Only this session's episodes (facts still belong to the user/agent).")
    reprocess: bool = Field(default=False, description="Go over already consolidated episodes again "
                            "(creates nothing new for what is already known).")


class FeedbackRequest(RequestModel):
    useful: bool = Field(description="true: the memory helped (reinforced like a use); false: it did not "
                         "(its strength is cut by the policy's negative_feedback_factor).")


class RetentionPoint(BaseModel):
    t_days: float
    at: datetime
    retention: float


class RetentionCurve(BaseModel):
    memory_id: uuid.UUID
    tier: str
    strength: float
    importance: float
    tau0_days: float
    last_accessed_at: datetime
    retention_now: float
    points: list[RetentionPoint] = Field(description="Retention from now to now + horizon if it is not used.")
