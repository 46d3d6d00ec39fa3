"""`firefly-eval generate`: one model answers an evaluation set, resumably.

Output (docs/CONTRACTS.md): a header line, then one line per item `{"id","answer","seed","tokens"}`, each
appended and fsynced. Rerunning the same command skips the items already answered (a torn last line from
a kill is cut away first); a file made for another set or with other settings is refused.

Sampling follows the seed (top_p 0.9, temperature 0.35). Every item has its own seed, derived from the
base seed and the item id, and its own random generator, so an item's answer does not depend on which
other items share its batch (up to the float noise of padding). Engines: transformers batched `generate`
with left padding (float32 on CPU, bf16 on GPU); vLLM on a GPU when it is installed (untested here).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from firefly_train.errors import FireflyError
from firefly_train.io import append_jsonl

log = logging.getLogger(__name__)


def item_seed(base_seed: int, item_id: str) -> int:
    """A 31-bit seed for one item, from the base seed and the item id only."""
    digest = hashlib.sha256(f"{base_seed}:{item_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def add_arguments(parser) -> None:
    parser.add_argument("--ckpt", required=True,
                        help="model: embedded alias, HF folder, firefly-train checkpoint or run folder")
    parser.add_argument("--set", required=True, dest="set_path", help="evaluation set (eval_sets/*.jsonl or the seed's .xlsx)")
    parser.add_argument("-o", "--output", required=True, help="answers .jsonl (resumed when it exists)")
    parser.add_argument("--model-name", help="name shown in tallies (default: the checkpoint's folder name)")
    parser.add_argument("--template", default="auto",
                        help="chat template: 'auto' (the tokenizer's own) or a name from firefly_train.data.templates")
    parser.add_argument("--system", help="system prompt (default: none, or the template's own default)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.35)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=42, help="base seed; each item's seed derives from it and its id")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--limit", type=int, help="answer only the first N items of the set")
    parser.add_argument("--engine", choices=("auto", "transformers", "vllm"), default="auto",
                        help="auto: vLLM on a GPU when installed, else transformers")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")


def default_model_name(ckpt: str) -> str:
    """An alias as is; a folder by its name (a run's `final/` or `step-N/` by the run's name too)."""
    path = Path(ckpt).expanduser()
    if not path.exists():
        return str(ckpt)
    path = path.resolve()
    if path.name == "final":
        return f"{path.parent.name}-final"
    if path.name.startswith("step-") and path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}-{path.name}"
    return path.name


def _header(args, eval_set, model_name: str) -> dict:
    sampling = {"greedy": bool(args.greedy), "temperature": None if args.greedy else args.temperature,
                "top_p": None if args.greedy else args.top_p, "max_new_tokens": args.max_new_tokens,
                "template": args.template, "system": args.system}
    return {"format": 1, "kind": "answers_header", "model": model_name, "ckpt": str(args.ckpt),
            "set": str(eval_set.path), "set_hash": eval_set.hash, "sampling": sampling, "seed": args.seed}


def prepare_output(path: Path, eval_set, header: dict) -> set[str]:
    """Start or resume `path`: returns the ids already answered (a torn last line is truncated away)."""
    from firefly_eval.eval_set import read_answer_lines

    if not path.exists() or b"\n" not in path.read_bytes():  # nothing, or only a torn header
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        append_jsonl(path, header)
        return set()
    old, records, good_end = read_answer_lines(path, eval_set, lenient_tail=True)
    for key in ("model", "sampling", "seed"):
        if old.get(key) != header[key]:
            raise FireflyError(f"{path} was made with {key}={old.get(key)!r}, this run has {header[key]!r}: "
                               "use the same settings to resume, or another -o")
    if good_end < path.stat().st_size:
        log.warning("%s: dropping a torn last line (%d bytes)", path, path.stat().st_size - good_end)
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return {obj["id"] for _, obj in records}


def stop_token_ids(tokenizer, model, template) -> list[int]:
    """EOS ids that end an answer: the model's, the tokenizer's and the template's end-of-turn token."""
    ids = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(tokenizer.eos_token_id)
    if template.eot:
        eot = tokenizer.encode(template.eot, add_special_tokens=False)
        if len(eot) == 1:
            ids.add(eot[0])
    return sorted(i for i in ids if i is not None)


def render_prompt(template, tokenizer, prompt: str, system: str | None) -> str:
    from firefly_train.data.templates import render_conversation

    text, _ = render_conversation(template, tokenizer, system, [(prompt, None)])
    return text


def _per_row_sampler(seeds: list[int], device):
    """A logits processor that samples each row with its own generator and leaves only that token."""
    import torch
    from transformers import LogitsProcessor

    class PerRowSampler(LogitsProcessor):
        def __init__(self):
            self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float(), dim=-1)
            picked = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
            out = torch.full_like(scores, float("-inf"))
            out[torch.arange(len(seeds), device=scores.device), picked] = 0.0
            return out

    return PerRowSampler()


def generate_transformers(model, tokenizer, texts: list[str], seeds: list[int], args, eos_ids: list[int]):
    """[(answer, n_tokens)] for one batch: left padding, per-row sampling, stop at any EOS id."""
    import torch
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    tokenizer.padding_side = "left"
    enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
    processors = LogitsProcessorList()
    if not args.greedy:
        processors.extend([TemperatureLogitsWarper(args.temperature), TopPLogitsWarper(args.top_p),
                           _per_row_sampler(seeds, model.device)])
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=False, max_new_tokens=args.max_new_tokens, logits_processor=processors,
                             eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id, temperature=None,
                             top_p=None, top_k=None)
    results = []
    stops = set(eos_ids)
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        n = next((k for k, t in enumerate(row) if t in stops), len(row))
        text = tokenizer.decode(row[:n], skip_special_tokens=True)
        results.append((text.rstrip("\ufffd").strip(), n))  # a character cut by max_new_tokens is dropped
    return results


def generate_vllm(folder: str, texts: list[str], seeds: list[int], args):  # GPU only; untested in this repo
    from vllm import LLM, SamplingParams

    llm = LLM(model=folder, seed=args.seed)
    params = [SamplingParams(temperature=0.0 if args.greedy else args.temperature, top_p=1.0 if args.greedy else args.top_p,
                             max_tokens=args.max_new_tokens, seed=s) for s in seeds]
    return [(o.outputs[0].text.strip(), len(o.outputs[0].token_ids)) for o in llm.generate(texts, params)]


def _use_vllm(args, device: str, ck) -> bool:
    import importlib.util

    if args.engine == "transformers":
        return False
    available = device.startswith("cuda") and importlib.util.find_spec("vllm") is not None and ck.adapter is None
    if args.engine == "vllm" and not available:
        raise FireflyError("--engine vllm needs a CUDA GPU, the vllm package (pip install 'firefly[vllm]') "
                           "and a full model (merge a LoRA checkpoint first with firefly-train merge)")
    return available


def run(args) -> int:
    from tqdm import tqdm

    from firefly_eval.eval_set import load_set
    from firefly_train.models import default_device, resolve_checkpoint

    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise FireflyError("--batch-size and --max-new-tokens must be at least 1")
    if not args.greedy and not (args.temperature > 0 and 0 < args.top_p <= 1):
        raise FireflyError("sampling needs --temperature > 0 and 0 < --top-p <= 1 (or use --greedy)")
    eval_set = load_set(args.set_path)
    out = Path(args.output)
    header = _header(args, eval_set, args.model_name or default_model_name(args.ckpt))
    done = prepare_output(out, eval_set, header)
    items = eval_set.items[: args.limit] if args.limit else eval_set.items
    pending = [it for it in items if it.id not in done]
    log.info("%s: %d answered, %d to go", out, len(items) - len(pending), len(pending))
    if not pending:
        return 0
    device = args.device or default_device()
    ck = resolve_checkpoint(args.ckpt)
    from firefly_eval.checkpoints import load
    from firefly_train.data.templates import get_template
    from firefly_train.models import load_tokenizer

    started = time.time()
    if _use_vllm(args, device, ck):
        tokenizer = load_tokenizer(ck.tokenizer)
        template = get_template(args.template, tokenizer)
        texts = [render_prompt(template, tokenizer, it.prompt, args.system) for it in pending]
        seeds = [item_seed(args.seed, it.id) for it in pending]
        for it, seed, (answer, n) in zip(pending, seeds, generate_vllm(str(ck.base), texts, seeds, args)):
            append_jsonl(out, {"id": it.id, "answer": answer, "seed": seed, "tokens": n})
        return 0
    model, tokenizer, _ = load(args.ckpt, device=device)
    template = get_template(args.template, tokenizer)
    eos_ids = stop_token_ids(tokenizer, model, template)
    texts = {it.id: render_prompt(template, tokenizer, it.prompt, args.system) for it in pending}
    # Longest prompts first: little padding per batch, and an out-of-memory shows at once.
    lengths = {i: len(tokenizer.encode(t, add_special_tokens=False)) for i, t in texts.items()}
    pending.sort(key=lambda it: -lengths[it.id])
    total_tokens = 0
    with tqdm(total=len(pending), desc=f"generate {header['model']}", unit="item") as bar:
        for start in range(0, len(pending), args.batch_size):
            batch = pending[start:start + args.batch_size]
            seeds = [item_seed(args.seed, it.id) for it in batch]
            results = generate_transformers(model, tokenizer, [texts[it.id] for it in batch], seeds, args, eos_ids)
            for it, seed, (answer, n) in zip(batch, seeds, results):
                append_jsonl(out, {"id": it.id, "answer": answer, "seed": seed, "tokens": n})
                total_tokens += n
            bar.update(len(batch))
    elapsed = time.time() - started
    log.info("%d answers, %d tokens in %.1f s (%.1f tokens/s)", len(pending), total_tokens, elapsed,
             total_tokens / max(elapsed, 1e-9))
    return 0
