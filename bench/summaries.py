"""How often memories get a summary, how long it is, and whether it is made of the text's own words.

    python bench/summaries.py                          # this working tree
    python bench/summaries.py --rev 62e02bb            # ... against the summarizer of an older commit

Reads LoCoMo dev in place (../shared/bench/locomo/locomo_dev.json: every turn stored as bench/locomo.py
stores it, "[date] Speaker: text" plus the image caption) and the bad cases of issue 14. For each
version: the share of turns with a stored summary, the mean token share (cl100k) of the summary in its
text where there is one and over all turns (what a context pays at summary fidelity: the text where
there is none), and the share of summaries with a word that is not a word of the text (a fragment such
as "-known", or a rewrite). An older commit's summarizer runs from `git archive` of that commit in a
temporary directory (its own `memsvc` package, in a subprocess), so nothing here depends on its API
beyond `memsvc.llm.builtin.builtin_summary`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "bench" / "locomo" / "locomo_dev.json"
CASES = [
    "Bob told the assistant again: Bob hates cilantro.",
    "Today Bob said: Bob is planning a trip to Japan.",
    "Alice told me she works as a nurse at St. Mary's hospital. She loves the night shifts.",
    "Bob's birthday is on 12 March and he wants a lemon cake.",
    "Nice is where the user was born.",
    "Well-known issue: the build fails on Windows when a path is longer than 260 characters.",
    "Frau Dr. Schröder zieht am 3. Mai nach Köln. Sie arbeitet dort bei der Telekom.",
    "Иван Петрович переехал в Санкт-Петербург в 2021 г. и работает врачом. Спасибо!",
    "[8 May 2023] Melanie: Hey Caroline! Good to see you! I'm swamped with the kids & work. What's up with you? "
    "Anything new?",
]
_RUN = """
import json, sys
from memsvc.llm.builtin import builtin_summary
texts = json.load(open(sys.argv[1]))
json.dump([builtin_summary(t) for t in texts], open(sys.argv[2], "w"))
"""


def locomo_turns(path: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from bench.locomo import turns_of

    return [t["content"] for sample in json.loads(path.read_text()) for t in turns_of(sample)]


def summaries(texts: list[str], rev: str | None) -> list[str | None]:
    """builtin_summary of each text, by this tree (rev None) or by the commit `rev`, in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="memsvc-summaries-") as tmp:
        src = ROOT
        if rev:
            archive = subprocess.run(["git", "archive", rev, "memsvc"], cwd=ROOT, capture_output=True, check=True)
            (Path(tmp) / "tree.tar").write_bytes(archive.stdout)
            with tarfile.open(Path(tmp) / "tree.tar") as tar:
                tar.extractall(Path(tmp) / "tree", filter="data")
            src = Path(tmp) / "tree"
        inp, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        inp.write_text(json.dumps(texts))
        env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-c", _RUN, str(inp), str(out)], cwd=tmp, env=env, check=True)
        return json.loads(out.read_text())


def stats(texts: list[str], sums: list[str | None]) -> dict[str, float]:
    from memsvc.tokens import get_counter

    count = get_counter("cl100k_base").count
    pairs = [(t, s) for t, s in zip(texts, sums, strict=True) if s and s != t]
    shares = [count(s) / max(count(t), 1) for t, s in pairs]
    foreign = [s for t, s in pairs if any(w not in set(t.split()) for w in s.split())]
    paid = [count(s) if s else count(t) for t, s in zip(texts, sums, strict=True)]
    return {
        "turns": len(texts),
        "with_summary_pct": 100.0 * len(pairs) / max(len(texts), 1),
        "token_share_where_summarised_pct": 100.0 * statistics.fmean(shares) if shares else 0.0,
        "token_share_all_turns_pct": 100.0 * sum(paid) / max(sum(count(t) for t in texts), 1),
        "summaries_with_foreign_words_pct": 100.0 * len(foreign) / max(len(pairs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", action="append", default=[], help="also measure the summarizer of this commit")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cases", action="store_true", help="print what each version stores for the bad cases")
    args = parser.parse_args()
    texts = locomo_turns(args.data)
    versions = [*args.rev, None]
    rows = {rev or "this tree": stats(texts, summaries(texts, rev)) for rev in versions}
    keys = list(next(iter(rows.values())))
    print(f"LoCoMo dev ({args.data.name}), {len(texts)} turns")
    print("| version | " + " | ".join(keys[1:]) + " |")
    print("|---|" + "---|" * (len(keys) - 1))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.1f}" for k in keys[1:]) + " |")
    if args.cases:
        stored = {rev or "this tree": summaries(CASES, rev) for rev in versions}
        for i, text in enumerate(CASES):
            print(f"\n{text!r}")
            for name, sums in stored.items():
                print(f"  {name}: {sums[i]!r}")


if __name__ == "__main__":
    main()
