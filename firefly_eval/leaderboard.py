"""`firefly-eval leaderboard`: the Open LLM Leaderboard v1 tasks through lm-evaluation-harness, offline.

The task YAMLs in `firefly_eval/tasks/` mirror lm-eval's own definitions (prompts, preprocessing, metrics)
but read the user's local copies of the original files. `render_tasks` writes them, with the data folder
filled in and one YAML per MMLU subject found, into a folder that `lm_eval --include_path` can also use
directly; `evaluate` runs `lm_eval.simple_evaluate` on an already loaded model, through `FireflyLM`
(`firefly_eval/lm_eval_model.py`: the same log-likelihoods as lm-eval's `HFLM`, several times faster) or, with
`--engine hf`, through stock `HFLM`.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.io import file_sha256
from firefly_core.provenance import library_versions
from firefly_eval import checkpoints, results
from firefly_eval.benchmarks import LEADERBOARD

TASKS_SRC = Path(__file__).parent / "tasks"
MINISET = Path(__file__).parent / "minisets" / "english"
ENGINES = ("firefly", "hf")


def add_arguments(p):
    p.add_argument("--ckpt", required=True,
                   help="embedded alias (smollm2-135m), HF model folder, or firefly-train checkpoint/run folder")
    p.add_argument("--data-dir", default=str(MINISET),
                   help="folder with mmlu/, arc_challenge/, hellaswag/, truthfulqa/ (the original files; "
                        "default: the project's tiny smoke set)")
    p.add_argument("--tasks", nargs="+", default=list(LEADERBOARD), metavar="TASK",
                   help=f"any of {', '.join(LEADERBOARD)} (default: all four)")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate only the first N questions of each task (of each MMLU subject)")
    p.add_argument("--batch-size", default=None,
                   help="rows per forward pass or 'auto' (default: auto on a GPU, 8 on the CPU); a row is one "
                        "request for --engine hf, one question with all its choices for --engine firefly")
    p.add_argument("--engine", choices=ENGINES, default="firefly",
                   help="firefly: grouped, prefix-cached scoring (default); hf: lm-eval's stock HFLM, for comparison")
    p.add_argument("-o", "--output", default=None, help="result JSON (default: results/leaderboard.json)")


def check_tasks(names: list[str]) -> list[str]:
    for name in names:
        if name not in LEADERBOARD:
            raise FireflyError(f"unknown task '{name}': choose from {', '.join(LEADERBOARD)}")
    return list(dict.fromkeys(names))


def check_data(data_dir: Path, tasks: list[str]) -> list[Path]:
    """Load every task's files once (validating them); return the files read."""
    from firefly_eval.tasks import utils

    if not data_dir.is_dir():
        raise FireflyError(f"data folder {data_dir} not found: expected " +
                           "; ".join(f"<data-dir>/{utils.LAYOUT[t]}" for t in tasks) + " (nothing is downloaded)")
    files: list[Path] = []
    for task in tasks:
        if task == "mmlu":
            for s in utils.mmlu_subjects(data_dir):
                utils.load_mmlu(str(data_dir), s)
                files += [data_dir / "mmlu" / sp / f"{s}_{sp}.csv" for sp in ("dev", "test")]
        elif task == "arc_challenge":
            utils.load_arc(str(data_dir))
            files += [data_dir / "arc_challenge" / f"ARC-Challenge-{sp}.jsonl" for sp in ("Train", "Test")]
        elif task == "hellaswag":
            utils.load_hellaswag(str(data_dir))
            files += [f for f in utils.hellaswag_files(data_dir) if f is not None]
        else:
            utils.load_truthfulqa(str(data_dir))
            files.append(utils.truthfulqa_file(data_dir))
    return files


def data_hash(data_dir: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.relative_to(data_dir)}:{file_sha256(f)}\n".encode())
    return h.hexdigest()


def render_tasks(data_dir: str | Path, dest: str | Path) -> Path:
    """Write the task YAMLs (+ utils.py) for `data_dir` into `dest`; usable with `lm_eval --include_path`."""
    from firefly_eval.tasks import utils

    data_dir, dest = Path(data_dir).resolve(), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy(TASKS_SRC / "utils.py", dest / "utils.py")
    _, train = utils.hellaswag_files(data_dir) if (data_dir / "hellaswag").is_dir() else (None, None)
    fill = {"@DATA_DIR@": str(data_dir), "@HELLASWAG_FEWSHOT_SPLIT@": "train" if train else "validation"}
    for src in sorted(TASKS_SRC.glob("ff_*.yaml")):
        text = src.read_text(encoding="utf-8")
        for k, v in fill.items():
            text = text.replace(k, v)
        (dest / src.name).write_text(text, encoding="utf-8")
    if (data_dir / "mmlu" / "test").is_dir():
        template = (TASKS_SRC / "_mmlu_subject_template.yaml").read_text(encoding="utf-8")
        for s in utils.mmlu_subjects(data_dir):
            text = template.replace("@SUBJECT_TEXT@", s.replace("_", " ")).replace("@SUBJECT@", s)
            (dest / f"ff_mmlu_{s}.yaml").write_text(text.replace("@DATA_DIR@", str(data_dir)), encoding="utf-8")
    return dest


def make_lm(engine: str, model, tokenizer, batch_size):
    """The lm-eval model object for `engine` ('firefly' or 'hf') around an already loaded model."""
    if engine == "hf":
        from lm_eval.models.huggingface import HFLM

        return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    from firefly_eval.lm_eval_model import FireflyLM

    return FireflyLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def evaluate(model, tokenizer, task_dir: Path, tasks: list[str], limit: int | None, batch_size,
             cache: Path | None = None, engine: str = "firefly", log_samples: bool = False,
             samples: dict | None = None) -> dict:
    """Run lm-eval on a loaded model; return simple_evaluate's result dict. With `cache`, scored requests are
    committed to lm-eval's SQLite cache there within two seconds (`firefly_eval/request_cache.py`), and a rerun
    scores only what is missing. `samples` (lm-eval task name, an MMLU subject's `ff_mmlu_<subject>` included
    -> document indices) runs those documents of those tasks instead of `tasks`. The firefly engine also
    compiles lm-eval's prompt templates once each while the contexts are built."""
    import contextlib

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from firefly_eval.lm_eval_model import cached_templates
    from firefly_eval.request_cache import request_cache

    lm = make_lm(engine, model, tokenizer, batch_size)
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
    with cached_templates() if engine == "firefly" else contextlib.nullcontext(), request_cache():
        names = list(samples) if samples else [LEADERBOARD[t].lm_eval_task for t in tasks]
        return simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit, samples=samples,
                               log_samples=log_samples, use_cache=None if cache is None else str(cache))


def task_scores(out: dict, tasks: list[str]) -> dict:
    """simple_evaluate's output -> our per-task block (percentages)."""
    scores = {}
    for t in tasks:
        task = LEADERBOARD[t]
        name, metric = task.lm_eval_task, task.lm_eval_metric
        row = out["results"][name]
        stderr = row.get(f"{metric}_stderr,none")
        if t == "mmlu":
            subtasks = out["group_subtasks"][name]
            n = sum(out["n-samples"][s]["effective"] for s in subtasks)
        else:
            n = out["n-samples"][name]["effective"]
        scores[t] = {"metric": task.metric, "value": 100 * row[f"{metric},none"],
                     "stderr": 100 * stderr if isinstance(stderr, (int, float)) else None, "shots": task.shots, "n": n}
    return scores


def run(args) -> int:
    import torch

    from firefly_eval.tasks import utils

    t0 = time.time()
    tasks = check_tasks(args.tasks)
    if args.limit is not None and args.limit < 1:
        raise FireflyError("--limit must be at least 1")
    data_dir = Path(args.data_dir).expanduser().resolve()
    files = check_data(data_dir, tasks)
    model_block = checkpoints.describe(args.ckpt)
    if data_dir == MINISET.resolve():
        print(f"note: --data-dir not given, using the project's smoke set {data_dir} "
              "(numbers are for checking the pipeline only)", file=sys.stderr)
    if "truthfulqa_mc2" in tasks and utils.truthfulqa_file(data_dir) != data_dir / utils.TRUTHFULQA_V0:
        print(f"note: TruthfulQA: {data_dir / 'truthfulqa' / 'v0'} not found, using the revised question set "
              f"{utils.truthfulqa_file(data_dir)} (not comparable with lm-eval's truthful_qa, which is v0)",
              file=sys.stderr)
    output = Path(args.output) if args.output else results.default_output("leaderboard")
    task_dir = render_tasks(data_dir, output.with_name(output.stem + ".tasks"))
    gpu = torch.cuda.is_available()
    batch_size = args.batch_size or ("auto" if gpu else 8)
    cache = results.resume_dir(output, "lm-eval-cache", {"model": checkpoints.fingerprint(args.ckpt),
                                                          "engine": args.engine, "versions": library_versions()})
    cache = cache / "requests"
    model, tok, _ = checkpoints.load(args.ckpt)
    out = evaluate(model, tok, task_dir, tasks, args.limit, batch_size, cache, args.engine)
    scores = task_scores(out, tasks)
    if "truthfulqa_mc2" in scores:
        scores["truthfulqa_mc2"]["file"] = str(utils.truthfulqa_file(data_dir).relative_to(data_dir))
    result = {
        "format": 1, "kind": "leaderboard", "model": model_block, "tasks": scores,
        "average": sum(s["value"] for s in scores.values()) / len(scores),
        "limit": args.limit, "engine": args.engine, "data_dir": str(data_dir),
        "data_hash": data_hash(data_dir, files),
        "versions": library_versions(), "wall_time_s": round(time.time() - t0, 2),
    }
    results.save(output, result)
    rows = [(f"{t} ({s['shots']}-shot {s['metric']})", s["value"]) for t, s in scores.items()]
    print(results.format_table("Open LLM Leaderboard v1", rows, ("average", result["average"])))
    if "truthfulqa_mc2" in scores:
        print(f"TruthfulQA questions: {data_dir / scores['truthfulqa_mc2']['file']}")
    print(f"wrote {output} (task files: {task_dir}; {result['wall_time_s']:.0f} s)")
    return 0
