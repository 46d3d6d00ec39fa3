"""`firefly-eval cmmlu`: CMMLU 5-shot through OpenCompass, on any `--ckpt`, offline.

The OpenCompass config is built here in Python from OpenCompass's own CMMLU dataset configs
(`cmmlu_ppl` = `cmmlu_ppl_8b9c76` for PPL mode, `cmmlu_gen_c13365` for gen mode; both 5-shot from `dev/`)
with `path` pointing at the user's folder. OpenCompass's partitioner, `LocalRunner` (one inference
subprocess on one GPU, or on the CPU) and `DefaultSummarizer` (per subject, per category and overall,
from CMMLU's category table) then run exactly as `opencompass` would; we parse its summary CSV. Because
OpenCompass exits 0 when a task fails, every task's exit code, output file and log is checked here.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import sys
import threading
import time
from pathlib import Path

from firefly_train.errors import FireflyError

from firefly_eval import cmmlu_data, results

MINISET = Path(__file__).parent / "minisets" / "cmmlu"
MODEL_ABBR = "firefly"
GROUP_NAMES = {"STEM": "cmmlu-stem", "Humanities": "cmmlu-humanities", "Social Science": "cmmlu-social-science",
               "Other": "cmmlu-other", "China specific": "cmmlu-china-specific"}
LOG_ERRORS = ("Traceback (most recent call last)", "CUDA out of memory", "OutOfMemoryError")


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
                   help="prompts per model call (default: 64 on a GPU with --engine firefly, else 16; 4 on the CPU)")
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
    groups = [{"name": GROUP_NAMES[cat], "subsets": [f"cmmlu-{s}" for s in members]}
              for cat, members in cmmlu_data.category_subjects(data_dir, subjects).items()]
    return groups + [{"name": "cmmlu", "subsets": [f"cmmlu-{s}" for s in subjects]}]


def model_config(ckpt: str, mode: str, batch_size: int | None, max_seq_len: int, engine: str = "firefly") -> dict:
    import torch

    from firefly_eval.opencompass_model import FireflyCausalLM

    gpu = torch.cuda.is_available()
    cached = engine == "firefly" and mode == "ppl"
    return dict(type=FireflyCausalLM, abbr=MODEL_ABBR, path=ckpt, max_seq_len=max_seq_len, prefix_cache=cached,
                batch_size=batch_size or ((64 if cached else 16) if gpu else 4), max_out_len=16 if mode == "gen" else 1,
                run_cfg=dict(num_gpus=1 if gpu else 0))


@contextlib.contextmanager
def _relay_logs(folder: Path):
    """Copy what OpenCompass's task subprocesses write to their logs onto our stderr (progress bars)."""
    stop = threading.Event()

    def follow():
        offsets: dict[Path, int] = {}
        while True:
            done = stop.is_set()
            for log in sorted(folder.rglob("*.out")) if folder.is_dir() else []:
                with open(log, "rb") as f:
                    f.seek(offsets.get(log, 0))
                    chunk = f.read()
                    offsets[log] = f.tell()
                if chunk:
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
                    sys.stderr.flush()
            if done:
                return
            stop.wait(1.0)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _run_stage(cfg, stage: str, n_datasets: int) -> None:
    """Partition and launch one OpenCompass stage (infer or eval); raise if any task failed."""
    from opencompass.partitioners import NaivePartitioner
    from opencompass.runners import LocalRunner
    from opencompass.tasks import OpenICLEvalTask, OpenICLInferTask

    work = Path(cfg["work_dir"])
    out_dir = work / ("predictions" if stage == "infer" else "results")
    tasks = NaivePartitioner(out_dir=str(out_dir) + "/", n=n_datasets)(cfg)
    task_type = OpenICLInferTask if stage == "infer" else OpenICLEvalTask
    runner = LocalRunner(task=dict(type=task_type), max_num_workers=1)
    with _relay_logs(work / "logs" / stage):
        status = list(runner.launch(tasks))
    failed = [(name, code) for name, code in status if code != 0]
    logs = sorted((work / "logs" / stage).rglob("*.out"))
    if failed:
        raise FireflyError(f"OpenCompass {stage} task {failed[0][0]} failed (exit {failed[0][1]}); "
                           f"see {logs[0] if logs else work / 'logs'}")
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        hit = next((e for e in LOG_ERRORS if e in text), None)
        if hit:
            raise FireflyError(f"OpenCompass {stage} reported an error ('{hit}'); see {log}")


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
                    work: Path, batch_size: int | None = None, max_seq_len: int = 2048, engine: str = "firefly") -> Path:
    """Run inference, evaluation and the summary; return OpenCompass's summary CSV."""
    from mmengine.config import Config
    from opencompass.summarizers import DefaultSummarizer

    datasets = dataset_configs(data_dir, subjects, mode, limit)
    groups = summary_groups(data_dir, subjects)
    cfg = Config(_dotted(dict(models=[model_config(ckpt, mode, batch_size, max_seq_len, engine)], datasets=datasets,
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
    from firefly_eval import checkpoints

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
        "limit": args.limit, "max_seq_len": args.max_seq_len, "engine": args.engine, "versions": results.versions()})
    done = [s for s in subjects if (work / "predictions" / MODEL_ABBR / f"cmmlu-{s}.json").is_file()]
    if done:
        print(f"resuming {work}: {len(done)} of {len(subjects)} subjects already predicted", file=sys.stderr)
    summary_path = run_opencompass(ckpt, data_dir, subjects, args.mode, args.limit, work.resolve(),
                                   args.batch_size, args.max_seq_len, args.engine)
    scores = read_summary(summary_path)
    result = {
        "format": 1, "kind": "cmmlu", "model": model, "mode": args.mode, "engine": args.engine,
        "shots": cmmlu_data.SHOTS,
        "subjects": {s: scores[f"cmmlu-{s}"] for s in subjects},
        "categories": {cat: scores.get(name) for cat, name in GROUP_NAMES.items()},
        "average": scores["cmmlu"],
        "n_questions": sum(min(n, args.limit) if args.limit else n for n in counts.values()),
        "limit": args.limit, "data_dir": str(data_dir), "data_hash": data_hash,
        "versions": results.versions(), "wall_time_s": round(time.time() - t0, 2),
        "opencompass_summary": str(summary_path.resolve()),
    }
    results.save(output, result)
    rows = list(result["subjects"].items()) + [(f"[{c}]", v) for c, v in result["categories"].items()]
    print(results.format_table(f"CMMLU ({args.mode}, 5-shot)", rows, ("average", result["average"])))
    print(f"wrote {output} ({result['n_questions']} questions, {result['wall_time_s']:.0f} s)")
    return 0
