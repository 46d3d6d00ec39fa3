"""`firefly-eval cmmlu`: CMMLU 5-shot through OpenCompass, on any `--ckpt`, offline.

The OpenCompass config is built here in Python from OpenCompass's own CMMLU dataset configs
(`cmmlu_ppl` = `cmmlu_ppl_8b9c76` for PPL mode, `cmmlu_gen_c13365` for gen mode; both 5-shot from `dev/`)
with `path` pointing at the user's folder. OpenCompass's partitioner, `LocalRunner` and `DefaultSummarizer` (per subject, per category and overall,
from CMMLU's category table) then run as `opencompass --debug` would (tasks in this process); we parse
its summary CSV. Every subject's prediction and result file is checked, since OpenCompass's evaluation
logs a failure and goes on.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import sys
import time
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.provenance import library_versions
from firefly_eval import checkpoints, cmmlu_data, results
from firefly_eval.benchmarks import CMMLU_GROUPS, CMMLU_SHOTS

MINISET = Path(__file__).parent / "minisets" / "cmmlu"
MODEL_ABBR = "firefly"


def add_arguments(p):
    p.add_argument("--ckpt", required=True,
                   help="embedded alias (smollm2-135m), HF model folder, or firefly-train checkpoint/run folder")
    p.add_argument("--data-dir", default=str(MINISET),
                   help=f"CMMLU data folder: {cmmlu_data.LAYOUT} (default: the project's 5-subject smoke set)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test questions per subject")
    p.add_argument("--subjects", nargs="+", default=None, help="only these subjects (default: all in the folder)")
    p.add_argument("--mode", choices=("ppl", "gen"), default="ppl",
                   help="ppl: pick the answer letter with the lowest perplexity (default); gen: generate it")
    p.add_argument("--engine", choices=("firefly", "opencompass"), default="firefly",
                   help="PPL scoring: firefly (default: the shared 5-shot prefix and each question run once, the "
                        "options read off one logits row; firefly_eval/prefix_ppl.py) or opencompass (its own "
                        "get_ppl: one full pass per option). Both use OpenCompass's data, prompts and summary")
    p.add_argument("--batch-size", type=int, default=None,
                   help="prompts per model call (default: 256 on a GPU with --engine firefly, which runs them in "
                        "length-sorted chunks of bounded memory; 16 with --engine opencompass; 4 on the CPU)")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None,
                   help="weights and activations (default: bfloat16 on a GPU, float32 on the CPU)")
    p.add_argument("--max-seq-len", type=int, default=2048, help="prompts are truncated on the left to this")
    p.add_argument("-o", "--output", default=None, help="result JSON (default: results/cmmlu.json)")
    p.add_argument("--work-dir", default=None,
                   help="OpenCompass work folder (default: OUTPUT without .json + '.opencompass/<hash of model files, "
                        "data, settings and library versions>': an interrupted run resumes there)")


def dataset_configs(data_dir: Path, subjects: list[str], mode: str, limit: int | None) -> list[dict]:
    """OpenCompass's own CMMLU dataset configs for these subjects, reading `data_dir`."""
    if mode == "ppl":
        from opencompass.configs.datasets.cmmlu.cmmlu_ppl import cmmlu_datasets
    else:
        from opencompass.configs.datasets.cmmlu.cmmlu_gen_c13365 import cmmlu_datasets
    by_name = {d["name"]: d for d in cmmlu_datasets}
    out = []
    for s in subjects:
        d = copy.deepcopy(by_name[s])
        d["path"] = str(data_dir)
        if limit is not None:
            d["reader_cfg"]["test_range"] = f"[0:{limit}]"
        out.append(d)
    return out


def summary_groups(data_dir: Path, subjects: list[str]) -> list[dict]:
    groups = [{"name": CMMLU_GROUPS[cat], "subsets": [f"cmmlu-{s}" for s in members]}
              for cat, members in cmmlu_data.category_subjects(data_dir, subjects).items()]
    return groups + [{"name": "cmmlu", "subsets": [f"cmmlu-{s}" for s in subjects]}]


def model_config(ckpt: str, mode: str, batch_size: int | None, max_seq_len: int, engine: str = "firefly",
                 dtype: str | None = None) -> dict:
    import torch

    from firefly_eval.opencompass_model import FireflyCausalLM

    gpu = torch.cuda.is_available()
    cached = engine == "firefly" and mode == "ppl"
    return dict(type=FireflyCausalLM, abbr=MODEL_ABBR, path=ckpt, max_seq_len=max_seq_len, prefix_cache=cached,
                dtype=dtype, batch_size=batch_size or ((256 if cached else 16) if gpu else 4),
                max_out_len=16 if mode == "gen" else 1, run_cfg=dict(num_gpus=1 if gpu else 0))


def _run_stage(cfg, stage: str, n_datasets: int) -> None:
    """Partition and run one OpenCompass stage (infer or eval) in this process, as `opencompass --debug`
    does: the model is loaded once and OpenCompass is imported once (a task subprocess spends half a
    minute importing it). A failed task is one line naming the traceback's file."""
    import traceback

    from mmengine.config import Config
    from opencompass.partitioners import NaivePartitioner
    from opencompass.runners import LocalRunner

    work = Path(cfg["work_dir"])
    out_dir = work / ("predictions" if stage == "infer" else "results")
    tasks = NaivePartitioner(out_dir=str(out_dir) + "/", n=n_datasets)(cfg)
    for task in tasks:  # the runner dumps each task's config; yapf-formatting it took half a 2-subject run
        super(Config, task).__setattr__("_format_python_code", False)
    task_type = "OpenICLInferTask" if stage == "infer" else "OpenICLEvalTask"  # by registry name, as debug mode wants
    runner = LocalRunner(task=dict(type=task_type), max_num_workers=1, debug=True)
    try:
        runner.launch(tasks)
    except Exception as e:  # noqa: BLE001 (reported with its traceback in a file)
        log = work / "logs" / stage / "error.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc(), encoding="utf-8")
        first = str(e).splitlines()[0] if str(e) else ""
        raise FireflyError(f"OpenCompass {stage} task failed ({type(e).__name__}: {first}); traceback in {log}") from e


def _check_outputs(work: Path, subjects: list[str]) -> None:
    """Every subject must have a non-empty prediction and a result with an accuracy."""
    import json

    for s in subjects:
        for kind, key in (("predictions", None), ("results", "accuracy")):
            path = work / kind / MODEL_ABBR / f"cmmlu-{s}.json"
            if not path.is_file() or path.stat().st_size == 0:
                raise FireflyError(f"OpenCompass wrote no {kind} for cmmlu-{s} ({path} missing); "
                                   f"see the logs under {work / 'logs'}")
            data = json.loads(path.read_text(encoding="utf-8"))
            if not data or (key and key not in data):
                raise FireflyError(f"OpenCompass {kind} for cmmlu-{s} are empty or lack '{key}': {path}; "
                                   f"error: {data.get('error') if isinstance(data, dict) else None}")


def read_summary(path: Path) -> dict[str, float | None]:
    """OpenCompass's summary CSV -> {dataset or group abbr: score as printed, None for '-'}."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = header.index(MODEL_ABBR)
    return {r[0]: (None if r[col].strip() == "-" else float(r[col])) for r in body}


def _dotted(obj):
    """Classes and functions -> 'module.name' strings, as OpenCompass's own configs hold them, so the config
    can be dumped for the task subprocesses and rebuilt there."""
    if isinstance(obj, dict):
        return {k: _dotted(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_dotted(v) for v in obj]
    if isinstance(obj, type) or callable(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    return obj


def run_opencompass(ckpt: str, data_dir: Path, subjects: list[str], mode: str, limit: int | None,
                    work: Path, batch_size: int | None = None, max_seq_len: int = 2048, engine: str = "firefly",
                    dtype: str | None = None) -> Path:
    """Run inference, evaluation and the summary; return OpenCompass's summary CSV."""
    from mmengine.config import Config
    from opencompass.summarizers import DefaultSummarizer

    datasets = dataset_configs(data_dir, subjects, mode, limit)
    if engine == "firefly" and mode == "ppl":  # OpenCompass's inferencer, its bookkeeping done once per subject
        from firefly_eval.ppl_inferencer import FireflyPPLInferencer

        for d in datasets:
            d["infer_cfg"]["inferencer"]["type"] = FireflyPPLInferencer
    groups = summary_groups(data_dir, subjects)
    cfg = Config(_dotted(dict(models=[model_config(ckpt, mode, batch_size, max_seq_len, engine, dtype)], datasets=datasets,
                              work_dir=str(work), summarizer=dict(summary_groups=groups))),
                 format_python_code=False)
    work.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(work / "config.py"))
    with contextlib.chdir(work):  # LocalRunner writes its task files under ./tmp
        _run_stage(cfg, "infer", len(datasets))
        _run_stage(cfg, "eval", len(datasets))
        _check_outputs(work, subjects)
        abbrs = [f"cmmlu-{s}" for s in subjects] + [g["name"] for g in groups]
        time_str = time.strftime("%Y%m%d_%H%M%S")
        DefaultSummarizer(config=cfg, dataset_abbrs=abbrs, summary_groups=groups).summarize(time_str=time_str)
    summary = work / "summary" / f"summary_{time_str}.csv"
    if not summary.is_file():
        raise FireflyError(f"OpenCompass wrote no summary ({summary}); see {work / 'logs'}")
    return summary


def run(args) -> int:
    t0 = time.time()
    if args.limit is not None and args.limit < 1:
        raise FireflyError("--limit must be at least 1")
    data_dir = Path(args.data_dir).expanduser().resolve()
    counts = cmmlu_data.check_data_dir(data_dir, args.subjects)
    subjects = list(counts)
    model = checkpoints.describe(args.ckpt)
    ckpt = str(Path(args.ckpt).resolve()) if Path(args.ckpt).exists() else args.ckpt
    if data_dir == MINISET.resolve():
        print(f"note: --data-dir not given, using the project's smoke set {data_dir} "
              "(not CMMLU; numbers are for checking the pipeline only)", file=sys.stderr)
    output = Path(args.output) if args.output else results.default_output("cmmlu")
    data_hash = cmmlu_data.data_hash(data_dir, subjects)
    work = Path(args.work_dir) if args.work_dir else results.resume_dir(output, "opencompass", {
        "model": checkpoints.fingerprint(args.ckpt), "data": data_hash, "subjects": subjects, "mode": args.mode,
        "limit": args.limit, "max_seq_len": args.max_seq_len, "engine": args.engine, "dtype": args.dtype, "versions": library_versions()})
    done = [s for s in subjects if (work / "predictions" / MODEL_ABBR / f"cmmlu-{s}.json").is_file()]
    if done:
        print(f"resuming {work}: {len(done)} of {len(subjects)} subjects already predicted", file=sys.stderr)
    summary_path = run_opencompass(ckpt, data_dir, subjects, args.mode, args.limit, work.resolve(),
                                   args.batch_size, args.max_seq_len, args.engine, args.dtype)
    scores = read_summary(summary_path)
    result = {
        "format": 1, "kind": "cmmlu", "model": model, "mode": args.mode, "engine": args.engine,
        "shots": CMMLU_SHOTS,
        "subjects": {s: scores[f"cmmlu-{s}"] for s in subjects},
        "categories": {cat: scores.get(name) for cat, name in CMMLU_GROUPS.items()},
        "average": scores["cmmlu"],
        "n_questions": sum(min(n, args.limit) if args.limit else n for n in counts.values()),
        "limit": args.limit, "data_dir": str(data_dir), "data_hash": data_hash,
        "versions": library_versions(), "wall_time_s": round(time.time() - t0, 2),
        "opencompass_summary": str(summary_path.resolve()),
    }
    results.save(output, result)
    rows = list(result["subjects"].items()) + [(f"[{c}]", v) for c, v in result["categories"].items()]
    print(results.format_table(f"CMMLU ({args.mode}, {CMMLU_SHOTS}-shot)", rows, ("average", result["average"])))
    print(f"wrote {output} ({result['n_questions']} questions, {result['wall_time_s']:.0f} s)")
    return 0
