"""Add up the shards of a leaderboard benchmark (`bench/eval_throughput.py leaderboard --docs/--mmlu-subjects
... --json F`), each measured stock against ours in its own run, into one table and one total.

    python bench/leaderboard_shards.py results/arc.json results/hellaswag_0.json ... [--json total.json]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_stages.leaderboard import print_table, summarize  # noqa: E402


def coverage(label: str, unit: dict) -> tuple[str, set]:
    """What a unit measured, as (task, items): an MMLU unit's subjects (its label only counts them), a `--docs`
    unit's document indices, or the whole task (a unit without `--docs` or under `--limit`)."""
    if label.startswith("mmlu ("):
        return "mmlu", {name.split("/")[0] for name in unit["stock"]["metrics"]}
    docs = re.fullmatch(r"(\S+) docs (\d+):(\d+)", label)
    if docs:
        return docs[1], set(range(int(docs[2]), int(docs[3])))
    return label, {"all"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", type=Path, nargs="+")
    ap.add_argument("--json", type=Path, help="also write the totals here")
    args = ap.parse_args()
    units, covered, settings = {}, {}, set()
    for path in args.shards:
        shard = json.loads(path.read_text())
        settings.add((shard["dtype"], shard["batch_size"]))
        for label, unit in shard["units"].items():
            task, items = coverage(label, unit)
            seen = covered.setdefault(task, set())
            if items & seen or (seen and "all" in items | seen):
                raise SystemExit(f"{path}: unit '{label}' measures {task} items an earlier shard measured as well")
            seen |= items
            units[f"{label} [{path.stem}]" if label in units else label] = unit
    if len(settings) > 1:
        raise SystemExit(f"the shards ran with different (dtype, batch size): {sorted(settings)}")
    summary = summarize(units)
    print_table(units, summary)
    if args.json:
        args.json.write_text(json.dumps({"shards": [str(p) for p in args.shards], **summary}, indent=2))


if __name__ == "__main__":
    main()
