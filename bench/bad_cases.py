"""Issue 14's bad cases as a new user meets them: what memsvc stores for each, with the offline default.

    python bench/bad_cases.py            # or: memsvc bench bad_cases
    python bench/bad_cases.py --json out.json

Starts the service as the other benches do (bench/harness.py: embedded Postgres in a temporary directory, the
real API on a free port, both stopped on the way out) with no LLM, summarizer or recipe configured, and:

1. writes every case through POST /v1/memories/batch: the summary cases of tests/test_summaries.py and
   bench/summaries.py as plain notes; the fact corpus of tests/test_facts_corpus.py as user alice's turns with
   their metadata role/speaker and dates (the assistant's replies with role assistant, Berlin then Lisbon);
   notes that start with "Error:", "Note:", "TODO:", "Assistant:" (SPEAKER_CASES) as plain notes;
2. consolidates as a deployment does: the writes left a debounced consolidation job per scope; POST
   /v1/consolidate brings each forward and the job runs through the lifecycle runner (what a worker calls)
   with the offline built-in extractor;
3. reads back each memory (GET /v1/memories/{id}: summary, metadata speaker), the facts derived from it
   (derived_from links; valid_to / superseded_by), for the speaker cases a search with the conversation
   recipe naming the prefix as a person (named_speaker / other_speaker signals: there must be none), and a
   200-token context for CONTEXT_QUERY with the default recipe.

One markdown table comes out; `ok` is the check the case's home states (the expected summary or facts of the
test corpora, the faithfulness check of tests/test_summaries.py, no speaker, the statements in the context).
The cases live in those files (one home); this bench only writes them and shows what was stored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from harness import running_server  # noqa: E402

from bench.summaries import CASES as SUMMARY_BENCH_CASES  # noqa: E402
from tests.test_facts_corpus import CORPUS as FACT_CORPUS  # noqa: E402
from tests.test_summaries import CORPUS as SUMMARY_CORPUS  # noqa: E402
from tests.test_summaries import assert_faithful  # noqa: E402

CONTEXT_QUERY = "What is Bob planning and what does he dislike?"
CONTEXT_BUDGET = 200
# Issue 14: ranking read these content prefixes as speakers. Each is written as a plain note (no metadata).
SPEAKER_CASES = [
    "Error: connection refused",
    "Note: Bob is planning a trip to Japan in April.",
    "TODO: ask Bob which restaurants avoid cilantro.",
    "Assistant: I looked it up, Kyoto is two hours from Tokyo by train.",
]
NO_SPEAKER_SIGNALS = ("named_speaker", "other_speaker")


def cell(text: object) -> str:
    """One markdown table cell: newlines shown as \\n, pipes escaped."""
    return str(text).replace("\\", "\\\\").replace("\n", "\\n").replace("|", "\\|")


def cases() -> list[dict[str, Any]]:
    """Every case: group, the item written, and what its home expects (None: no expectation there)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for text, expected in SUMMARY_CORPUS:
        out.append({"group": "summary", "item": {"content": text}, "summary": ("expect", expected)})
        seen.add(text)
    for text in SUMMARY_BENCH_CASES:
        if text not in seen:
            out.append({"group": "summary", "item": {"content": text}, "summary": None})
    for item, facts in FACT_CORPUS:
        out.append({"group": "fact", "item": item, "facts": sorted(facts)})
    for text in SPEAKER_CASES:
        out.append({"group": "speaker", "item": {"content": text}, "prefix": text.split(":")[0]})
    return out


def consolidate_written(server: Any, client: Any) -> list[dict[str, Any]]:
    """Run the consolidation jobs the writes queued, as a deployment's worker would, until none is waiting."""
    from memsvc.db import get_engine
    from memsvc.lifecycle.runner import RunContext, run_job
    from memsvc.llm import BuiltinLLM
    from memsvc.queue import NullQueue

    ctx = RunContext.default(get_engine(server.database_url), NullQueue())
    if not isinstance(ctx.llm(), BuiltinLLM):  # what a worker of this configuration would run
        raise SystemExit(f"the runner would extract with {type(ctx.llm()).__name__}, not the offline built-in")
    done: list[dict[str, Any]] = []
    for _ in range(20):  # a step takes consolidate_batch episodes; a big scope asks for another job
        queued = client.get("/v1/jobs", params={"kind": "consolidate", "status": "queued"}).json()["items"]
        if not queued:
            return done
        for job in queued:
            scope = {k: v for k, v in job["scope"].items() if k in ("user_id", "agent_id") and v}
            accepted = client.post("/v1/consolidate", json=scope)  # the debounced job, brought forward
            accepted.raise_for_status()
            job_id = accepted.json()["job_id"]
            run_job(ctx, uuid.UUID(job_id))
            done.append(client.get(f"/v1/jobs/{job_id}").json())
    raise RuntimeError("consolidation jobs kept coming")


def derived_facts(server: Any) -> dict[str, list[dict[str, Any]]]:
    """source memory id -> the facts derived from it (the derived_from links; the API has no route for them)."""
    from sqlalchemy import select

    from memsvc.db import get_engine, session_factory
    from memsvc.models import Memory, MemoryLink

    out: dict[str, list[dict[str, Any]]] = {}
    with session_factory(get_engine(server.database_url))() as s:
        rows = s.execute(select(MemoryLink.dst_id, Memory).join(Memory, Memory.id == MemoryLink.src_id)
                         .where(MemoryLink.relation == "derived_from").order_by(Memory.content)).all()
        contents = {m.id: m.content for _, m in rows}
        for source, fact in rows:
            out.setdefault(str(source), []).append({
                "content": fact.content, "valid_to": fact.valid_to.isoformat() if fact.valid_to else None,
                "superseded_by": contents.get(fact.superseded_by, str(fact.superseded_by) if fact.superseded_by
                                              else None)})
    return out


def fact_cell(facts: list[dict[str, Any]]) -> str:
    if not facts:
        return "none"
    shown = []
    for f in facts:
        if f["valid_to"]:
            shown.append(f"{f['content']} (closed: valid_to {f['valid_to'][:10]}, superseded by "
                         f"\"{f['superseded_by']}\")")
        else:
            shown.append(f"{f['content']} (open)")
    return "; ".join(shown)


def written_cell(item: dict[str, Any]) -> str:
    extra = {k: item[k] for k in ("user_id", "occurred_at") if item.get(k)}
    if item.get("occurred_at"):
        extra["occurred_at"] = item["occurred_at"][:10]
    meta = {k: v for k, v in (item.get("metadata") or {}).items() if k != "source"}
    parts = [json.dumps(item["content"], ensure_ascii=False)]
    parts += [f"{k}={v}" for k, v in extra.items()] + [f"{k}={v}" for k, v in meta.items()]
    return "; ".join(parts)


def check(case: dict[str, Any], stored: dict[str, Any], facts: list[dict[str, Any]]) -> str:
    problems = []
    summary = stored["summary"]
    try:
        assert_faithful(stored["content"], summary)
    except AssertionError:
        problems.append("summary not faithful")
    if case.get("summary") and summary != case["summary"][1]:
        problems.append(f"summary expected {case['summary'][1]!r}")
    if "facts" in case and sorted(f["content"] for f in facts) != case["facts"]:
        problems.append(f"facts expected {case['facts']}")
    if case["group"] == "speaker":
        if stored["metadata"].get("speaker"):
            problems.append("a speaker")
        if case.get("speaker_signals"):
            problems.append(f"signals {case['speaker_signals']}")
    elif stored["metadata"].get("speaker") and "named_speaker" not in case.get("speaker_signals", []):
        problems.append("the metadata speaker earned no named_speaker signal")
    return "ok" if not problems else "WRONG: " + "; ".join(problems)


def speaker_search(client: Any, name: str, memory: dict[str, Any], row_of: dict[str, int]) -> tuple[str, list[str]]:
    """Search with the conversation recipe (the one with speaker priors) for a question that names `name` as a
    person and matches the memory's last word (the boost needs a full-text match beyond the name); what speaker
    signals the memory's hit carries (or where its text was deduplicated to)."""
    query = f"What did {name} say about {memory['content'].split()[-1].strip('.,!?')}?"
    memory_id = memory["id"]
    r = client.post("/v1/search", json={"query": query, "recipe": "conversation", "limit": 50})
    r.raise_for_status()
    hits, dups = r.json()["hits"], {d["id"]: d["duplicate_of"] for d in r.json()["duplicates_removed"]}
    if memory_id in dups:  # the same text written twice: the search shows it once
        memory_id = dups[memory_id]
        where = f"same text as #{row_of.get(memory_id, '?')}, "
    else:
        where = ""
    hit = next((h for h in hits if h["memory"]["id"] == memory_id), None)
    signals = sorted(k for k in (hit or {}).get("signals", {}) if k in NO_SPEAKER_SIGNALS)
    where += f"rank {hits.index(hit) + 1}" if hit else "not in the hits"
    return f"\"{query}\" (conversation recipe): {where}, speaker signals: {', '.join(signals) or 'none'}", signals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", dest="json_out", default=None, help="also write every row to this JSON file")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads for the encoders")
    args = parser.parse_args()
    import torch

    from memsvc.config import get_settings

    # The offline default a new user gets: no hosted model, the default summarizer and recipe. `memsvc bench`
    # has read the settings already (and the runner's LLM comes from them): read them again without these.
    for name in ("MEMSVC_LLM_MODEL", "MEMSVC_SUMMARIZER", "MEMSVC_RECIPE", "MEMSVC_RECIPES_FILE"):
        os.environ.pop(name, None)
    get_settings.cache_clear()

    torch.set_num_threads(args.torch_threads)
    all_cases = cases()
    t0 = time.perf_counter()
    with running_server() as server, server.client(server.new_tenant_key("bad-cases")) as client:
        r = client.post("/v1/memories/batch", json={"items": [c["item"] for c in all_cases]})
        r.raise_for_status()
        ids = [m["id"] for m in r.json()["items"]]
        jobs = consolidate_written(server, client)
        facts = derived_facts(server)
        stored = [client.get(f"/v1/memories/{i}").json() for i in ids]
        row_of = {i: n for n, i in enumerate(ids, start=1)}
        searches = []
        for case, memory in zip(all_cases, stored, strict=True):
            # The prefix of a speaker case named as a person must earn nothing; a speaker the writer set in
            # metadata (the control: the fact corpus's "I live in Oslo." said by Bob) must.
            name = case.get("prefix") or memory["metadata"].get("speaker")
            text, case["speaker_signals"] = speaker_search(client, name, memory, row_of) if name else ("", [])
            searches.append(text)
        ctx = client.post("/v1/context", json={"query": CONTEXT_QUERY, "budget_tokens": CONTEXT_BUDGET})
        ctx.raise_for_status()
        context = ctx.json()
    print(f"issue 14 bad cases: {len(all_cases)} memories written, {len(jobs)} consolidation jobs "
          f"({', '.join(j['status'] for j in jobs)}; offline built-in extractor), "
          f"{sum(len(v) for v in facts.values())} fact links, {time.perf_counter() - t0:.0f} s")
    lines = [line for line in context["context"].splitlines() if line.strip()]
    statements_in = all(w in context["context"] for w in ("cilantro", "Japan"))
    broken = [line for line in lines if line.rstrip().endswith(("said.", "again."))]
    rows = []
    print("\n| # | case | written | stored summary | facts derived | speaker memsvc uses | ok |")
    print("|---|---|---|---|---|---|---|")
    for n, (case, memory, search) in enumerate(zip(all_cases, stored, searches, strict=True), start=1):
        summary = memory["summary"] or "none: the text is its own summary"
        derived = facts.get(memory["id"], [])
        speaker = memory["metadata"].get("speaker") or "none"
        if search:
            speaker += f"; {search}"
        ok = check(case, memory, derived)
        rows.append({"case": case["group"], "written": case["item"], "summary": memory["summary"],
                     "summary_by": memory["summary_by"], "facts": derived, "speaker": speaker, "ok": ok})
        print(f"| {n} | {case['group']} | {cell(written_cell(case['item']))} | {cell(summary)} | "
              f"{cell(fact_cell(derived))} | {cell(speaker)} | {cell(ok)} |")
    ok = "ok" if statements_in and not broken else f"WRONG: statements in {statements_in}, broken lines {broken}"
    print(f"| {len(all_cases) + 1} | context | POST /v1/context {json.dumps(CONTEXT_QUERY)}, budget_tokens "
          f"{CONTEXT_BUDGET}, default recipe ({context['token_count']} tokens) | "
          f"{'<br>'.join(cell(line) for line in lines)} | - | - | {cell(ok)} |")
    print(f"\n200-token context for {CONTEXT_QUERY!r} (default recipe), as returned:\n")
    print(context["context"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "jobs": jobs, "context": context}, indent=2,
                                                  default=str))
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
