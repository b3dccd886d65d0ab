"""Memory tokens on the local model: exact reconstruction against memory length and vectors, training cost,
and a reading test.

Usage: python bench/memtokens.py [--model smollm2|PATH] [--lengths 16,32,64,128,256] [--ks 1,2,4]
                                 [--per-cell 16] [--reading 24] [--reading-k 1] [training settings...]

Reconstruction: for each length, `--per-cell` agent memories (preferences, notes, tool results, code, dates
and ids, French/German/Spanish/Chinese/Japanese/Russian; generated here from templates) cut to exactly
`length` tokens of the model, each trained once per k, all ks of a length in one call of the trainer
(batched). A memory counts as exact only when greedy decoding of its float16 vectors in float32 gives back
its text and the end token. Seconds per memory are its share of the batch's wall time (each step's time
split over the rows training in it), steps are per memory.

Reading: short facts with a question each, asked with the fact (a) as text in the prompt, (b) as its trained
vectors spliced in (verified sets only), (c) not at all; an answer is right when it contains the expected
string. Reports how often (b) is right where (a) is, and where (c) is not.

Runs wherever torch runs: CUDA when present (training passes in bf16 there, verification in float32).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAMES = ["Dana", "Mateo", "Aiko", "Priya", "Olu", "Sven", "Léa", "Tomasz", "Hana", "Ravi", "Grace", "Yusuf"]
CITIES = ["Lisbon", "Osaka", "Nairobi", "Montréal", "Tbilisi", "Porto Alegre", "Leeds", "Hanoi", "Graz", "Cusco"]
JOBS = ["dentist", "bus driver", "data engineer", "violin teacher", "nurse", "carpenter", "pharmacist", "pilot"]
FOODS = ["peanuts", "shellfish", "gluten", "sesame", "kiwi", "lactose", "soy", "mustard"]
COLORS = ["teal", "burgundy", "ochre", "lavender", "navy", "olive", "coral", "charcoal"]
PETS = ["Biscuit", "Noodle", "Pepper", "Mochi", "Ziggy", "Luna", "Tofu", "Waffles"]
TOPICS = ["the Q3 budget", "the migration to Postgres 17", "the onboarding flow", "hiring a designer",
          "the API rate limits", "the offsite in May", "the flaky CI job", "renewing the lease"]
TOOLS = ["weather", "calendar", "search", "github", "sql", "shell"]

# One memory sentence each; {x} slots filled from the lists above or random numbers/ids.
SENTENCES = [
    "{name} prefers {color} themes, short answers and metric units; never suggest {food}.",
    "On {date}, {name} met {name2} in {city} to discuss {topic}; next step: a draft by {date2}.",
    "Reminder: {name}'s {relation} {name2} lives in {city} and works as a {job}.",
    '{{"tool": "{tool}", "status": "ok", "id": "{hex}", "value": {num}, "at": "{date}T{hh}:{mm}:00Z"}}',
    "$ git log -1 --format=%H\n{hex}{hex}\n$ pytest -q\n{num} passed, {small} failed in {sec}s",
    "def {fn}(x):\n    return x * {small} + {num}  # calibrated on {date}",
    "The wifi password for the {city} office is {pw}; the printer is on floor {small}.",
    "User asked to always reply in {lang} and to cc {name2}@example.org on invoices over ${num}.",
    "{name} est allergique aux {food_fr} et préfère les réunions le {jour} matin.",
    "{name} wohnt seit {year} in {city} und arbeitet als {job_de}; Termin am {date}.",
    "A {name} le gusta el café sin azúcar; su vuelo a {city} sale a las {hh}:{mm}.",
    "{name}さんは{city}に住んでいて、毎週{jour_ja}にジムに行きます。",
    "用户{name}希望每周{jour_zh}收到项目报告，预算上限为{num}元。",
    "{name} просит присылать отчёты по {jour_ru} до {hh}:{mm}.",
    "Order #{num}: {small} x {color} mug, shipped {date} via DHL, tracking {hex}.",
    "SELECT count(*) FROM events WHERE tenant = '{hex}' -> {num} rows ({sec} ms)",
]
FILL: dict[str, Callable[[random.Random], str]] = {
    "name": lambda r: r.choice(NAMES), "name2": lambda r: r.choice(NAMES), "city": lambda r: r.choice(CITIES),
    "job": lambda r: r.choice(JOBS), "food": lambda r: r.choice(FOODS), "color": lambda r: r.choice(COLORS),
    "topic": lambda r: r.choice(TOPICS), "tool": lambda r: r.choice(TOOLS),
    "relation": lambda r: r.choice(["sister", "brother", "cousin", "manager", "landlord", "neighbour"]),
    "date": lambda r: f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "date2": lambda r: f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "hex": lambda r: f"{r.getrandbits(32):08x}", "num": lambda r: str(r.randint(10, 99999)),
    "small": lambda r: str(r.randint(1, 9)), "sec": lambda r: f"{r.uniform(0.1, 99):.2f}",
    "hh": lambda r: f"{r.randint(6, 22):02d}", "mm": lambda r: f"{r.choice([0, 15, 30, 45]):02d}",
    "fn": lambda r: r.choice(["scale_price", "adjust_eta", "score_lead", "to_kelvin"]),
    "pw": lambda r: f"{r.choice(PETS).lower()}-{r.randint(100, 999)}-{r.choice(COLORS)}",
    "lang": lambda r: r.choice(["French", "Portuguese", "plain English", "Japanese"]),
    "food_fr": lambda r: r.choice(["arachides", "fruits de mer", "noix"]),
    "jour": lambda r: r.choice(["lundi", "mardi", "jeudi"]), "year": lambda r: str(r.randint(1998, 2024)),
    "job_de": lambda r: r.choice(["Ärztin", "Lehrer", "Ingenieurin"]),
    "jour_ja": lambda r: r.choice(["月曜日", "水曜日", "土曜日"]), "jour_zh": lambda r: r.choice(["一", "三", "五"]),
    "jour_ru": lambda r: r.choice(["понедельникам", "средам", "пятницам"]),
}

# Reading test: (fact, question, expected answer), each answerable only from its fact.
FACTS = [
    ("{name}'s {relation} lives in {city} and works as a {job}.", "Where does {name}'s {relation} live?", "{city}"),
    ("The wifi password for the {city} office is {pw}.", "What is the wifi password for the {city} office?", "{pw}"),
    ("{name} is allergic to {food}.", "What is {name} allergic to?", "{food}"),
    ("{name}'s favourite colour is {color}.", "What is {name}'s favourite colour?", "{color}"),
    ("The user's dog is called {pet}.", "What is the user's dog called?", "{pet}"),
    ("Flight {code} to {city} leaves from gate {gate}.", "Which gate does flight {code} leave from?", "{gate}"),
    ("The deadline for the {project} report is {date}.", "When is the {project} report due?", "{date}"),
    ("{name} works as a {job} in {city}.", "What is {name}'s job?", "{job}"),
]
FACT_FILL = {**FILL, "pet": lambda r: r.choice(PETS), "code": lambda r: f"{r.choice('BLQTZ')}{r.randint(100, 999)}",
             "gate": lambda r: f"{r.choice('ABCD')}{r.randint(1, 40)}",
             "project": lambda r: r.choice(["Atlas", "Heron", "Juniper", "Quartz"])}


def fill(template: str, rng: random.Random, table: dict[str, Callable[[random.Random], str]]) -> str:
    keys = {k: table[k](rng) for k in table if "{" + k + "}" in template}
    return template.format(**keys)


def memory_of_length(counter: Any, n_tokens: int, rng: random.Random) -> str:
    """Sentences drawn at random, joined, cut to exactly n_tokens tokens (redrawn until the cut lands exactly)."""
    for _ in range(50):
        text = ""
        while counter.count(text) < n_tokens + 8:
            text += (" " if rng.random() < 0.7 else "\n") * bool(text) + fill(rng.choice(SENTENCES), rng, FILL)
        cut = counter.truncate(text, n_tokens).rstrip()
        if counter.count(cut) == n_tokens and counter.decode(counter.encode(cut)) == cut:
            return cut
    raise RuntimeError(f"could not cut a memory to {n_tokens} tokens")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reconstruction(model: Any, settings: Any, lengths: list[int], ks: list[int], per_cell: int,
                   seed: int, after_length: Callable[[list[dict[str, Any]]], None] | None = None,
                   ) -> list[dict[str, Any]]:
    """One trainer call per length, all its ks mixed in one batch (same length: no padding between them).
    `after_length(rows so far)` runs as each length finishes: a run stopped at a time limit keeps them."""
    from memsvc.memtokens.trainer import train_memory_tokens

    rows = []
    for length in lengths:
        rng = random.Random(f"{seed}-{length}")
        texts = [memory_of_length(model.tokenizer, length, rng) for _ in range(per_cell)]  # same texts for every k
        batch_texts = [t for _ in ks for t in texts]
        batch_ks = [k for k in ks for _ in texts]
        t0 = time.perf_counter()
        results = train_memory_tokens(
            model, batch_texts, settings, ks=batch_ks,
            progress=lambda done, total, length=length, t0=t0: log(
                f"  {length} tokens: {done}/{total} done, {time.perf_counter() - t0:.0f} s"))
        wall = time.perf_counter() - t0
        for k in ks:
            cell = [r for r, rk in zip(results, batch_ks, strict=True) if rk == k]
            exact = [r.steps for r in cell if r.verified] or [0]
            n_exact = sum(r.verified for r in cell)
            rows.append({"tokens": length, "k": k, "n": len(cell), "exact": n_exact,
                         "started": sum(r.steps > 0 for r in cell),
                         "median_steps_exact": statistics.median(exact), "max_steps_exact": max(exact),
                         "s_per_memory": statistics.fmean(r.seconds for r in cell), "wall_s": wall,
                         "failures": [r.decoded for r in cell if not r.verified][:2]})
            log(f"{length} tokens x {k}: {n_exact}/{len(cell)} exact")
        log(f"{length} tokens: {len(results)} memories in {wall:.0f} s ({wall / len(results):.2f} s each)")
        if after_length is not None:
            after_length(rows)
    return rows


def reading(model: Any, settings: Any, n: int, k: int, seed: int) -> dict[str, Any]:
    from memsvc.memtokens.backend import generate, memory_mark
    from memsvc.memtokens.trainer import train_memory_tokens

    rng = random.Random(f"reading-{seed}")
    items = []
    for i in range(n):
        fact, question, answer = FACTS[i % len(FACTS)]
        keys = {key: FACT_FILL[key](rng) for key in FACT_FILL if "{" + key + "}" in fact + question}
        items.append((fact.format(**keys), question.format(**keys), answer.format(**keys)))
    t0 = time.perf_counter()
    trained = train_memory_tokens(model, [f for f, _, _ in items], dataclasses.replace(settings, k=k))
    log(f"reading: {sum(r.verified for r in trained)}/{n} facts verified in {time.perf_counter() - t0:.0f} s")
    system = "Answer the question in a few words, using the memory if one is given."
    counts = {"a": 0, "b": 0, "c": 0, "b_and_a": 0, "b_not_c": 0, "same_reply_ab": 0, "used": 0}
    examples = []
    for (fact, question, answer), result in zip(items, trained, strict=True):
        if not result.verified:
            continue
        mid = uuid.uuid4()

        def ask(memory: str | None, vectors: dict[uuid.UUID, Any], question: str = question) -> str:
            user = (f"Memory: {memory}\n" if memory is not None else "") + f"Question: {question}"
            msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            return "".join(generate(model, msgs, vectors, max_new_tokens=24)).strip()

        replies = {"a": ask(fact, {}), "b": ask(memory_mark(mid), {mid: result.vectors}), "c": ask(None, {})}
        right = {key: answer.lower() in reply.lower() for key, reply in replies.items()}
        counts["used"] += 1
        for key in "abc":
            counts[key] += right[key]
        counts["b_and_a"] += right["a"] and right["b"]
        counts["b_not_c"] += right["b"] and not right["c"]
        counts["same_reply_ab"] += replies["a"] == replies["b"]
        if len(examples) < 4:
            examples.append({"question": question, "answer": answer, **replies})
    return {"n": n, "k": k, **counts, "examples": examples}


def table(model_id: str, device: str, settings: Any, rows: list[dict[str, Any]]) -> str:
    out = [f"model {model_id} on {device}; lr {settings.lr}, beta2 {settings.beta2}, warmup {settings.warmup}, "
           f"init {settings.init}, noise {settings.noise}, margin {settings.margin}, batch {settings.batch_size}, "
           f"max steps {settings.max_steps}, check every {settings.check_every}", "",
           "| tokens | k | exact | rate | started | median steps (exact) | max steps (exact) | s per memory |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['tokens']} | {r['k']} | {r['exact']}/{r['n']} | {100 * r['exact'] / r['n']:.0f}% | "
                   f"{r.get('started', r['n'])} | {r['median_steps_exact']:.0f} | {r['max_steps_exact']} | "
                   f"{r['s_per_memory']:.2f} |")
    return "\n".join(out)


def reading_table(read: dict[str, Any]) -> str:
    used = max(1, read["used"])
    return "\n".join([
        f"reading test: {read['used']} facts with a verified set (of {read['n']}, k={read['k']}); right answers:", "",
        "| (a) text | (b) memory tokens | (c) nothing | (b) right where (a) is | (b) right, (c) not "
        "| same reply (a)=(b) |", "|---:|---:|---:|---:|---:|---:|",
        f"| {read['a']}/{used} | {read['b']}/{used} | {read['c']}/{used} | {read['b_and_a']}/{max(1, read['a'])} "
        f"| {read['b_not_c']}/{used} | {read['same_reply_ab']}/{used} |"])


def main() -> None:
    from memsvc.memtokens.trainer import TrainSettings

    defaults = TrainSettings()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("MEMTOKENS_MODEL", "smollm2"),
                    help="smollm2, a .gguf file or a model directory (env MEMTOKENS_MODEL)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    ap.add_argument("--lengths", default="16,32,64,128,256")
    ap.add_argument("--ks", default="1,2,4")
    ap.add_argument("--per-cell", type=int, default=16)
    ap.add_argument("--reading", type=int, default=24, help="facts in the reading test (0: skip it)")
    ap.add_argument("--reading-k", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    for field in dataclasses.fields(TrainSettings):
        if field.name not in ("k", "seed"):
            kind = type(getattr(defaults, field.name))
            ap.add_argument("--" + field.name.replace("_", "-"), type=(lambda s: s.lower() in ("1", "true", "yes"))
                            if kind is bool else kind, default=getattr(defaults, field.name))
    args = ap.parse_args()
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)
                                if f.name not in ("k", "seed")}, seed=args.seed)

    from memsvc.memtokens.model import load_local_model

    t0 = time.perf_counter()
    model = load_local_model(args.model, device=args.device)
    device = str(model.device)
    if model.device.type == "cpu":
        import torch

        device += f" ({torch.get_num_threads()} threads)"
    else:
        import torch

        device += f" ({torch.cuda.get_device_name(model.device)})"
    log(f"loaded {model.identity.model_id} on {device} in {time.perf_counter() - t0:.0f} s")
    report: dict[str, Any] = {"rows": [], "settings": dataclasses.asdict(settings), "device": device,
                              "model": model.identity.model_id}

    def save(rows: list[dict[str, Any]]) -> None:
        report["rows"] = rows
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))

    rows = reconstruction(model, settings, [int(x) for x in args.lengths.split(",") if x],
                          [int(x) for x in args.ks.split(",") if x], args.per_cell, args.seed, after_length=save)
    print(table(model.identity.model_id, device, settings, rows), flush=True)
    if args.reading:
        report["reading"] = reading(model, settings, args.reading, args.reading_k, args.seed)
        print("\n" + reading_table(report["reading"]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
