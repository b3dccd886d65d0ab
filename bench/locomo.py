"""LoCoMo retrieval benchmark through the service (DESIGN section 8, issue 4).

Usage: python bench/locomo.py [DATA_JSON] [--json OUT_JSON] [--conversations N] [--variants a,b]

Starts an embedded PostgreSQL + pgvector in a temporary directory, migrates it, and drives the real
FastAPI app in-process (TestClient): every turn is ingested through POST /v1/memories/batch as one
episodic memory `[date] speaker: text` (image turns with their caption), one tenant per conversation;
each question of categories 1-4 (the question text only) goes to POST /v1/search and POST /v1/context.

Metrics, per category and overall:
  ER@B     share of gold turns whose own memory is in the context at verbatim, summary or excerpt fidelity,
           for budgets B of cl100k tokens; "any@B" counts any fidelity (gist too)
  AC@B     share of questions whose normalised answer string occurs in the context
  pool     share of gold turns among the candidates the packer weighed (items + left_out of the context at
           the largest budget): the ceiling of ER at any budget, set by ranking, not packing
  R@k      share of gold turns in the first k search hits (episodic memories); NDCG@10, binary relevance
The same table for BM25-only and dense-only ranking (mode=sparse / mode=dense) comes from the same run
and database. The data (CC BY-NC 4.0) is read from ../shared and never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "locomo" / "locomo_dev.json"
BUDGETS = (256, 512, 1024, 2048)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 20)
# The fidelities that show a memory's own words: whole, its extractive summary or its query-focused excerpt.
TEXT_FIDELITIES = ("verbatim", "summary", "excerpt")

# Lever variants: RetrievalSettings changes on top of the defaults, compared on the hybrid mode.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    # The learned-sparse (SPLADE-tiny) list as a third RRF list (memsvc/sparse_encoder.py), and its weight.
    "splade": {"learned_sparse_k": 60},
    "splade-w0.5": {"learned_sparse_k": 60, "learned_sparse_weight": 0.5},
    "splade-w1.5": {"learned_sparse_k": 60, "learned_sparse_weight": 1.5},
    "splade-w2": {"learned_sparse_k": 60, "learned_sparse_weight": 2.0},
    "splade-k100": {"learned_sparse_k": 100},
    "splade-no-bm25": {"learned_sparse_k": 60, "sparse_weight": 0.5},
    "facts-as-pointers": {"facts_as_pointers": True},
    "no-neighbours": {"neighbour_hits": 0},
    "rrf-k-60": {"rrf_k": 60},
    "derived-gists": {"derive_fidelities": ("gist",)},
    "rrf-k-20": {"rrf_k": 20},
    "neighbours-5": {"neighbour_hits": 5},
    "neighbours-10": {"neighbour_hits": 10},
    "mmr-0.7": {"mmr_lambda": 0.7},
    "keep-own-date": {"strip_own_date": False},
    "rank-offset-0.5": {"rank_value_offset": 0.5},
    "rank-offset-8": {"rank_value_offset": 8.0},
    "prf-3": {"prf_docs": 3},
    # Every candidate scored on the dense and learned-sparse sides too, not only those each list found.
    "complete-pool": {"complete_pool": True},
    # ...and each list's score scaled over the candidates instead of its rank (docs/benchmarks.md, seventh session).
    "score-fusion": {"complete_pool": True, "fusion": "scores"},
    "sparse-heavier": {"sparse_weight": 1.5},
    "more-candidates": {"context_candidates": 120, "dense_k": 120, "sparse_k": 120},
    "no-speaker-boost": {"speaker_boost": 0.0},
    "no-session-context": {"session_weight": 0.0},
    "rank-power-1": {"rank_value_power": 1.0},
    "previous-defaults": {"rank_value_power": 1.0, "context_candidates": 60, "neighbour_hits": 5, "speaker_boost": 0.0,
                          "session_weight": 0.0, "sparse_neighbour_weight": 0.0, "derive_fidelities": (),
                          "length_weight": 0.0, "other_speaker_penalty": 0.0, "session_text_weight": 0.0},
    "no-sparse-spread": {"sparse_neighbour_weight": 0.0},
    "context-neighbours-5": {"neighbour_hits": 5},
    "session-1.0": {"session_weight": 1.0},
    "summaries": {"derive_fidelities": ("summary",)},
    "no-summaries": {"derive_fidelities": ()},
    "summary-0.8": {"fidelity_values": {"verbatim": 1.0, "summary": 0.8, "gist": 0.35}},
    "summary-0.9": {"fidelity_values": {"verbatim": 1.0, "summary": 0.9, "gist": 0.35}},
    "summary-0.95": {"fidelity_values": {"verbatim": 1.0, "summary": 0.95, "gist": 0.35}},
    "summary-1.0": {"fidelity_values": {"verbatim": 1.0, "summary": 1.0, "gist": 0.35}},
    "no-priors": {"length_weight": 0.0, "other_speaker_penalty": 0.0, "session_text_weight": 0.0},
    "full-priors": {"length_weight": 0.92, "other_speaker_penalty": 1.37, "session_text_weight": 1.82},
    "summaries-120": {"derive_fidelities": ("summary",), "context_candidates": 120,
                      "dense_k": 120, "sparse_k": 120},
    "exact-counts-1.25": {"exact_count_budgets": 1.25},
    "exact-counts-all": {"exact_count_budgets": float("inf")},
    # Session structure alone (metadata session_id, no speaker or length priors): what general could adopt.
    "session-signals": {"sparse_neighbour_weight": 0.5, "session_weight": 0.5},
    "session-context-only": {"session_weight": 0.5},
    "neighbour-spread-only": {"sparse_neighbour_weight": 0.5},
    # List weights: SPLADE alone out-ranks the three-list fusion at R@5/R@10 (issue 14's offline figures).
    "dense-w0.5": {"dense_weight": 0.5},
    "bm25-w0.5": {"sparse_weight": 0.5},
    "splade-only": {"dense_weight": 0.0, "sparse_weight": 0.0},
    "rank-power-1.5": {"rank_value_power": 1.5},
    "rank-power-2": {"rank_value_power": 2.0},
    "dense-w2": {"dense_weight": 2.0},
    # Speaker signals alone (metadata speaker named by the query), without the session ones.
    "speaker-boost": {"speaker_boost": 1.0},
    "speaker-signals": {"speaker_boost": 1.0, "other_speaker_penalty": 0.7},
    # Query-focused excerpts of long memories (retrieval/excerpt.py) off.
    "no-excerpts": {"excerpt_min_chars": 0},
    # Fewer candidates for a context (the dense list shrinks with it; fewer rows to fetch, count and pack).
    "candidates-60": {"context_candidates": 60},
    "candidates-80": {"context_candidates": 80},
    # Time phrases in questions (retrieval/timeframe.py) off, or weighted differently.
    "no-time": {"time_k": 0},
    "time-w0.5": {"time_weight": 0.5},
    "time-w2": {"time_weight": 2.0},
}


# ---- data -----------------------------------------------------------------------------------------
def session_datetime(raw: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> datetime (UTC)."""
    from datetime import UTC

    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def turns_of(sample: dict[str, Any]) -> list[dict[str, Any]]:
    conv = sample["conversation"]
    out = []
    sessions = sorted(int(k.split("_")[1]) for k in conv if re.fullmatch(r"session_\d+", k))
    for n in sessions:
        when = session_datetime(conv[f"session_{n}_date_time"])
        day = f"{when.day} {when:%B %Y}"
        for i, turn in enumerate(conv[f"session_{n}"]):
            text = f"[{day}] {turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares an image: {turn['blip_caption']}]"
            out.append({"dia_id": turn["dia_id"], "content": text, "session_id": f"session_{n}",
                        "occurred_at": (when + timedelta(seconds=i)).isoformat(),
                        "metadata": {"speaker": turn["speaker"], "dia_id": turn["dia_id"]}})
    return out


def normalise_evidence(raw: list[str], known: set[str]) -> list[str]:
    """Malformed ids ('D8:6; D9:17', 'D:11:26', 'D30:05', 'D') -> the ids that resolve."""
    out: list[str] = []
    for item in raw:
        for part in re.split(r"[;,\s]+", str(item)):
            m = re.fullmatch(r"D:?(\d+):0*(\d+)", part.strip())
            if m:
                dia = f"D{int(m.group(1))}:{int(m.group(2))}"
                if dia in known and dia not in out:
                    out.append(dia)
    return out


def norm_text(value: Any) -> str:
    text = str(value).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"\b(a|an|the|and)\b", " ", text)
    return " ".join(text.split())


# ---- service --------------------------------------------------------------------------------------
def start_service(tmp: Path) -> tuple[Any, Any, str]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from memsvc import migrate, tenancy
    from memsvc.config import Settings
    from memsvc.db import get_engine, session_scope
    from memsvc.embedded import start_embedded_postgres

    url = os.environ.get("MEMSVC_DATABASE_URL") or start_embedded_postgres(tmp)
    migrate.upgrade(url)
    engine = get_engine(url)
    root = "msk_locomo_" + uuid.uuid4().hex
    with session_scope(engine) as session:
        tenancy.bootstrap(session, root)
    app = create_app(Settings(database_url=url, state_dir=tmp), engine)
    # Contexts reinforce the memories they use, which changes retention and so the next run's ranking: runs
    # and variants on one database would depend on their order. A benchmark measures; it does not reinforce.
    app.state.retrieval.usage = None
    return app, TestClient(app), root


def new_tenant(client: Any, root: str, name: str, language: str | None = None) -> tuple[dict[str, str], str]:
    """A tenant and a key for it; `language` is its full-text language (what a user who knows their
    memories are English would set; unset, full text parses them with `simple`)."""
    h = {"Authorization": f"Bearer {root}"}
    tenant = client.post("/v1/admin/tenants", json={"name": name}, headers=h)
    tenant.raise_for_status()
    key = client.post("/v1/admin/keys", headers=h, json={"scopes": ["read", "write", "admin"],
                                                         "tenant_id": tenant.json()["id"]})
    key.raise_for_status()
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    if language:
        client.put("/v1/policy/retrieval", json={"language": language}, headers=headers).raise_for_status()
    return headers, tenant.json()["id"]


def consolidate_all(app: Any, convs: list[dict[str, Any]]) -> None:
    """Consolidate each conversation into semantic facts linked (derived_from) to their source turns:
    the job the lifecycle workers run, called in-process here (no Celery worker), offline built-in LLM."""
    from memsvc.lifecycle.consolidate import ConsolidationScope, consolidate
    from memsvc.llm import BuiltinLLM

    for conv in convs:
        t = time.perf_counter()
        report = consolidate(app.state.sessions, ConsolidationScope(uuid.UUID(conv["tenant_id"])),
                             llm=BuiltinLLM(), embedder=app.state.embedder())
        conv["facts"] = len(report.created)
        print(f"consolidated: {report.episodes} episodes -> {len(report.created)} facts, {report.links_added} links "
              f"in {time.perf_counter() - t:.0f} s", flush=True)


def ingest(client: Any, headers: dict[str, str], turns: list[dict[str, Any]]) -> dict[str, str]:
    """memory id -> dia_id, through the batch endpoint."""
    ids: dict[str, str] = {}
    for start in range(0, len(turns), 500):
        chunk = turns[start:start + 500]
        items = [{k: t[k] for k in ("content", "session_id", "occurred_at", "metadata")} for t in chunk]
        r = client.post("/v1/memories/batch", json={"items": items}, headers=headers)
        r.raise_for_status()
        for turn, made in zip(chunk, r.json()["items"], strict=True):
            ids[made["id"]] = turn["dia_id"]
    return ids


# ---- evaluation -----------------------------------------------------------------------------------
def ndcg(ranked: list[str], gold: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in gold)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / ideal if ideal else 0.0


def evaluate(client: Any, convs: list[dict[str, Any]], mode: str, budgets: tuple[int, ...],
             recipe: str = "general") -> dict[str, Any]:
    """Per-question records for one ranking mode under one retrieval recipe."""
    records = []
    lat_search: list[float] = []
    lat_context: list[float] = []
    for n_conv, conv in enumerate(convs):
        headers, id_to_dia = conv["headers"], conv["ids"]
        for qa in conv["questions"]:
            gold = set(qa["gold"])
            t = time.perf_counter()
            r = client.post("/v1/search", headers=headers, json={
                "query": qa["question"], "limit": max(KS), "mode": mode, "kinds": ["episodic"], "recipe": recipe})
            lat_search.append((time.perf_counter() - t) * 1e3)
            r.raise_for_status()
            ranked = [id_to_dia.get(h["memory"]["id"], "?") for h in r.json()["hits"]]
            rec: dict[str, Any] = {"conversation": n_conv, "category": qa["category"], "gold": len(gold)}
            for k in KS:
                rec[f"R@{k}"] = len(gold & set(ranked[:k]))
            rec["NDCG@10"] = ndcg(ranked, gold)
            for budget in budgets:
                t = time.perf_counter()
                r = client.post("/v1/context", headers=headers, json={
                    "query": qa["question"], "budget_tokens": budget, "model": "cl100k_base", "mode": mode,
                    "recipe": recipe})
                if budget == 1024:
                    lat_context.append((time.perf_counter() - t) * 1e3)
                r.raise_for_status()
                body = r.json()
                assert body["token_count"] <= budget
                fid = {id_to_dia.get(i["id"], "?"): i["fidelity"] for i in body["items"]}
                rec[f"ER@{budget}"] = sum(1 for g in gold if fid.get(g) in TEXT_FIDELITIES)
                rec[f"any@{budget}"] = sum(1 for g in gold if g in fid)
                rec[f"AC@{budget}"] = int(norm_text(qa["answer"]) in norm_text(body["context"]))
                if budget == max(budgets):  # every candidate the packer weighed: what any budget could hold
                    weighed = {id_to_dia.get(i["id"], "?") for i in body["items"] + body["left_out"]}
                    rec["pool"] = len(gold & weighed)
            records.append(rec)
    return {"records": records, "latency_search_ms": lat_search, "latency_context_ms": lat_context}


def summarise(records: list[dict[str, Any]], budgets: tuple[int, ...]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[str(rec["category"])].append(rec)
        groups["overall"].append(rec)
    out: dict[str, dict[str, float]] = {}
    for name in [*(str(c) for c in CATEGORIES), "overall"]:
        recs = groups.get(name, [])
        gold = sum(r["gold"] for r in recs) or 1
        row: dict[str, float] = {"questions": len(recs), "gold": sum(r["gold"] for r in recs)}
        for b in budgets:
            row[f"ER@{b}"] = 100 * sum(r[f"ER@{b}"] for r in recs) / gold
            row[f"any@{b}"] = 100 * sum(r[f"any@{b}"] for r in recs) / gold
            row[f"AC@{b}"] = 100 * sum(r[f"AC@{b}"] for r in recs) / max(len(recs), 1)
        row["pool"] = 100 * sum(r.get("pool", 0) for r in recs) / gold
        for k in KS:
            row[f"R@{k}"] = 100 * sum(r[f"R@{k}"] for r in recs) / gold
        row["NDCG@10"] = 100 * sum(r["NDCG@10"] for r in recs) / max(len(recs), 1)
        out[name] = row
    return out


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def print_table(title: str, summary: dict[str, dict[str, float]], budgets: tuple[int, ...]) -> None:
    cols = (["questions", "gold"] + [f"ER@{b}" for b in budgets] + [f"any@{b}" for b in budgets]
            + [f"AC@{b}" for b in budgets] + ["pool"] + [f"R@{k}" for k in KS] + ["NDCG@10"])
    print(f"\n{title}")
    print("| category | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in summary.items():
        label = f"{name} {CATEGORIES[int(name)]}" if name.isdigit() else name
        cells = [f"{int(row[c])}" if c in ("questions", "gold") else f"{row[c]:.1f}" for c in cols]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--json", dest="json_out", default=None, help="write all numbers to this JSON file")
    parser.add_argument("--conversations", type=int, default=None, help="only the first N conversations")
    parser.add_argument("--modes", default="hybrid,sparse,dense", help="ranking modes (default all three)")
    parser.add_argument("--recipes", default="general,conversation",
                        help="recipes the hybrid mode is measured with (the baselines use the first)")
    parser.add_argument("--variants", default="", help=f"lever variants on hybrid: {','.join(VARIANTS)} or 'all'")
    parser.add_argument("--variant-base", default="general", help="the recipe the variants change")
    parser.add_argument("--language", default="english", help="the tenants' full-text language ('' = unset: simple)")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--state-dir", default=None, help="keep the database and ingest here and reuse them on the "
                        "next run (for iterating; default: a temporary directory, removed at the end)")
    parser.add_argument("--consolidate", action="store_true", help="after ingest, consolidate each conversation "
                        "into facts linked to their source turns (offline built-in); needs a fresh --state-dir")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads for embedding (default 1: on "
                        "a shared 2-core machine, 2 threads for one short query thrash; measured 10x slower)")
    args = parser.parse_args()
    import torch
    from harness import stopping_postgres

    torch.set_num_threads(args.torch_threads)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    data = json.loads(Path(args.data).read_text())[: args.conversations]
    results: dict[str, Any] = {"data": args.data, "conversations": len(data), "modes": {}, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="memsvc-locomo-") as tmp:
        state = Path(args.state_dir) if args.state_dir else Path(tmp)
        state.mkdir(parents=True, exist_ok=True)
        manifest = state / f"ingested-{Path(args.data).stem}.json"
        app, client, root = start_service(state)
        with stopping_postgres(state), client:  # the server stops after the app, also on Ctrl-C / SIGTERM
            convs = []
            t0 = time.perf_counter()
            n_turns = 0
            if manifest.exists():  # reuse: root key of that database, tenant keys and id maps
                saved = json.loads(manifest.read_text())
                convs, n_turns = saved["convs"][: len(data)], saved["turns"]
                if len(convs) < len(data):
                    raise SystemExit(f"{manifest} holds {len(convs)} conversations; use another --state-dir")
                print(f"reusing the ingest in {state} ({len(convs)} conversations)")
            for sample in data if not convs else []:
                turns = turns_of(sample)
                known = {t["dia_id"] for t in turns}
                headers, tenant_id = new_tenant(client, root, f"locomo-{sample['sample_id']}-{uuid.uuid4().hex[:6]}",
                                                args.language or None)
                ids = ingest(client, headers, turns)
                n_turns += len(turns)
                questions = []
                for qa in sample["qa"]:
                    gold = normalise_evidence(qa.get("evidence", []), known)
                    if qa.get("category") in CATEGORIES and gold and "answer" in qa:
                        questions.append({**qa, "gold": gold})
                convs.append({"headers": headers, "tenant_id": tenant_id, "ids": ids, "questions": questions})
                print(f"ingested {sample['sample_id']}: {len(turns)} turns, {len(questions)} questions", flush=True)
            ingest_s = max(time.perf_counter() - t0, 1e-9)
            if args.consolidate and not any("facts" in c for c in convs):
                consolidate_all(app, convs)
            if args.state_dir and not manifest.exists():
                manifest.write_text(json.dumps({"convs": convs, "turns": n_turns}))
            results["ingest"] = {"turns": n_turns, "seconds": ingest_s, "per_second": n_turns / ingest_s}
            if ingest_s > 1:
                print(f"ingest: {n_turns} turns in {ingest_s:.1f} s ({n_turns / ingest_s:.0f}/s)")

            recipes = [r for r in args.recipes.split(",") if r]
            runs = [(mode, recipe) for mode in args.modes.split(",") if mode
                    for recipe in (recipes if mode == "hybrid" else recipes[:1])]
            for mode, recipe in runs:
                t = time.perf_counter()
                ev = evaluate(client, convs, mode, budgets, recipe)
                summary = summarise(ev["records"], budgets)
                lat = {"search_p50": pct(ev["latency_search_ms"], .5), "search_p95": pct(ev["latency_search_ms"], .95),
                       "context_p50": pct(ev["latency_context_ms"], .5),
                       "context_p95": pct(ev["latency_context_ms"], .95)}
                label = f"{mode}:{recipe}" if mode == "hybrid" else mode
                results["modes"][label] = {"summary": summary, "latency_ms": lat, "records": ev["records"]}
                name = {"hybrid": f"memsvc hybrid, recipe {recipe}", "sparse": "BM25 only", "dense": "dense only"}
                print_table(f"{name.get(mode, mode)}: ER/any/AC in % at cl100k budgets, search recall in % "
                            f"({time.perf_counter() - t:.0f} s)", summary, budgets)
                print(f"latency (ms, in-process TestClient, incl. query embedding): search p50 {lat['search_p50']:.1f} "
                      f"p95 {lat['search_p95']:.1f}; context@1024 p50 {lat['context_p50']:.1f} "
                      f"p95 {lat['context_p95']:.1f}")

            names = list(VARIANTS) if args.variants == "all" else [v for v in args.variants.split(",") if v]
            if names:
                rows = []
                for name in names:
                    app.state.retrieval.recipes.derive(f"variant-{name}", args.variant_base, name, **VARIANTS[name])
                    ev = evaluate(client, convs, "hybrid", budgets, f"variant-{name}")
                    summary = summarise(ev["records"], budgets)
                    results["variants"][name] = {"settings": VARIANTS[name], "summary": summary}
                    o = summary["overall"]
                    rows.append([name] + [o[f"ER@{b}"] for b in budgets] + [o[f"AC@{b}"] for b in budgets]
                                + [o["R@10"]] + [summary[str(c)]["ER@1024"] for c in CATEGORIES])
                    print(f"variant {name}: ER@1024 {o['ER@1024']:.1f}", flush=True)
                head = (["variant"] + [f"ER@{b}" for b in budgets] + [f"AC@{b}" for b in budgets] + ["R@10"]
                        + [f"ER@1024 c{c}" for c in CATEGORIES])
                print("\nLevers (hybrid, overall unless a category is named)")
                print("| " + " | ".join(head) + " |")
                print("|---" * len(head) + "|")
                for row in rows:
                    print("| " + " | ".join([row[0]] + [f"{v:.1f}" for v in row[1:]]) + " |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
