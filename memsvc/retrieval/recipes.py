"""Retrieval recipes: named, complete sets of ranking and packing settings (data, not code paths).

A recipe is a `RetrievalSettings` with a name and a description, the way graphiti names its search
configurations. `/v1/search`, `/v1/context`, the chat endpoint and MCP all rank through the recipe that
`RecipeBook.resolve` picks: the request's `recipe`, else the tenant's retrieval policy, else
`MEMSVC_RECIPE`, else `general`.

- `general` assumes nothing about the memories' shape: rank fusion of the vector, full-text and
  learned-sparse (SPLADE) lists, small retention and importance terms, near-duplicates removed, and
  session context where the writer set a session id (a session holding several good hits rises).
  Notes, facts, tool results, documents and chats alike.
- `conversation` adds what helps chat transcripts whose turns carry a structured speaker or role
  (metadata `speaker` / `role`, set by the writer or the chat endpoint): a turn's full-text evidence spread
  to its session neighbours, session context, the named speaker's turns first, and priors against
  content-free turns ("Thanks!"). These were tuned on LoCoMo; they do nothing for memories without a
  speaker or a session, but they cost relevance elsewhere, which is why they are not the default.

More recipes can be given as data in `MEMSVC_RECIPES_FILE` (JSON or YAML: name -> {base, description,
settings}), each a base recipe with some fields changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from memsvc.errors import InvalidInput
from memsvc.retrieval.settings import RetrievalSettings


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    settings: RetrievalSettings

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the plain `RetrievalSettings()` (what makes this recipe itself)."""
        plain = RetrievalSettings()
        return {f.name: getattr(self.settings, f.name) for f in fields(RetrievalSettings)
                if getattr(self.settings, f.name) != getattr(plain, f.name)}


GENERAL = Recipe(
    "general",
    "Any memories: vector + full-text + learned-sparse rank fusion with small retention and importance terms, "
    "near-duplicates removed, memories of a session with several good hits lifted a little. Assumes nothing "
    "about speakers or length.",
    # The learned-sparse (SPLADE) list as a third ranking: LoCoMo dev (8 conversations) R@10 54.2 -> 59.6,
    # ER@512 58.4 -> 62.6, ER@1024 68.0 -> 71.0; ~6 ms a query. Off by itself when no sparse model is installed.
    # Session context (memories that share a writer-set session_id and hold several good hits rise together;
    # no effect on memories without one): LoCoMo ER@512/1024 61.0/69.8 -> 64.0/73.2, R@10 59.7 -> 61.8;
    # LongMemEval-S (18 questions) ER@1024/2048/4096 87.9/93.9/97.0 unchanged, R@10 84.8 -> 81.8 (one turn).
    # With neighbour spread as well (the `conversation` pair) it cost LongMemEval 12 points: that stays out.
    RetrievalSettings(learned_sparse_k=60, session_weight=0.5),
)

CONVERSATION = Recipe(
    "conversation",
    "Chat transcripts whose turns carry metadata speaker/role: full-text evidence spreads to session "
    "neighbours, sessions with several good hits rise, the named speaker's turns come first, and "
    "content-free turns sink.",
    RetrievalSettings(
        # LoCoMo, offline replica over 8 conversations: neighbour spread 0.4 +4 points of recall@30.
        sparse_neighbour_weight=0.5,
        # Session context 0.3 -> +1.6, 0.6 -> +2.0 points of recall@30 (+3.6 of recall@10).
        session_weight=0.5,
        # A turn spoken by the one person the query names: 0.5 -> +2.0, 1.0 -> +2.4 points of recall@30.
        speaker_boost=1.0,
        # Half the weights a logistic regression learned on LoCoMo with held-out conversations:
        # recall@30 76.0 -> 79.1, multi-hop 57.1 -> 62.6 (offline replica).
        length_weight=0.45, other_speaker_penalty=0.7, session_text_weight=0.9,
        # With these signals the learned-sparse list adds little (ER@1024 77.9 -> 78.2, pool 88.3 -> 90.3).
        learned_sparse_k=60,
        # Turns of similar length, evidence odds falling ~10x from rank 3 to 15: a steep packing curve
        # (power 2 over 1: +2.5 ER@1024 on LoCoMo).
        rank_value_power=2.0,
    ),
)

DATED = Recipe(
    "dated",
    "Memories written as things happen (event logs, daily notes, tool results, a journal): as `general`, and a "
    "time phrase in the question ('a week ago', 'last Friday', 'in March', read against the request's asked_at) "
    "lifts the memories of that time. Not for accounts told after the fact, where it lifts the wrong days.",
    # Off in `general` (retrieval/settings.py has the measurements): LongMemEval's users tell in May what their
    # car did "a few months ago", and those questions lose their evidence to the memories of February.
    GENERAL.settings.with_(time_k=20),
)

BUILTIN_RECIPES: tuple[Recipe, ...] = (GENERAL, CONVERSATION, DATED)


def _settings_from(base: RetrievalSettings, changes: Mapping[str, Any], where: str) -> RetrievalSettings:
    known = {f.name: f for f in fields(RetrievalSettings)}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown retrieval setting(s) {', '.join(unknown)}")
    typed: dict[str, Any] = {}
    for name, value in changes.items():
        current = getattr(base, name)
        if isinstance(current, tuple):
            value = tuple(value)
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(current):
            raise ValueError(f"{where}: {name} must be {type(current).__name__}, got {value!r}")
        typed[name] = value
    try:
        return base.with_(**typed)
    except ValueError as error:  # a value of the right type that the setting does not take
        raise ValueError(f"{where}: {error}") from None


class RecipeBook:
    """The recipes a deployment knows, and which one is its default."""

    def __init__(self, recipes: tuple[Recipe, ...] = BUILTIN_RECIPES, default: str = "general") -> None:
        self._recipes = {r.name: r for r in recipes}
        if default not in self._recipes:
            raise ValueError(f"MEMSVC_RECIPE={default!r} is not a recipe; known: {', '.join(self._recipes)}")
        self.default = default

    def __iter__(self) -> Iterator[Recipe]:
        return iter(self._recipes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._recipes

    def add(self, recipe: Recipe) -> None:
        self._recipes[recipe.name] = recipe

    def derive(self, name: str, base: str, description: str, **changes: Any) -> Recipe:
        """A new recipe: `base` with some settings changed (benchmarks and tests name their variants so)."""
        recipe = Recipe(name, description, _settings_from(self.get(base).settings, changes, f"recipe {name}"))
        self.add(recipe)
        return recipe

    def get(self, name: str) -> Recipe:
        recipe = self._recipes.get(name)
        if recipe is None:
            raise InvalidInput(f"unknown recipe {name!r}; known recipes: {', '.join(self._recipes)} "
                               "(GET /v1/recipes lists them)", details={"field": "recipe"})
        return recipe

    def resolve(self, requested: str | None, tenant_choice: str | None = None) -> Recipe:
        """The request's recipe, else the tenant's (if this deployment still has it), else the default."""
        if requested is not None:
            return self.get(requested)
        if tenant_choice is not None and tenant_choice in self._recipes:
            return self._recipes[tenant_choice]
        return self._recipes[self.default]


def load_book(default: str = "general", recipes_file: Path | None = None) -> RecipeBook:
    """The built-in recipes plus those of `recipes_file` (JSON, or YAML by its suffix)."""
    book = RecipeBook(BUILTIN_RECIPES, "general")
    if recipes_file is not None:
        raw = recipes_file.read_text()
        if recipes_file.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw)
        else:
            data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{recipes_file}: expected an object of recipe name -> {{base, description, settings}}")
        for name, spec in data.items():
            if not isinstance(spec, dict):
                raise ValueError(f"{recipes_file}: recipe {name!r} must be an object")
            book.derive(str(name), str(spec.get("base", "general")), str(spec.get("description", "")),
                        **dict(spec.get("settings") or {}))
    if default not in book:
        raise ValueError(f"MEMSVC_RECIPE={default!r} is not a recipe; known: {', '.join(r.name for r in book)}")
    book.default = default
    return book
