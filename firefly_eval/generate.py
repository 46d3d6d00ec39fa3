"""`firefly-eval generate`: one model answers an evaluation set, resumably.

Output (docs/CONTRACTS.md): a header line, then one line per item `{"id","answer","seed","tokens"}`, each
appended and fsynced. Rerunning the same command skips the items already answered (a torn last line from
a kill is cut away first); a file made for another set or with other settings is refused.

Sampling follows the seed (top_p 0.9, temperature 0.35). Every item has its own seed, derived from the
base seed and the item id; its noise at each step is a hash of (seed, step, token) (`firefly_eval.sampling`),
so an item's answer depends neither on which other items share its batch nor on the run. On a CPU (float32)
that holds exactly. On a GPU it holds because the decoder avoids SDPA's fused kernels where they do not repeat
themselves: a decoding step attends with two matrix products (`firefly_eval.step_attention`: cuDNN's masked
step gave other logits when the same step ran again on an H200, bench/NOTES.md tenth session), and a prompt's
prefill with SDPA's memory-efficient kernel (`PREFILL_ATTENTION`), whose forward PyTorch documents as
deterministic. Engines: transformers with our own batched decoding loop (`StaticDecoder`: left padding, static
KV cache, the decoding step compiled with CUDA graphs on a GPU; float32 on CPU, bf16 on GPU); vLLM on a GPU when
it is installed (checked against a stand-in module only: it cannot be installed next to our torch).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path

from firefly_core.errors import FireflyError
from firefly_core.io import append_jsonl
from firefly_core.models import default_device, kv_position_bytes, load_tokenizer, resolve_checkpoint
from firefly_core.schemas import checked
from firefly_core.templates import get_template, render_conversation
from firefly_eval import checkpoints, step_attention
from firefly_eval.answers import read_answers
from firefly_eval.eval_set import load_set
from firefly_eval.sampling import ItemSampler

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
                        help="chat template: 'auto' (the tokenizer's own) or a name from firefly_core.templates")
    parser.add_argument("--system", help="system prompt (default: none, or the template's own default)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", default="auto",
                        help="prompts decoded together: 'auto' (all that fit on a GPU, 8 on a CPU) or a number")
    parser.add_argument("--temperature", type=float, default=0.35)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=42, help="base seed; each item's seed derives from it and its id")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--limit", type=int, help="answer only the first N items of the set")
    parser.add_argument("--engine", choices=("auto", "transformers", "vllm"), default="auto",
                        help="auto: vLLM on a GPU when installed, else transformers")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--no-compile", action="store_true",
                        help="decode eagerly on a GPU too (default there: compiled decoding step with CUDA graphs)")


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
    if not path.exists() or b"\n" not in path.read_bytes():  # nothing, or only a torn header
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        append_jsonl(path, checked("answers_header", header))
        return set()
    answered = read_answers(path, eval_set, lenient_tail=True)
    old, good_end = answered.header, answered.good_end
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
    return set(answered.by_id)


def stop_token_ids(tokenizer, configured_eos, template) -> list[int]:
    """EOS ids that end an answer: the model's (`configured_eos`: an id, a list or None), the tokenizer's and
    the template's end-of-turn token."""
    ids = set(configured_eos if isinstance(configured_eos, (list, tuple)) else [configured_eos])
    ids.add(tokenizer.eos_token_id)
    if template.eot:
        eot = tokenizer.encode(template.eot, add_special_tokens=False)
        if len(eot) == 1:
            ids.add(eot[0])
    return sorted(i for i in ids if i is not None)


def render_prompt(template, tokenizer, prompt: str, system: str | None) -> str:
    text, _ = render_conversation(template, tokenizer, system, [(prompt, None)])
    return text


def parse_batch_size(value: str) -> int | None:
    """`--batch-size`: a positive number, or 'auto' (None): as many as fit on a GPU, 8 on a CPU."""
    if value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise FireflyError(f"--batch-size must be 'auto' or a number of at least 1, not {value!r}")
    return size


def auto_batch_size(model, n_items: int, max_len: int) -> int:
    """All items in one batch when their KV cache (and the step's temporaries) fit in 80% of the free GPU memory;
    otherwise as many as fit. 8 on a CPU."""
    import torch

    if model.device.type != "cuda":
        return min(n_items, 8)
    cfg = model.config
    width = torch.finfo(model.dtype).bits // 8
    kv_cache = cfg.num_hidden_layers * kv_position_bytes(model) * max_len
    prefill = max_len * (cfg.intermediate_size * 3 + cfg.hidden_size * 8) * width  # activations of one layer
    sampler = model.get_output_embeddings().weight.shape[0] * 48  # float32/float64/int64 [rows, vocab] temporaries
    free, _ = torch.cuda.mem_get_info(model.device)
    return max(1, min(n_items, int(free * 0.8) // (kv_cache + prefill + sampler)))


def plan_batches(n_items: int, batch_size: int) -> list[range]:
    """Index ranges of near-equal batches of at most `batch_size` (every batch is then filled up to the size of
    the first, so that one compiled decoding step serves them all)."""
    n_batches = -(-n_items // batch_size)
    size = -(-n_items // n_batches)
    return [range(start, min(start + size, n_items)) for start in range(0, n_items, size)]


PREFILL_ATTENTION = ("EFFICIENT_ATTENTION", "MATH")  # SDPA backends a CUDA prefill may use: deterministic ones


class StaticDecoder:
    """Decodes left-padded batches of `rows` prompts with one static KV cache of `max_len` positions.

    The prefill runs eagerly; the one-token decoding step is compiled on CUDA (`torch.compile`, mode
    'reduce-overhead': CUDA graphs over a fixed batch and cache shape). If compiling or running the compiled
    step fails, the batch is decoded again eagerly and `path` says so (a warning is logged). While decoding, the
    model attends through `STEP_ATTENTION` when `matmul_steps` (SDPA for the prefill, matrix products for a step;
    False: the model's own attention throughout, as for a model that cannot be switched, and the benchmarks'
    comparison), SDPA restricted to the backends in `attention_backends` (on CUDA `PREFILL_ATTENTION`; None:
    SDPA's own choice).
    """

    def __init__(self, model, rows: int, max_len: int, compile_step: bool):
        import torch
        from transformers import StaticCache

        self.model, self.rows, self.max_len = model, rows, max_len
        self.attention_backends = PREFILL_ATTENTION if model.device.type == "cuda" else None
        self.matmul_steps = step_attention.switchable(model)
        if not self.matmul_steps:
            log.warning("%s cannot be switched to matrix-product decoding steps; it decodes with its own attention",
                        type(model).__name__)
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.compiled = compile_step
        self.path = "static cache, compiled step (CUDA graphs)" if compile_step else "static cache, eager"
        # fullgraph=False: a graph break that another torch version might bring costs speed, not the run (the
        # tests check that the step is one graph with the pinned versions)
        self._step = (torch.compile(self._forward, mode="reduce-overhead", fullgraph=False, dynamic=False)
                      if compile_step else self._forward)
        self._skips_before = cudagraph_skips()

    def _forward(self, input_ids, position_ids, attention_mask):
        out = self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                         cache=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    def cache_mask(self, attention_mask):
        """The mask every step decodes with: the prompt's, then ones up to the cache's length."""
        import torch

        mask = torch.ones(len(attention_mask), self.max_len, dtype=attention_mask.dtype, device=attention_mask.device)
        mask[:, : attention_mask.shape[1]] = attention_mask
        return mask

    @contextlib.contextmanager
    def attention(self):
        """The context every forward of this decoder runs in: the model on `STEP_ATTENTION` if `matmul_steps`,
        SDPA restricted to `attention_backends`."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        before = self.model.config._attn_implementation
        if self.matmul_steps:
            self.model.set_attn_implementation(step_attention.STEP_ATTENTION)
        try:
            with (contextlib.nullcontext() if self.attention_backends is None else
                  sdpa_kernel([getattr(SDPBackend, name) for name in self.attention_backends])):
                yield
        finally:
            if self.matmul_steps:
                self.model.set_attn_implementation(before)

    def decode(self, input_ids, attention_mask, max_new_tokens: int, pick, stop_ids: list[int]):
        """[rows, <= max_new_tokens] new token ids; `pick(logits, step)` chooses each step's tokens."""
        with self.attention():
            try:
                return self._decode(input_ids, attention_mask, max_new_tokens, pick, stop_ids)
            except Exception as e:  # noqa: BLE001 - any failure of the compiled step falls back to eager decoding
                if not self.compiled:
                    raise
                log.warning("compiled decoding failed (%s: %s); decoding eagerly", type(e).__name__, str(e)[:500])
                self.compiled, self._step = False, self._forward
                self.path = f"static cache, eager (compiled step failed: {type(e).__name__})"
                return self._decode(input_ids, attention_mask, max_new_tokens, pick, stop_ids)

    def _decode(self, input_ids, attention_mask, max_new_tokens, pick, stop_ids):
        import torch

        rows, prompt_len = input_ids.shape
        if rows != self.rows or prompt_len + max_new_tokens > self.max_len:
            raise ValueError(f"batch {rows}x{prompt_len} (+{max_new_tokens}) does not fit {self.rows}x{self.max_len}")
        mask = self.cache_mask(attention_mask)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        stops = torch.tensor(stop_ids, dtype=torch.long, device=input_ids.device)
        with torch.no_grad():  # not inference_mode: the cache's tensors stay usable by the compiled step
            self.cache.reset()
            token = pick(self._forward(input_ids, positions, mask), 0)
            tokens, finished = [token], torch.isin(token, stops)
            last_position = positions[:, -1:]
            for step in range(1, max_new_tokens):
                if step % 32 == 0 and bool(finished.all()):
                    break
                if self.compiled:
                    torch.compiler.cudagraph_mark_step_begin()
                token = pick(self._step(token[:, None], last_position + step, mask), step)
                tokens.append(token)
                finished |= torch.isin(token, stops)
        if self.compiled and cudagraph_skips() > self._skips_before:
            self.path = "static cache, compiled step (CUDA graphs skipped: see the inductor log)"
        return torch.stack(tokens, dim=1)


def cudagraph_skips() -> int:
    """How many times (in this process) inductor ran a compiled graph without CUDA graphs (it logs why)."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["cudagraph_skips"]


def greedy_pick(logits, step: int):
    return logits.argmax(dim=-1)


def cut_at_stop(row: list[int], stop_ids: list[int]) -> list[int]:
    """The new tokens before the first stop id."""
    stops = set(stop_ids)
    return row[:next((k for k, t in enumerate(row) if t in stops), len(row))]


def clean_answer(text: str) -> str:
    return text.rstrip("\ufffd").strip()  # a character cut by the token limit is dropped


def answer_text(tokenizer, tokens: list[int]) -> str:
    return clean_answer(tokenizer.decode(tokens, skip_special_tokens=True))


class BatchedGenerator:
    """Answers prompts in batches, longest prompts first, through one `StaticDecoder`.

    Batches of `batch_size` (None: `auto_batch_size`) are left-padded and filled up to equal size with copies
    of their last prompt (the answers of those copies are dropped). `compile_step` (None: on CUDA) compiles
    the decoding step; `decoder.path` says which decoding ran."""

    def __init__(self, model, tokenizer, texts: list[str], max_new_tokens: int, stop_ids: list[int],
                 batch_size: int | None = None, compile_step: bool | None = None):
        self.model, self.tokenizer, self.max_new_tokens, self.stop_ids = model, tokenizer, max_new_tokens, stop_ids
        tokenizer.padding_side = "left"
        self.ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
        self.order = sorted(range(len(texts)), key=lambda i: -len(self.ids[i]))  # an out-of-memory shows at once
        max_len = -(-(len(self.ids[self.order[0]]) + max_new_tokens) // 16) * 16  # aligned for attention kernels
        self.batches = plan_batches(len(texts), batch_size or auto_batch_size(model, len(texts), max_len))
        if compile_step is None:
            compile_step = model.device.type == "cuda"
        self.decoder = StaticDecoder(model, len(self.batches[0]), max_len, compile_step)

    def batch_inputs(self, batch: range) -> tuple[list[int], dict]:
        """(members: indices into texts, fillers included; the left-padded encoding of their prompts)."""
        members = [self.order[k] for k in batch]
        members += [members[-1]] * (self.decoder.rows - len(members))
        enc = self.tokenizer.pad({"input_ids": [self.ids[i] for i in members]}, return_tensors="pt")
        return members, enc.to(self.model.device)

    def warm_up(self) -> None:
        """A few steps of the first batch: compiles the decoding step and captures its CUDA graph on a GPU."""
        _, enc = self.batch_inputs(self.batches[0])
        self.decoder.decode(enc["input_ids"], enc["attention_mask"], min(4, self.max_new_tokens), greedy_pick,
                            self.stop_ids)

    def token_rows(self, seeds: list[int] | None, temperature: float = 0.35, top_p: float = 0.9):
        """Yields (index into texts, new tokens before the stop), batch by batch; greedy when `seeds` is None,
        else each prompt sampled with its seed (`firefly_eval.sampling.ItemSampler`)."""
        vocab = self.model.get_output_embeddings().weight.shape[0]
        for batch in self.batches:
            members, enc = self.batch_inputs(batch)
            pick = greedy_pick if seeds is None else ItemSampler(
                [seeds[i] for i in members], vocab, temperature, top_p, self.model.device)
            out = self.decoder.decode(enc["input_ids"], enc["attention_mask"], self.max_new_tokens, pick,
                                      self.stop_ids)
            for i, row in zip(members[:len(batch)], out.tolist()):
                yield i, cut_at_stop(row, self.stop_ids)

    def answers(self, seeds: list[int] | None, temperature: float = 0.35, top_p: float = 0.9):
        """Yields (index into texts, answer, tokens), as `token_rows`."""
        for i, tokens in self.token_rows(seeds, temperature, top_p):
            yield i, answer_text(self.tokenizer, tokens), len(tokens)

    def describe(self) -> str:
        return f"{len(self.batches)} batch(es) of {self.decoder.rows}, {self.decoder.path}"


def generate_vllm(folder: str, tokenizer_folder: str, texts: list[str], seeds: list[int], args, stop_ids: list[int]):
    """[(answer, tokens)] from vLLM with one seeded request per item (GPU only; vLLM cannot be installed next to
    this project's torch, so this adapter is covered by a contract test against a stand-in module only)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=folder, tokenizer=tokenizer_folder, seed=args.seed, dtype="bfloat16")
    params = [SamplingParams(temperature=0.0 if args.greedy else args.temperature,
                             top_p=1.0 if args.greedy else args.top_p, max_tokens=args.max_new_tokens, seed=s,
                             stop_token_ids=stop_ids, skip_special_tokens=True) for s in seeds]
    return [(clean_answer(o.outputs[0].text), len(cut_at_stop(list(o.outputs[0].token_ids), stop_ids)))
            for o in llm.generate(texts, params)]


def _vllm_answers(args, ck, prompts: list[str], seeds: list[int]):
    """(index, answer, tokens) for each prompt through `generate_vllm`, with the transformers engine's template and
    stop ids."""
    from transformers import GenerationConfig

    tokenizer = load_tokenizer(ck.tokenizer)
    template = get_template(args.template, tokenizer)
    try:
        configured_eos = GenerationConfig.from_pretrained(str(ck.base)).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's EOS and the template's end of turn
        configured_eos = None
    stop_ids = stop_token_ids(tokenizer, configured_eos, template)
    texts = [render_prompt(template, tokenizer, p, args.system) for p in prompts]
    results = generate_vllm(str(ck.base), str(ck.tokenizer), texts, seeds, args, stop_ids)
    return ((i, answer, n) for i, (answer, n) in enumerate(results))


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

    batch_size = parse_batch_size(args.batch_size)
    if args.max_new_tokens < 1:
        raise FireflyError("--max-new-tokens must be at least 1")
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

    started = time.time()
    seeds = [item_seed(args.seed, it.id) for it in pending]
    generator = None
    if _use_vllm(args, device, ck):
        answers = _vllm_answers(args, ck, [it.prompt for it in pending], seeds)
    else:
        model, tokenizer, _ = checkpoints.load(args.ckpt, device=device)
        template = get_template(args.template, tokenizer)
        stop_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id, template)
        texts = [render_prompt(template, tokenizer, it.prompt, args.system) for it in pending]
        generator = BatchedGenerator(model, tokenizer, texts, args.max_new_tokens, stop_ids, batch_size,
                                     compile_step=False if args.no_compile else None)
        answers = generator.answers(None if args.greedy else seeds, args.temperature, args.top_p)
    total_tokens = 0
    with tqdm(total=len(pending), desc=f"generate {header['model']}", unit="item") as bar:
        for i, answer, n in answers:
            append_jsonl(out, checked("answer", {"id": pending[i].id, "answer": answer, "seed": seeds[i], "tokens": n}))
            total_tokens += n
            bar.update(1)
    elapsed = time.time() - started
    log.info("%d answers, %d tokens in %.1f s (%.1f tokens/s; %s)", len(pending), total_tokens, elapsed,
             total_tokens / max(elapsed, 1e-9), "vllm" if generator is None else generator.describe())
    return 0
