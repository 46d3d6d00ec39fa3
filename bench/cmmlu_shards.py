"""Add up CMMLU agreement shards (`bench/eval_throughput.py cmmlu --reference-subjects ... --json F`, each
OpenCompass's own `get_ppl` against ours on its subjects in one run) into the agreement over all of them.

    python bench/cmmlu_shards.py results/cmmlu_a.json results/cmmlu_b.json ... [--data-dir CMMLU] [--json total.json]

Prints, per reference (OpenCompass at a batch size), questions, identical predictions and their share, the
largest relative perplexity difference, and every differing question with the reference's margin; with
`--data-dir`, the subjects no shard has covered yet.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_stages.cmmlu import print_agreement  # noqa: E402


def add_up(shards: list[tuple[str, dict]]) -> dict:
    """[(path, stage JSON)] -> {"subjects": [...], "agreement": {reference: totals}}; a subject in two shards, or
    shards compared against different references, is an error."""
    subjects, totals = {}, None
    for path, shard in shards:
        for s in shard["subjects"]:
            if s in subjects:
                raise SystemExit(f"{path}: subject '{s}' is in {subjects[s]} as well")
            subjects[s] = path
        names = {n for n in shard["agreement"] if " vs " not in n}
        if totals is None:
            totals = {n: {"questions": 0, "identical": 0, "max_relative_ppl_difference": 0.0, "differences": []}
                      for n in names}
        elif names != set(totals):
            raise SystemExit(f"{path}: compared against {sorted(names)}, the first shard against {sorted(totals)}")
        for n in names:
            a, t = shard["agreement"][n], totals[n]
            t["questions"] += a["questions"]
            t["identical"] += a["identical"]
            t["max_relative_ppl_difference"] = max(t["max_relative_ppl_difference"], a["max_relative_ppl_difference"])
            t["differences"] += a["differences"]
    for t in totals.values():
        t["identical_share"] = t["identical"] / max(t["questions"], 1)
    return {"subjects": sorted(subjects), "agreement": totals}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", type=Path, nargs="+")
    ap.add_argument("--data-dir", type=Path, help="CMMLU folder: also list the subjects not yet covered")
    ap.add_argument("--json", type=Path, help="also write the totals here")
    args = ap.parse_args()
    total = add_up([(str(p), json.loads(p.read_text())) for p in args.shards])
    print(f"{len(total['subjects'])} subjects")
    for name, t in total["agreement"].items():
        print_agreement(name, t)
    if args.data_dir:
        from firefly_eval import cmmlu_data

        missing = sorted(set(cmmlu_data.check_data_dir(args.data_dir.resolve())) - set(total["subjects"]))
        total["missing_subjects"] = missing
        print(f"not yet covered ({len(missing)}): {' '.join(missing) or '-'}")
    if args.json:
        args.json.write_text(json.dumps({"shards": [str(p) for p in args.shards], **total}, indent=2))


if __name__ == "__main__":
    main()
