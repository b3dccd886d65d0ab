"""The token-budgeted context builder (DESIGN section 5).

candidates (search + profile + neighbours + linked facts/sources)
  -> options at verbatim / summary / excerpt / gist fidelity, each with its exact token cost under the model
  -> multiple-choice knapsack (memsvc.retrieval.packing): at most one fidelity per memory
  -> render: profile, then facts, then episodes in time order under their dates
  -> count the rendered string exactly; trim while over, fill while slack remains.

The count of the returned string is never above the budget: the last step counts the very string
returned, and cuts it with the tokenizer's own `truncate` in the (unexpected) case trimming could not.
`assemble` is pure (pieces + counter in, context out) so the budget guarantee is property-tested
without a database; `build_context` does the I/O around it.
"""

from __future__ import annotations

import functools
import math
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from memsvc.embeddings import Embedder
from memsvc.llm.summarizer import EXTRACTIVE, LEGACY_BUILTIN, inline_summarizer
from memsvc.memtokens import store as memtoken_store
from memsvc.memtokens.marks import MarkedCounter, memory_mark
from memsvc.models import Memory
from memsvc.retrieval import adjacency, packing, sqltext
from memsvc.retrieval.excerpt import query_excerpt
from memsvc.retrieval.search import ROW_COLUMNS, SearchFilters, filter_clauses, label, search
from memsvc.retrieval.settings import FIDELITIES, RetrievalSettings
from memsvc.scoping import MemoryScope
from memsvc.tokens import TokenCounter

SECTION_OF_KIND = {"profile": "profile", "semantic": "facts", "procedural": "facts", "episodic": "episodes"}
SECTIONS = ("profile", "facts", "episodes")
TOKENS = "tokens"  # the fourth fidelity: a memory as its trained input vectors (memsvc.memtokens)
# A tier says how much of a memory contexts may show: a demoted memory is offered at its tier or below.
_OFFERED = {"verbatim": FIDELITIES, "summary": ("summary", "gist"), "gist": ("gist",), "archived": ("gist",)}
_TITLES = {
    "markdown": {"profile": "## Profile", "facts": "## Facts", "episodes": "## Episodes"},
    "plain": {"profile": "Profile:", "facts": "Facts:", "episodes": "Episodes:"},
}


@dataclass
class Piece:
    """A memory as the packer sees it: its texts per fidelity, its score, where it goes."""

    id: uuid.UUID
    kind: str
    score: float
    occurred_at: datetime
    texts: dict[str, str]  # fidelity -> text
    reason: str = ""
    derived: tuple[str, ...] = ()  # fidelities computed on the fly, not stored
    weight: float | None = None  # what it is worth to the packer (default: score)
    token_vectors: int = 0  # a verified memory-token set of the target model: it can go in as these vectors
    said_by: str | None = None  # the writer's metadata speaker, else role: who an episode's line is from

    @property
    def worth(self) -> float:
        return self.score if self.weight is None else self.weight

    @property
    def section(self) -> str:
        return SECTION_OF_KIND.get(self.kind, "episodes")

    @functools.cached_property
    def day(self) -> str:  # asked for several times per line while packing
        return _day(self.occurred_at)


@dataclass
class Chosen:
    piece: Piece
    fidelity: str
    tokens: int
    value: float
    estimated: bool = False  # tokens estimated from the line's bytes (see _costed), counted if chosen


@dataclass
class Assembled:
    context: str
    token_count: int
    chosen: list[Chosen]
    left_out: list[tuple[Piece, str]]
    timings: dict[str, float] = field(default_factory=dict)


# ---- rendering ---------------------------------------------------------------------------------
def _day(when: datetime) -> str:
    return when.astimezone(UTC).date().isoformat()  # "%Y-%m-%d", always four digits of year, and cheaper


@functools.lru_cache(maxsize=4096)
def _human_day(day: str) -> str:
    """'2023-05-08' -> '8 May 2023': how people (and answers) write dates; the header and fact prefix use it."""
    d = datetime.strptime(day, "%Y-%m-%d")
    return f"{d.day} {d:%B %Y}"


_LEADING_DATE = re.compile(r"^\[([^\]]{6,40})\]\s*")
_DATE_FORMATS = ("%d %B %Y", "%d %B, %Y", "%B %d, %Y", "%B %d %Y", "%Y-%m-%d", "%d %b %Y", "%b %d, %Y")


def _own_date_prefix(text: str, day: str) -> int:
    """Length of a leading "[date]" that names the item's own day (shown once in its day header)."""
    m = _LEADING_DATE.match(text)
    if not m:
        return 0
    raw = m.group(1).strip()
    raw = raw.split(" on ", 1)[1] if " on " in raw else raw  # "1:56 pm on 8 May, 2023"
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(raw, fmt)
        except ValueError:
            continue
        return m.end() if parsed.strftime("%Y-%m-%d") == day else 0
    return 0


def _attributed(text: str, said_by: str | None) -> str:
    """`said_by: text`, unless the text already starts with that name (after a "[date]"): a line without its
    speaker reads as the user's own statement ("I live in Oslo." that Bob said), or as a fact when the
    assistant or a tool said it."""
    if said_by is None:
        return text
    dated = _LEADING_DATE.match(text)
    if text[dated.end() if dated else 0:].casefold().startswith(said_by.casefold()):
        return text
    return f"{said_by}: {text}"


def item_line(piece: Piece, fidelity: str, fmt: str = "markdown", strip_own_date: bool = True) -> str:
    # One memory, one line; as tokens, a marker where the local backend splices the vectors in.
    text = memory_mark(piece.id) if fidelity == TOKENS else " ".join(piece.texts[fidelity].split())
    if strip_own_date and piece.section == "episodes" and fidelity != TOKENS:
        text = text[_own_date_prefix(text, piece.day):] or text
    if piece.section == "episodes":
        text = _attributed(text, piece.said_by)
    if piece.section == "facts":
        text = f"[{_human_day(piece.day)}] {text}"
    return f"- {text}"


def render(chosen: Sequence[Chosen], fmt: str = "markdown", strip_own_date: bool = True) -> str:
    """Profile first, then facts, then episodes oldest first, each day under its date."""
    titles = _TITLES[fmt]
    lines: list[str] = []
    for section in SECTIONS:
        members = [c for c in chosen if c.piece.section == section]
        if not members:
            continue
        lines.append(titles[section])
        if section == "episodes":
            members.sort(key=lambda c: (c.piece.occurred_at, c.piece.id))
            day = None
            for c in members:
                if c.piece.day != day:
                    day = c.piece.day
                    human = _human_day(day)
                    lines.append(f"### {human}" if fmt == "markdown" else f"{human}:")
                lines.append(item_line(c.piece, c.fidelity, fmt, strip_own_date))
        else:
            members.sort(key=lambda c: (-c.value, c.piece.id))
            lines.extend(item_line(c.piece, c.fidelity, fmt, strip_own_date) for c in members)
    return "\n".join(lines)


# ---- packing -----------------------------------------------------------------------------------
def options(piece: Piece, cost: Callable[[str], int], settings: RetrievalSettings, fmt: str,
            estimated: bool = False) -> list[Chosen]:
    """One option per fidelity the piece has; a cheaper fidelity only if it is actually cheaper.
    `cost` gives the tokens of a line: the counter's exact count, or an estimate (`estimated`)."""
    out: list[Chosen] = []
    for fidelity in FIDELITIES:
        if fidelity not in piece.texts or not piece.texts[fidelity].strip():
            continue
        tokens = cost(item_line(piece, fidelity, fmt, settings.strip_own_date) + "\n")
        if out and tokens >= min(o.tokens for o in out):
            continue
        out.append(Chosen(piece, fidelity, tokens, piece.worth * settings.fidelity_values.get(fidelity, 0.0),
                          estimated))
    if piece.token_vectors and "verbatim" in piece.texts:  # the whole text, in k positions (exact: counted)
        out.append(Chosen(piece, TOKENS, cost(item_line(piece, TOKENS, fmt) + "\n"),
                          piece.worth * settings.fidelity_values.get(TOKENS, 0.0), False))
    return [o for o in out if o.value > 0]


def _costed(pieces: Sequence[Piece], budget: int, counter: TokenCounter, settings: RetrievalSettings,
            fmt: str) -> dict[uuid.UUID, list[Chosen]]:
    """Every piece's options, in the pieces' order. The most valuable are counted exactly until their
    cheapest forms add up to `settings.exact_count_budgets` budgets; the rest, which the knapsack almost
    never reaches, get an estimate: their bytes times the most tokens per byte among the exact counts.

    Why: counting a line is ~40 us of tokenizer work and a context weighs ~100 candidates at two or three
    fidelities each, most of which it leaves out. An estimate can be off a little either way; a chosen
    estimated option is counted before it is reported or used to fill, and the whole context is counted
    exactly at the end (and trimmed), so the budget guarantee does not rest on estimates.
    """
    by_id: dict[uuid.UUID, list[Chosen]] = {}
    spent, per_byte = 0, 0.0
    exact_until = settings.exact_count_budgets * budget

    def count(line: str) -> int:
        nonlocal per_byte
        tokens = counter.count(line)
        per_byte = max(per_byte, tokens / max(len(line.encode("utf-8")), 1))
        return tokens

    def estimate(line: str) -> int:
        return max(1, math.ceil(len(line.encode("utf-8")) * per_byte))

    for piece in sorted(pieces, key=lambda p: -p.worth):  # stable: ties keep the caller's order
        exact = spent < exact_until or per_byte == 0.0
        opts = options(piece, count if exact else estimate, settings, fmt, estimated=not exact)
        if opts:
            by_id[piece.id] = opts
            spent += min(o.tokens for o in opts) if exact else 0
    return {p.id: by_id[p.id] for p in pieces if p.id in by_id}


def _counted(option: Chosen, counter: TokenCounter, settings: RetrievalSettings, fmt: str) -> Chosen:
    """An option with its exact token count (an estimated one is counted now)."""
    if not option.estimated:
        return option
    line = item_line(option.piece, option.fidelity, fmt, settings.strip_own_date) + "\n"
    return Chosen(option.piece, option.fidelity, counter.count(line), option.value)


def _overhead(pieces: Sequence[Piece], counter: TokenCounter, fmt: str) -> int:
    """Tokens for section titles and (a share of) date headers, reserved before packing."""
    sections = {p.section for p in pieces}
    days = sorted({p.day for p in pieces if p.section == "episodes"})
    title = sum(counter.count(_TITLES[fmt][s] + "\n") for s in sections)
    header = counter.count("### 28 September 2000\n") if days else 0
    return title + header * min(len(days), 4)  # the fill pass reclaims what is not needed


def assemble(
    pieces: Sequence[Piece], budget: int, counter: TokenCounter, settings: RetrievalSettings,
    fmt: str = "markdown",
) -> Assembled:
    if budget <= 0 or not pieces:
        return Assembled("", 0, [], [(p, "budget is 0" if budget <= 0 else "") for p in pieces])
    by_id = _costed(pieces, budget, counter, settings, fmt)
    reserve = _overhead(pieces, counter, fmt)
    packed = packing.pack(
        [packing.Candidate(pid, [packing.Option(o.fidelity, o.tokens, o.value) for o in opts])
         for pid, opts in by_id.items()],
        max(0, budget - reserve),
    )
    chosen_fid = _chosen_fidelities(packed)
    chosen = [_counted(o, counter, settings, fmt) for pid, opts in by_id.items() for o in opts
              if chosen_fid.get(pid) == o.fidelity]

    context, count = _trimmed(chosen, budget, counter, settings, fmt)

    # fill: the reserve and the knapsack's rounding usually leave slack; offer it to the best left out.
    # Costs are added up (line + any new date header or section title) rather than recounted per try:
    # one exact count at the end, and the trim again should BPE merges have cost a token more.
    in_ids = {c.piece.id for c in chosen}
    waiting = sorted(((pid, opts) for pid, opts in by_id.items() if pid not in in_ids),
                     key=lambda item: -max(o.value for o in item[1]))
    shown = {_heading_of(c.piece) for c in chosen} | {c.piece.section for c in chosen}
    slack, added = budget - count, 0
    for _pid, opts in waiting:
        if added >= settings.fill_attempts or slack <= 0:
            break
        extra = sum(counter.count(h + "\n") for h in _new_headings(opts[0].piece, shown, fmt))
        fitting = [o for o in opts if o.tokens + extra <= slack]
        if not fitting:
            continue
        best = _counted(max(fitting, key=lambda o: o.value), counter, settings, fmt)
        if best.tokens + extra > slack:
            continue
        chosen.append(best)
        shown |= {_heading_of(best.piece), best.piece.section}
        slack -= best.tokens + extra
        added += 1
    if added:
        context, count = _trimmed(chosen, budget, counter, settings, fmt)

    if count > budget:  # cannot happen after trimming to nothing; kept as the last line of the guarantee
        context = counter.truncate(context, budget)
        count = counter.count(context)
    final_ids = {c.piece.id for c in chosen}
    left_out = []
    for piece in pieces:
        if piece.id in final_ids:
            continue
        if piece.id not in by_id:
            left_out.append((piece, "no text to show at its tier"))
        else:
            form = min(by_id[piece.id], key=lambda o: o.tokens)
            cheapest = f"{'about ' if form.estimated else ''}{form.tokens}"
            left_out.append((piece, f"budget: cheapest form needs {cheapest} tokens; higher-value memories filled "
                                    f"the {budget}" if form.tokens <= budget else
                                    f"larger than the whole budget ({cheapest} > {budget} tokens)"))
    return Assembled(context, count, chosen, left_out)


def _trimmed(chosen: list[Chosen], budget: int, counter: TokenCounter, settings: RetrievalSettings,
             fmt: str) -> tuple[str, int]:
    """Render and count exactly; while over, drop what frees the overshoot at the least value per token."""
    context = render(chosen, fmt, settings.strip_own_date)
    count = counter.count(context)
    while count > budget and chosen:
        over = count - budget
        # Per token of the overshoot it removes: one long top hit never goes for a few tokens when
        # low-value lines can go instead (counting all its tokens would make it look cheap to drop).
        victim = min(chosen, key=lambda c: (c.value / max(min(c.tokens, over), 1), -c.tokens))
        chosen.remove(victim)
        context = render(chosen, fmt, settings.strip_own_date)
        count = counter.count(context)
    return context, count


def _heading_of(piece: Piece) -> str:
    return piece.day if piece.section == "episodes" else ""


def _new_headings(piece: Piece, shown: set[str], fmt: str) -> list[str]:
    """The lines rendering `piece` adds beyond its own: its section's title, its day's header."""
    lines = [] if piece.section in shown else [_TITLES[fmt][piece.section]]
    if piece.section == "episodes" and _heading_of(piece) not in shown:
        human = _human_day(piece.day)
        lines.append(f"### {human}" if fmt == "markdown" else f"{human}:")
    return lines


def _chosen_fidelities(packed: Any) -> dict[uuid.UUID, str]:
    """packing.Packing.chosen -> {candidate id: fidelity} (accepts a mapping or (id, option) pairs)."""
    chosen = packed.chosen
    items = chosen.items() if hasattr(chosen, "items") else chosen
    out: dict[uuid.UUID, str] = {}
    for entry in items:
        pid, option = (entry if isinstance(entry, tuple) else (entry.id, entry.option))
        out[pid] = option.fidelity if hasattr(option, "fidelity") else str(option)
    return out


# ---- on-the-fly summaries / gists ----------------------------------------------------------------
@functools.lru_cache(maxsize=65_536)
def _derived(text: str, fidelity: str) -> str:
    """One fidelity of a text, made by the inline summarizer (only the ones settings ask for: this runs
    per candidate on every request that misses the cache). The summary is the one the store keeps; ""
    where there is none (MEMSVC_SUMMARIZER=none, or the text is its own summary)."""
    summarizer = inline_summarizer()
    return (summarizer.summarize(text) if fidelity == "summary" else summarizer.gist(text)) or ""


def rank_weight(rank: int, settings: RetrievalSettings) -> float:
    """What the packer credits the hit at `rank` (1 = best): ((1 + c) / (rank + c)) ** power.

    Not the fused score itself: rank fusion scores are flat (1/61 vs 1/120 for ranks 1 and 60), so a
    knapsack fed with them fills the budget with the shortest candidates instead of the best ones. The
    chance that a hit is what the question needs falls off about like this with its rank (LoCoMo:
    ~10x from rank 3 to rank 15, which power 2 with c = 2 matches).
    """
    c = max(settings.rank_value_offset, 0.0)
    return ((1.0 + c) / (rank + c)) ** settings.rank_value_power


def piece_of(memory: Memory | Any, score: float, reason: str, settings: RetrievalSettings,
             weight: float | None = None) -> Piece:
    """A Memory, or a row of its ROW_COLUMNS (what the retrieval statements return), as the packer sees it."""
    offered = _OFFERED.get(memory.tier, FIDELITIES)
    # A built-in summary of a verbatim memory (stored at write time) is one of the built-in fidelities:
    # offered on the same terms as one derived here for a memory written before summaries were stored.
    has_builtin = memory.summary_by == EXTRACTIVE and memory.tier == "verbatim"
    # The old summarizer's summaries cut sentences and names: derived anew instead (the maintenance pass
    # replaces them in the database).
    stale = memory.summary_by == LEGACY_BUILTIN and memory.tier == "verbatim"
    stored = {"verbatim": memory.content, "summary": None if has_builtin or stale else memory.summary,
              "gist": memory.gist}
    texts = {f: t for f, t in stored.items() if f in offered and t}
    derived: list[str] = []
    wanted = [f for f in settings.derive_fidelities if f in offered and f not in texts]
    if "summary" in wanted and has_builtin:
        # Made at write time for texts long enough to have one: no count, no derivation per request.
        wanted.remove("summary")
        if memory.summary and memory.summary != memory.content:
            texts["summary"] = memory.summary
    base = texts.get("verbatim") or texts.get("summary")
    for fidelity in wanted if base else ():
        value = _derived(base, fidelity)  # a text of a few words is its own summary (and gist): no option
        if value and value != base:
            texts[fidelity] = value
            derived.append(fidelity)
    labels = getattr(memory, "metadata_", None)
    speaker, role = (labels.get("speaker"), labels.get("role")) if isinstance(labels, dict) \
        else (getattr(memory, "speaker", None), getattr(memory, "role", None))
    return Piece(memory.id, memory.kind, score, memory.occurred_at, texts, reason, tuple(derived), weight,
                 said_by=label(speaker) or label(role))


def add_excerpts(pieces: Sequence[Piece], query: str, settings: RetrievalSettings) -> None:
    """Offer the long verbatim memories among the candidates as their query-focused excerpts too
    (retrieval/excerpt.py)."""
    if settings.excerpt_min_chars <= 0 or settings.fidelity_values.get("excerpt", 0.0) <= 0:
        return
    long = [p for p in pieces if len(p.texts.get("verbatim") or "") >= settings.excerpt_min_chars]
    # Splitting a text into sentences costs ~0.5 ms per 2,000 characters the first time (cached after): only the
    # most valuable long candidates, whose excerpts the packer can afford to take, get one.
    for piece in sorted(long, key=lambda p: -p.worth)[: settings.excerpt_candidates]:
        text = piece.texts["verbatim"]
        excerpt = query_excerpt(text, query, settings.excerpt_max_chars, settings.excerpt_max_share)
        if excerpt:
            piece.texts["excerpt"] = excerpt
            piece.derived = (*piece.derived, "excerpt")


# ---- the I/O around it -------------------------------------------------------------------------
@dataclass(frozen=True)
class ContextQuery:
    query: str
    budget: int
    counter: TokenCounter
    filters: SearchFilters = SearchFilters()
    sections: tuple[str, ...] = SECTIONS
    fmt: str = "markdown"
    mode: str = "hybrid"
    max_candidates: int | None = None
    # The model_id (memsvc.memtokens) of a local model whose verified memory-token sets may stand in for texts.
    token_model: str | None = None


def build_context(
    session: Session, scope: MemoryScope, embedder: Embedder, q: ContextQuery, settings: RetrievalSettings,
    now: datetime | None = None,
) -> Assembled:
    now = now or datetime.now(UTC)
    t0 = time.perf_counter()
    if q.budget <= 0:
        return Assembled("", 0, [], [], {"total_ms": 0.0})
    kinds = tuple(k for k, s in SECTION_OF_KIND.items() if s in q.sections and s != "profile")
    if q.filters.kinds:
        kinds = tuple(k for k in kinds if k in q.filters.kinds)
    scores: dict[uuid.UUID, tuple[float, str]] = {}  # id -> (packing weight, reason)
    shown: dict[uuid.UUID, float] = {}  # id -> retrieval score, as /v1/search would show it
    rows: dict[uuid.UUID, Any] = {}
    timings: dict[str, float] = {}
    if kinds:
        limit = q.max_candidates or settings.context_candidates
        found = search(session, scope, embedder, q.query, _with_kinds(q.filters, kinds), limit, settings,
                       mode=q.mode, now=now)  # type: ignore[arg-type]
        timings.update(found.timings)
        rows.update(found.rows)
        for rank, hit in enumerate(found.hits, start=1):
            scores[hit.id] = (rank_weight(rank, settings), hit.reason)
            shown[hit.id] = hit.score
        top = found.hits[: settings.neighbour_hits]
        if settings.neighbour_hits > 0 and "episodic" in kinds:
            _add_neighbours(session, scope, q.filters, [rows[h.id] for h in top], scores, rows, settings, now)
        linking = time.perf_counter()
        if settings.link_weight > 0:
            _add_linked(session, scope, q.filters, kinds, found.hits[:20], scores, rows, settings, now)
        timings["links_ms"] = (time.perf_counter() - linking) * 1e3
    profiling = time.perf_counter()
    if "profile" in q.sections and (not q.filters.kinds or "profile" in q.filters.kinds):
        _add_profile(session, scope, q.filters, scores, rows, settings, now)
    t1 = time.perf_counter()
    timings["profile_ms"] = (t1 - profiling) * 1e3
    pieces = [piece_of(rows[mid], shown.get(mid, 0.0), reason, settings, weight)
              for mid, (weight, reason) in scores.items()]
    add_excerpts(pieces, q.query, settings)
    counter = q.counter
    if q.token_model is not None:
        sets = memtoken_store.verified_sets(session, scope, q.token_model, [p.id for p in pieces])
        for piece in pieces:
            piece.token_vectors = sets.get(piece.id, 0)
        counter = MarkedCounter(q.counter, sets)  # a marker costs its memory's vectors, not its characters
    t2 = time.perf_counter()
    result = assemble(pieces, q.budget, counter, settings, q.fmt)
    t3 = time.perf_counter()
    timings.update(candidates_ms=(t1 - t0) * 1e3, fidelities_ms=(t2 - t1) * 1e3, pack_ms=(t3 - t2) * 1e3,
                   total_ms=(t3 - t0) * 1e3)
    result.timings = timings
    return result


def _with_kinds(filters: SearchFilters, kinds: tuple[str, ...]) -> SearchFilters:
    from dataclasses import replace

    return replace(filters, kinds=kinds)


def _where(session: Session, scope: MemoryScope, filters: SearchFilters, kinds: tuple[str, ...],
           now: datetime) -> sqltext.Where:
    """The caller's scope and filters, narrowed to `kinds`, as SQL text."""
    return sqltext.where_of(session, [*scope.where(), *filter_clauses(_with_kinds(filters, kinds), now)])


def _add_profile(session: Session, scope: MemoryScope, filters: SearchFilters,
                 scores: dict[uuid.UUID, tuple[float, str]], rows: dict[uuid.UUID, Any],
                 settings: RetrievalSettings, now: datetime) -> None:
    if settings.profile_limit <= 0:
        return
    where = _where(session, scope, filters, ("profile",), now)
    found = sqltext.rows(session, f"SELECT {sqltext.select_list('memories', ROW_COLUMNS)} FROM memories "
                                  f"WHERE {where.sql} ORDER BY memories.importance DESC, memories.recorded_at DESC "
                                  "LIMIT %(p_limit)s", where, p_limit=int(settings.profile_limit))
    top = max((s for s, _ in scores.values()), default=1.0) or 1.0  # the best hit's weight
    for memory in found:
        rows[memory.id] = memory
        value = settings.profile_boost * top * (0.5 + 0.5 * memory.importance)
        old = scores.get(memory.id)
        scores[memory.id] = (max(value, old[0] if old else 0.0), "profile / core memory")


def _add_neighbours(session: Session, scope: MemoryScope, filters: SearchFilters, hits: list[Any],
                    scores: dict[uuid.UUID, tuple[float, str]], rows: dict[uuid.UUID, Any],
                    settings: RetrievalSettings, now: datetime) -> None:
    """Episodes just before / after a hit in the same session: the question's answer is often the reply."""
    hits = [h for h in hits if h.kind == "episodic" and h.session_id is not None]
    if not hits:
        return
    where = _where(session, scope, filters, ("episodic",), now)
    found = adjacency.neighbours(session, scope, where, [h.id for h in hits], ROW_COLUMNS,
                                 max(1, settings.neighbour_window))
    for hit_id, _, row in found:
        value = settings.neighbour_weight * scores[hit_id][0]
        if row.id not in scores or scores[row.id][0] < value:
            rows[row.id] = row
            scores[row.id] = (value, f"next to a hit ({hit_id})")


def _add_linked(session: Session, scope: MemoryScope, filters: SearchFilters, kinds: tuple[str, ...],
                hits: Sequence[Any], scores: dict[uuid.UUID, tuple[float, str]], rows: dict[uuid.UUID, Any],
                settings: RetrievalSettings, now: datetime) -> None:
    """Facts derived from a hit, and the source episodes of a hit fact (derived_from lineage)."""
    ids = [h.id for h in hits]
    if not ids:
        return
    # Two index lookups (primary key by src, ix_memory_links_dst by dst) rather than one OR that the
    # planner may answer by reading every link of the tenant.
    same = "tenant_id = %(p_tenant)s AND relation = 'derived_from'"
    links = sqltext.rows(session, f"SELECT src_id, dst_id FROM memory_links WHERE {same} AND src_id = ANY(%(p_ids)s) "
                                  f"UNION ALL SELECT src_id, dst_id FROM memory_links WHERE {same} "
                                  "AND dst_id = ANY(%(p_ids)s)", p_tenant=scope.tenant_id, p_ids=ids)
    if not links:
        return
    related: dict[uuid.UUID, tuple[float, uuid.UUID]] = {}
    for src, dst in links:  # src was derived from dst
        for hit_id, other, to_source in ((src, dst, True), (dst, src, False)):
            if hit_id not in scores or (settings.facts_as_pointers and not to_source):
                continue  # as pointers, facts stay out: a source must not bring its fact back
            # As pointers, a fact hands its whole weight to its sources (and then leaves the context).
            factor = 1.0 if settings.facts_as_pointers and to_source else settings.link_weight
            value = factor * scores[hit_id][0]
            if value > max(scores.get(other, (0.0, ""))[0], related.get(other, (0.0, hit_id))[0]):
                related[other] = (value, hit_id)
    if settings.facts_as_pointers:
        for src, _ in links:
            if src in scores and getattr(rows.get(src), "kind", None) == "semantic":
                del scores[src]
    missing = [i for i in related if i not in rows]
    if missing:
        where = _where(session, scope, filters, kinds, now)
        for memory in sqltext.rows(session, f"SELECT {sqltext.select_list('memories', ROW_COLUMNS)} FROM memories "
                                            f"WHERE {where.sql} AND memories.id = ANY(%(p_ids)s)", where,
                                   p_ids=missing):
            rows[memory.id] = memory
    for other, (value, via) in related.items():
        if other in rows:
            scores[other] = (value, f"linked (derived_from) to a hit ({via})")
