"""LongMemEval-S retrieval benchmark through the service (issue 14 item 6).

Usage: python bench/longmemeval.py [DATA_JSON] [--questions N] [--types a,b] [--recipe NAME] [--json OUT]
                                   [--state-dir DIR] [--modes hybrid,sparse,dense] [--server-embeds]

Starts an embedded PostgreSQL + pgvector (in a temporary directory unless --state-dir), migrates it and
drives the real FastAPI app in-process (TestClient), as bench/locomo.py does. Each question gets its own
tenant and user_id; each turn of its haystack (~50 sessions, ~500 turns) is one episodic memory written
through POST /v1/memories/batch: raw content, metadata {"role", "speaker"} (the role), the session's date
as occurred_at (turns 5 s apart, in order) and a neutral per-question session id (bench/lme_data.py). The
question text is the query, and its date the request's `asked_at` (what "a week ago" in it is read against;
--no-asked-at leaves it out, as before that field existed: the service then reads time phrases as of the wall
clock, years after the haystack).

Metrics per question type and overall, for hybrid (the service's default ranking, or --recipe) and for
BM25 only (mode=sparse) and dense only (mode=dense), in the same run and database:
  ER@B   share of `has_answer` turns whose memory is in the /v1/context context at verbatim, summary or
         excerpt fidelity (its own words), for budgets B in cl100k tokens; XR@B the share that came in as
         excerpts, part of ER@B
  AC@B   share of questions with a short answer (at most four words: a name, a number, a ratio) whose
         normalised answer occurs in the context: what a summary or an excerpt kept of the answer itself
  ES@B   share of questions with at least one turn of an evidence session (answer_session_ids) in it
  pool   share of `has_answer` turns among all candidates the packer weighed at the largest budget
         (items + left_out): the ceiling of ER at any budget
  R@10   share of `has_answer` turns among the 10 /v1/search hits
and ingest throughput (memories/s through the batch endpoint; embeddings computed client-side once per
distinct text with the service's own embedder and sent, unless --server-embeds: see bench/lme_data.py).

Baseline of another checkout: cd THAT_TREE && PYTHONPATH=THAT_TREE python /path/to/bench/longmemeval.py
(this script puts its own checkout after PYTHONPATH, and prints which memsvc it imported).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # lme_data and the locomo helpers; the bench folder holds no memsvc
sys.path.append(str(BENCH.parent))  # after PYTHONPATH, so a baseline run can put another checkout's first
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import api  # noqa: E402,F401  bound now: the helpers below put this checkout first on sys.path when imported
import memsvc  # noqa: E402

TREE = Path(memsvc.__file__).resolve().parent.parent  # the checkout under test: PYTHONPATH's, else this one

from harness import print_table, stopping_postgres  # noqa: E402
from lme_data import DEFAULT_CACHE, DEFAULT_DATA, TYPES, EmbeddingCache, haystack, load, parse_date, select  # noqa: E402
from locomo import TEXT_FIDELITIES, new_tenant, norm_text, pct, start_service  # noqa: E402

BUDGETS = (1024, 2048, 4096)
# The table's columns after mode and type (the JSON has every number: ES@, XR@ and any@ at each budget).
SHOWN = ("questions", "gold", *(f"ER@{b}" for b in BUDGETS), "ES@1024", "XR@1024", "AC@1024", "AC@2048", "pool",
         "R@10")
MODES = ("hybrid", "sparse", "dense")
BATCH = 500


# ---- ingest ---------------------------------------------------------------------------------------
def ingest_question(client: Any, root: str, q: dict[str, Any], turns: list[dict[str, Any]],
                    cache: EmbeddingCache | None) -> dict[str, Any]:
    """A tenant and user for the question, its haystack written; the scorer's map memory id -> flags."""
    headers, _ = new_tenant(client, root, f"lme-{q['question_id']}-{uuid.uuid4().hex[:6]}")
    user = f"lme-{q['question_id']}"
    ids: dict[str, list[int]] = {}
    for start in range(0, len(turns), BATCH):
        chunk = turns[start:start + BATCH]
        items = [{**t["item"], "user_id": user} for t in chunk]
        if cache is not None:
            for item in items:
                item["embedding"] = cache.get(item["content"])
        r = client.post("/v1/memories/batch", json={"items": items}, headers=headers)
        r.raise_for_status()
        for turn, made in zip(chunk, r.json()["items"], strict=True):
            ids[made["id"]] = [int(turn["gold"]), int(turn["evidence_session"])]
    return {"question_id": q["question_id"], "type": q["question_type"], "question": q["question"],
            "headers": headers, "user_id": user, "ids": ids}


# ---- evaluation -----------------------------------------------------------------------------------
def evaluate(client: Any, scopes: list[dict[str, Any]], mode: str, recipe: str | None,
             answers: dict[str, str], asked: dict[str, str] | None = None) -> dict[str, Any]:
    records = []
    lat_search: list[float] = []
    lat_context: list[float] = []
    extra = {"recipe": recipe} if recipe else {}
    for s in scopes:
        flags: dict[str, list[int]] = s["ids"]
        gold = sum(g for g, _ in flags.values())
        base = {"query": s["question"], "user_id": s["user_id"], "mode": mode, **extra}
        if asked and s["question_id"] in asked:
            base["asked_at"] = asked[s["question_id"]]
        t = time.perf_counter()
        r = client.post("/v1/search", headers=s["headers"], json={**base, "limit": 10, "kinds": ["episodic"]})
        lat_search.append((time.perf_counter() - t) * 1e3)
        r.raise_for_status()
        hits = [h["memory"]["id"] for h in r.json()["hits"]]
        rec: dict[str, Any] = {"question_id": s["question_id"], "type": s["type"], "gold": gold,
                               "R@10": sum(flags.get(i, [0, 0])[0] for i in hits)}
        answer = norm_text(answers.get(s["question_id"], ""))
        short_answer = answer if answer and len(answer.split()) <= 4 else ""
        for budget in BUDGETS:
            t = time.perf_counter()
            r = client.post("/v1/context", headers=s["headers"],
                            json={**base, "budget_tokens": budget, "model": "cl100k_base"})
            lat_context.append((time.perf_counter() - t) * 1e3)
            r.raise_for_status()
            body = r.json()
            if body["token_count"] > budget or body["tokenizer"] != "cl100k_base" or not body["exact"]:
                raise SystemExit(f"context broke its budget or counted with {body['tokenizer']}: {body['token_count']}")
            used = [(flags.get(i["id"], [0, 0]), i["fidelity"]) for i in body["items"]]
            rec[f"ER@{budget}"] = sum(f[0] for f, fid in used if fid in TEXT_FIDELITIES)
            rec[f"XR@{budget}"] = sum(f[0] for f, fid in used if fid == "excerpt")
            if short_answer:
                rec[f"AC@{budget}"] = int(short_answer in norm_text(body["context"]))
            rec[f"ES@{budget}"] = int(any(f[1] for f, _ in used))
            rec[f"any@{budget}"] = sum(f[0] for f, _ in used)  # gist lines too (JSON only)
            if budget == max(BUDGETS):
                weighed = {i["id"] for i in body["items"] + body["left_out"]}
                rec["pool"] = sum(flags.get(i, [0, 0])[0] for i in weighed)
        records.append(rec)
    return {"records": records, "latency_search_ms": lat_search, "latency_context_ms": lat_context}


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, float | str]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[rec["type"]].append(rec)
        groups["overall"].append(rec)
    out: dict[str, dict[str, float | str]] = {}
    for name in [*(t for t in TYPES if t in groups), "overall"]:
        recs = groups[name]
        gold = sum(r["gold"] for r in recs)
        g = max(gold, 1)
        row: dict[str, float | str] = {"questions": len(recs), "gold": gold}
        for b in BUDGETS:
            row[f"ER@{b}"] = 100 * sum(r[f"ER@{b}"] for r in recs) / g
        for b in BUDGETS:
            row[f"ES@{b}"] = 100 * sum(r[f"ES@{b}"] for r in recs) / len(recs)
        for b in BUDGETS:
            row[f"XR@{b}"] = 100 * sum(r[f"XR@{b}"] for r in recs) / g
        answered = [r for r in recs if "AC@1024" in r]
        for b in BUDGETS:
            row[f"AC@{b}"] = 100 * sum(r[f"AC@{b}"] for r in answered) / len(answered) if answered else "-"
        any_at = {f"any@{b}": 100 * sum(r[f"any@{b}"] for r in recs) / g for b in BUDGETS}
        row["pool"] = 100 * sum(r["pool"] for r in recs) / g
        row["R@10"] = 100 * sum(r["R@10"] for r in recs) / g
        out[name] = {**row, "short_answers": len(answered), **any_at}
    return out


# ---- run ------------------------------------------------------------------------------------------
def tree_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(TREE), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "?"
    return f"{TREE} @ {rev}"


def prepare(args: argparse.Namespace, data: dict[str, Any], client: Any, root: str,
            state: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chosen questions' scopes, ingesting those the state directory does not hold yet (all of them in a
    temporary one): a larger run can build on a smaller one's database."""
    from memsvc.config import get_settings

    chosen = select(data["questions"], args.questions, [t for t in args.types.split(",") if t])
    manifest = state / "lme-ingested.json"
    saved = json.loads(manifest.read_text()) if manifest.exists() else {"scopes": [], "ingest": None}
    by_id = {s["question_id"]: s for s in saved["scopes"]}
    todo = [q for q in chosen if q["question_id"] not in by_id]
    if by_id:
        print(f"reusing the ingest in {state}: {len(chosen) - len(todo)} of these {len(chosen)} questions", flush=True)
    max_chars = get_settings().max_content_chars
    stacks = [haystack(q, data["sessions"], max_chars) for q in todo]
    texts = [t["item"]["content"] for turns in stacks for t in turns]
    cache, embed_s = None, 0.0
    if not args.server_embeds and todo:
        cache = EmbeddingCache(Path(args.embed_cache), app_embedder(client))
        print(f"{len(texts)} turns to write, {len(set(texts))} distinct texts; {len(cache.vectors)} vectors cached "
              f"in {cache.dir}", flush=True)
        embed_s = cache.fill(texts)
    import torch

    torch.set_num_threads(1)  # queries next: one thread each (bench/locomo.py measured 2 threads thrash)

    def save() -> None:
        if args.state_dir:
            manifest.write_text(json.dumps({"scopes": list(by_id.values()), "ingest": saved["ingest"]}))

    t0 = time.perf_counter()
    done = 0
    try:
        for n, (q, turns) in enumerate(zip(todo, stacks, strict=True)):
            by_id[q["question_id"]] = ingest_question(client, root, q, turns, cache)
            done += len(turns)
            if (n + 1) % 10 == 0 or n + 1 == len(todo):
                print(f"ingested {n + 1}/{len(todo)} questions, {done} memories "
                      f"({done / (time.perf_counter() - t0):.0f}/s)", flush=True)
                save()
    finally:
        save()  # an interrupted ingest keeps the questions it finished
    if todo:
        seconds = time.perf_counter() - t0
        saved["ingest"] = {"memories": done, "seconds": seconds, "per_second": done / max(seconds, 1e-9),
                           "client_embeddings": cache is not None, "embed_seconds_new_texts": embed_s,
                           "truncated_turns": sum(t["truncated"] for turns in stacks for t in turns)}
        save()
    return [by_id[q["question_id"]] for q in chosen], saved["ingest"]


def app_embedder(client: Any) -> Any:
    """The embedder the app under test writes with (the same model and code as a server-side embed)."""
    return client.app.state.embedder()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--questions", type=int, default=None, help="only the first N questions of each type")
    parser.add_argument("--types", default="", help=f"comma-separated question types (default all: {','.join(TYPES)})")
    parser.add_argument("--no-asked-at", action="store_true", help="send no asked_at (the question's date)")
    parser.add_argument("--recipe", default=None, help='sent as "recipe" in the /v1/search and /v1/context bodies')
    parser.add_argument("--modes", default=",".join(MODES), help="ranking modes (default all three)")
    parser.add_argument("--json", dest="json_out", default=None, help="write all numbers to this JSON file")
    parser.add_argument("--state-dir", default=None, help="keep the database and ingest here and reuse them on the "
                        "next run (default: a temporary directory, removed at the end)")
    parser.add_argument("--embed-cache", default=str(DEFAULT_CACHE), help="client-side embedding cache directory")
    parser.add_argument("--server-embeds", action="store_true", help="send no embeddings: the service embeds each "
                        "memory itself (about 20 memories/s on two CPU cores)")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch threads while embedding")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.torch_threads)
    print(f"memsvc from {tree_revision()} ({memsvc.__file__})", flush=True)
    results: dict[str, Any] = {"data": args.data, "memsvc": tree_revision(), "recipe": args.recipe, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="memsvc-lme-") as tmp:
        state = Path(args.state_dir) if args.state_dir else Path(tmp)
        state.mkdir(parents=True, exist_ok=True)
        with stopping_postgres(state):  # also on Ctrl-C, SIGTERM and SIGHUP
            _, client, root = start_service(state)
            with client:
                data = load(args.data)  # 59 MB of JSON: read once
                scopes, ingest = prepare(args, data, client, root, state)
                answers = {q["question_id"]: str(q["answer"]) for q in data["questions"]}
                asked = None if args.no_asked_at else {
                    q["question_id"]: parse_date(q["question_date"]).isoformat() for q in data["questions"]}
                results["questions"] = len(scopes)
                results["ingest"] = ingest
                rows: list[list[object]] = []
                for mode in [m for m in args.modes.split(",") if m]:
                    t = time.perf_counter()
                    ev = evaluate(client, scopes, mode, args.recipe, answers, asked)
                    summary = summarise(ev["records"])
                    lat = {"search_p50": pct(ev["latency_search_ms"], .5),
                           "context_p50": pct(ev["latency_context_ms"], .5),
                           "context_p95": pct(ev["latency_context_ms"], .95)}
                    results["modes"][mode] = {"summary": summary, "latency_ms": lat, "records": ev["records"]}
                    print(f"{mode}: {time.perf_counter() - t:.0f} s; search p50 {lat['search_p50']:.0f} ms, "
                          f"context p50 {lat['context_p50']:.0f} / p95 {lat['context_p95']:.0f} ms", flush=True)
                    label = f"{mode}{' ' + args.recipe if args.recipe and mode == 'hybrid' else ''}"
                    rows += [[label, name, *(int(row[k]) if k in ("questions", "gold") else row[k] for k in SHOWN)]
                             for name, row in summary.items()]
    heads = ["mode", "type", "q", "gold", *SHOWN[2:]]
    ing = results["ingest"]
    print_table(f"LongMemEval-S ({results['questions']} questions): ER/ES/pool/R@10 in %, cl100k budgets; ingest "
                f"{ing['memories']} memories at {ing['per_second']:.0f}/s"
                f"{' (client-side embeddings)' if ing['client_embeddings'] else ''}", heads, rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
