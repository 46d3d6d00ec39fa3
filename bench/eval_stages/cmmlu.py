"""CMMLU 5-shot PPL: OpenCompass's own `get_ppl` (one full pass per option) against firefly's prefix-cached
scoring, both driven by OpenCompass (`firefly-eval cmmlu --engine opencompass|firefly`) on the same model.

The reference runs on `--reference-subjects` (the full set takes it about 15 minutes at 7B on an H200), once
per `--reference-batch-sizes` (OpenCompass's own answers move with its batch size in bf16: that is the
noise floor to read the agreement against); ours runs on the same subjects, the predictions are compared
question by question (every difference listed with both engines' perplexities and the reference's margin
between the two answers), then ours runs on the whole set (`--full`). Wall times include loading the model; both commands resume from their work folders,
so `--out` on a persistent disk makes the stage resumable across calls.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="CMMLU folder (dev/, test/)")
    p.add_argument("--reference-subjects", nargs="+", default=None,
                   help="subjects both engines score (default: the first 6 in the folder)")
    p.add_argument("--full", action="store_true", help="then score every subject with ours, timed")
    p.add_argument("--reference-batch-sizes", type=int, nargs="+", default=[None],
                   help="run the reference once per batch size (default: once, at its own default)")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="both engines (default: bf16 on a GPU)")
    p.add_argument("--out", type=Path, default=Path("/tmp/firefly-bench-cmmlu"), help="result and work folders")


def _cmmlu(args, engine: str, subjects: list[str] | None, name: str, batch_size: int | None = None) -> dict:
    out = args.out / f"{name}.json"
    cmd = [sys.executable, "-m", "firefly_eval.cli", "cmmlu", "--ckpt", str(args.model_dir), "--data-dir",
           str(args.data_dir), "--engine", engine, "-o", str(out)]
    cmd += ["--subjects", *subjects] if subjects else []
    cmd += ["--batch-size", str(batch_size)] if batch_size else []
    cmd += ["--dtype", args.dtype] if args.dtype else []
    t0 = time.perf_counter()
    with open(args.out / f"{name}.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): see {args.out / f'{name}.log'}")
    result = json.loads(out.read_text())
    print(f"[{name}] {result['n_questions']} questions in {seconds:.1f} s", flush=True)
    work = Path(result["opencompass_summary"]).parents[1] / "predictions" / "firefly"
    return {"seconds": seconds, "questions": result["n_questions"], "average": result["average"],
            "questions_per_s": result["n_questions"] / seconds, "predictions": work}


def compare(ref_dir: Path, ours_dir: Path) -> dict:
    """Question by question: equal predictions, and every difference with both engines' PPLs."""
    same, diffs, max_rel = 0, [], 0.0
    for f in sorted(ref_dir.glob("cmmlu-*.json")):
        ref, ours = json.loads(f.read_text()), json.loads((ours_dir / f.name).read_text())
        for key, item in ref.items():
            o = ours[key]
            ppl_ref = {lab: item[f"label: {lab}"]["PPL"] for lab in "ABCD"}
            ppl_ours = {lab: o[f"label: {lab}"]["PPL"] for lab in "ABCD"}
            max_rel = max(max_rel, *(abs(ppl_ours[k] - v) / abs(v) for k, v in ppl_ref.items()))
            if o["prediction"] == item["prediction"]:
                same += 1
                continue
            diffs.append({"subject": f.stem, "index": key, "reference": item["prediction"], "ours": o["prediction"],
                          "reference_margin": ppl_ref[o["prediction"]] - ppl_ref[item["prediction"]],
                          "ppl_reference": ppl_ref, "ppl_ours": ppl_ours})
    total = same + len(diffs)
    return {"questions": total, "identical": same, "identical_share": same / max(total, 1),
            "max_relative_ppl_difference": max_rel, "differences": diffs}


def print_agreement(name: str, a: dict) -> None:
    """One reference's agreement (`compare`'s dict): the count, then every differing question."""
    print(f"{name}{'' if ' vs ' in name else ' vs firefly'}: predictions identical on {a['identical']} of "
          f"{a['questions']} questions ({100 * a['identical_share']:.2f} %); max relative PPL difference "
          f"{a['max_relative_ppl_difference']:.2e}")
    for d in a["differences"]:
        print(f"  {d['subject']} #{d['index']}: {d['reference']} vs {d['ours']}, "
              f"reference margin {d['reference_margin']:.3g}")


def run(args) -> dict:
    from firefly_eval import cmmlu_data

    args.out.mkdir(parents=True, exist_ok=True)
    subjects = args.reference_subjects or sorted(cmmlu_data.check_data_dir(args.data_dir.resolve()))[:6]
    rows = {}
    if args.full:  # first: the number that matters most survives a time limit
        rows["firefly (full set)"] = _cmmlu(args, "firefly", None, "ours_full")
    for bs in args.reference_batch_sizes:
        rows[f"opencompass (batch {bs or 'default'})"] = _cmmlu(args, "opencompass", subjects, f"reference_{bs}", bs)
    rows["firefly"] = _cmmlu(args, "firefly", subjects, "ours")
    references = [name for name in rows if name.startswith("opencompass")]
    reference = rows[references[0]]
    agreement = {name: compare(rows[name]["predictions"], rows["firefly"]["predictions"]) for name in references}
    if len(references) > 1:
        agreement[f"{references[0]} vs {references[1]}"] = compare(rows[references[0]]["predictions"],
                                                                   rows[references[1]]["predictions"])
    print(f"\n{'engine':<32} {'questions':>9} {'seconds':>8} {'questions/s':>12} {'average':>8} {'vs reference':>13}")
    for name, r in rows.items():
        ratio = r["questions_per_s"] / reference["questions_per_s"]
        print(f"{name:<32} {r['questions']:>9} {r['seconds']:>8.1f} {r['questions_per_s']:>12.2f} "
              f"{r['average']:>8.2f} {ratio:>12.1f}x")
    for name, a in agreement.items():
        print_agreement(name, a)
    for r in rows.values():
        r["predictions"] = str(r["predictions"])
    return {"subjects": subjects, "rows": rows, "agreement": agreement}
