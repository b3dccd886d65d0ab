"""The one retrieval service behind `/v1/search`, `/v1/context`, the chat endpoint and MCP.

Each of them used to pick its own settings, derive its own query from messages and reinforce (or not)
in its own way; a context for the same question then differed by the door it came through. Here:

- the recipe is resolved once, the same way for all (request, tenant policy, deployment default);
- a conversation becomes a query the same way (`query_from_messages`);
- the memories a context used are reinforced through the same batched recorder.

MCP's `get_context` calls `/v1/context`, so it shares this path too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from memsvc.embeddings import Embedder
from memsvc.errors import InvalidInput
from memsvc.lifecycle.usage import UsageRecorder
from memsvc.memtokens import policy as memtoken_policy
from memsvc.memtokens.local_models import LocalModels
from memsvc.retrieval import policy
from memsvc.retrieval.context import Assembled, ContextQuery, build_context
from memsvc.retrieval.recipes import Recipe, RecipeBook
from memsvc.retrieval.search import Mode, SearchFilters, SearchOutcome, search
from memsvc.scoping import MemoryScope
from memsvc.tokens import TokenCounter, counter_for_request
from memsvc.validation import check_text

QUERY_TURNS = 3  # the latest user turns that make a conversation's query
QUERY_MAX_CHARS = 4000


def query_from_messages(messages: Iterable[tuple[str, str]], max_chars: int = QUERY_MAX_CHARS) -> str:
    """What to look up for a conversation of (role, text): its latest user turns, newest last (cut from the
    front when long: the newest words matter most). The assistant's words are left out: they answer the
    last question rather than ask the next one, and would pull the context toward what was just said. A
    conversation with no user turn (an agent's own tool loop) uses its latest messages of any role."""
    turns = [(role, text) for role, text in messages if text.strip()]
    asked = [text for role, text in turns if role == "user"] or [text for _, text in turns]
    return "\n".join(asked[-QUERY_TURNS:])[-max_chars:]


@dataclass
class RetrievalService:
    recipes: RecipeBook
    usage: UsageRecorder | None = None  # None: nothing is reinforced (benchmarks that must not change the data)
    local_models: LocalModels = field(default_factory=lambda: LocalModels({}))  # served in-process (memtokens)

    def target(self, session: Session, tenant_id: uuid.UUID, model: str, *,
               memory_tokens: bool = True) -> tuple[TokenCounter, str | None]:
        """The tokenizer a context for `model` is counted in, and, for a local model whose tenant's
        memory-token policy opts in (`in_context`), the model_id whose verified memory-token sets may stand
        in for texts (None: texts only)."""
        if not self.local_models.serves(model):
            return counter_for_request(model), None
        spec = self.local_models.get(model)
        if not memory_tokens or not memtoken_policy.get_policy(session, tenant_id).in_context:
            return spec.counter(), None
        return spec.counter(), spec.identity().model_id

    def recipe(self, session: Session, tenant_id: uuid.UUID, requested: str | None) -> Recipe:
        """The request's recipe, else the tenant's policy's, else the deployment's default."""
        if requested is not None:
            return self.recipes.get(requested)
        return self.recipes.resolve(None, policy.get_policy(session, tenant_id).recipe)

    def search(self, session: Session, scope: MemoryScope, embedder: Embedder, query: str, filters: SearchFilters,
               limit: int, *, mode: Mode = "hybrid", recipe: str | None = None) -> tuple[SearchOutcome, Recipe]:
        chosen = self.recipe(session, scope.tenant_id, recipe)
        found = search(session, scope, embedder, check_text(query, "query"), filters, limit, chosen.settings,
                       mode=mode)
        return found, chosen

    def context(self, session: Session, scope: MemoryScope, embedder: Embedder, query: ContextQuery, *,
                recipe: str | None = None) -> tuple[Assembled, Recipe]:
        """The context, and the memories it used reinforced (in the recorder's next batch, off this request)."""
        if query.budget > 0 and not query.query.strip():
            raise InvalidInput("a context needs a query or messages with text", details={"field": "query"})
        chosen = self.recipe(session, scope.tenant_id, recipe)
        built = build_context(session, scope, embedder, query, chosen.settings)
        if self.usage is not None and built.chosen:
            self.usage.record(scope, [c.piece.id for c in built.chosen])
        return built, chosen
