"""Which memories get memory tokens: a tenant's policy (tenants.policy["memory_tokens"]) and the pure
rules over it. `GET/PUT/PATCH /v1/policy/memory-tokens`.

A memory qualifies when its kind is one of `kinds`, its importance is at least `min_importance`, it is
shown verbatim (a demoted memory may only be shown as its summary or gist, and tokens reproduce the
whole text) and its content is at most `max_tokens` tokens of the model. It gets
ceil(tokens / tokens_per_vector) vectors, at least `min_vectors`: the bench (docs/memtokens.md) says how
many tokens one vector of SmolLM2-135M holds reliably.

Whether verified sets may stand in for texts in contexts for the local model is a separate opt-in
(`in_context`, off by default): a set decodes back to its text, but the reading test (docs/memtokens.md)
found SmolLM2 answering 0/8 questions from spliced vectors that it answered 8/8 from the text - it recites
its vectors, it does not read them. A tenant turns it on only for a consumer that does use them.
"""

from __future__ import annotations

import math
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from memsvc import tenant_policy

POLICY_KEY = "memory_tokens"
MAX_TOKENS = 256  # the longest memory the trainer takes (its batch is padded to the longest)
Kind = Literal["episodic", "semantic", "procedural", "profile"]


class MemoryTokenPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=False, description=(
        "Train tokens for qualifying memories on the periodic maintenance pass, without being asked "
        "(POST /v1/memory-tokens/train works either way)."))
    model: str = Field(default="smollm2", min_length=1, max_length=100, description=(
        "The local model (MEMSVC_LOCAL_MODELS) whose input vectors are trained."))
    kinds: list[Kind] = Field(default_factory=lambda: ["semantic", "profile", "procedural"], min_length=1,
                              description="Kinds of memory that qualify.")
    min_importance: float = Field(default=0.0, ge=0.0, le=1.0, description="Least importance that qualifies.")
    max_tokens: int = Field(default=128, ge=1, le=MAX_TOKENS, description=(
        "Longest content (tokens of the model) that qualifies."))
    tokens_per_vector: int = Field(default=16, ge=4, le=MAX_TOKENS, description=(
        "Content tokens one trained vector carries: a memory gets ceil(tokens / this) vectors."))
    min_vectors: int = Field(default=1, ge=1, le=16, description="Fewest vectors a memory gets.")
    in_context: bool = Field(default=False, description=(
        "Let verified token sets stand in for memories' texts in contexts for this local model (chat "
        "completions and /v1/context with model local/<name>), where the text does not fit. Off by default: "
        "the model reproduces a memory from its vectors but, as measured, does not answer questions from "
        "them (docs/memtokens.md, the reading test)."))


def vectors_for(n_tokens: int, policy: MemoryTokenPolicy) -> int:
    return max(policy.min_vectors, math.ceil(n_tokens / policy.tokens_per_vector))


def refusal(kind: str, importance: float, tier: str, n_tokens: int, policy: MemoryTokenPolicy) -> str | None:
    """Why a memory does not qualify, or None when it does."""
    if kind not in policy.kinds:
        return f"kind {kind!r} is not one of the policy's kinds ({', '.join(policy.kinds)})"
    if importance < policy.min_importance:
        return f"importance {importance:.2f} is below the policy's min_importance {policy.min_importance:.2f}"
    if tier != "verbatim":
        return f"the memory is shown only as its {tier} (tokens reproduce the whole text)"
    if n_tokens > policy.max_tokens:
        return f"too long: {n_tokens} tokens > the policy's max_tokens {policy.max_tokens}"
    if n_tokens == 0:
        return "empty content"
    return None


def get_policy(session: Session, tenant_id: uuid.UUID) -> MemoryTokenPolicy:
    return tenant_policy.read_section(session, tenant_id, POLICY_KEY, MemoryTokenPolicy)
