"""The training loop: one Accelerator, manual gradient accumulation, atomic resumable checkpoints.

`Trainer(cfg, command, data_fn)` loads everything (data first, so bad input fails before any model is
loaded or any folder is created); `step()` runs one optimizer step (what `bench/` times); `train()` runs
the whole schedule, resuming from the newest complete checkpoint in `output_dir`, and writes the run
folder described in docs/CONTRACTS.md.

Data order is a pure function of (seed, number of micro-batches consumed): epoch e is shuffled with
`torch.randperm(n, generator=seed + e)` and each process takes its slice of every global micro-batch.
A checkpoint stores that count with the optimizer, scheduler and every process's RNG states, so a
killed and resumed run reproduces the uninterrupted one exactly (fp32, deterministic kernels).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import random
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from firefly_core.errors import FireflyError
from firefly_core.io import append_jsonl, atomic_dir, read_json, write_json, write_text
from firefly_core.models import CHECKPOINT_META, load_tokenizer
from firefly_core.provenance import git_commit, library_versions
from firefly_core.schemas import checked, validate
from firefly_train import chunked_loss, lora
from firefly_train.config import save_config

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints whose firefly_checkpoint.json exists (written last), oldest first."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step-*") if (p / CHECKPOINT_META).is_file())


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class BatchOrder:
    """Global micro-batch k -> this process's example indices; shuffled per epoch from the seed."""

    def __init__(self, n: int, micro: int, world: int, rank: int, seed: int):
        self.n, self.micro, self.world, self.rank, self.seed = n, micro, world, rank, seed
        self.per_epoch = n // (micro * world)
        self._epoch, self._perm = -1, None

    def indices(self, k: int) -> list[int]:
        epoch, pos = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        start = pos * self.micro * self.world + self.rank * self.micro
        return self._perm[start:start + self.micro].tolist()


class Trainer:
    def __init__(self, cfg, command: str, data_fn: Callable):
        """data_fn(cfg, tokenizer) -> (dataset, collate_fn, stats with "files" and optional "dropped_no_trainable")."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if not cfg.output_dir:
            raise FireflyError("no output folder: give -o/--output_dir or output_dir in the config")
        if not cfg.data:
            raise FireflyError("no training data: set data: [FILES] in the config or --data FILE")
        self.cfg, self.command = cfg, command
        self.out = Path(cfg.output_dir)
        self.resume_from = self._find_resume()

        probe = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        if cfg.deepspeed and probe.type == "cpu":  # accelerate would drop the plugin and run plain DDP
            raise FireflyError("deepspeed needs CUDA GPUs (on the CPU accelerate ignores it and runs plain DDP): "
                               "drop the deepspeed key; torchrun alone gives data parallelism")
        plugin = self._deepspeed_plugin(cfg) if cfg.deepspeed else None
        self.precision = lora.resolve_precision(cfg.precision, probe)
        self.acc = Accelerator(mixed_precision={"fp32": "no"}.get(self.precision, self.precision),
                               gradient_accumulation_steps=cfg.gradient_accumulation_steps if plugin else 1,
                               deepspeed_plugin=plugin, step_scheduler_with_optimizer=False,
                               cpu=probe.type == "cpu")  # cpu=True lets torchrun run DDP (gloo) on CPUs

        self.src = lora.resolve_sources(cfg)
        self.tokenizer = load_tokenizer(self.resume_from or self.src.tokenizer)
        with self.acc.main_process_first():  # the main process tokenizes and caches, the others read the cache
            self.dataset, self.collate, self.data_stats = data_fn(cfg, self.tokenizer)
        set_seed(cfg.seed)
        self.order = BatchOrder(len(self.dataset), cfg.micro_batch_size, self.acc.num_processes,
                                self.acc.process_index, cfg.seed)
        if self.order.per_epoch == 0:
            raise FireflyError(f"the data has {len(self.dataset)} training examples, fewer than one batch "
                               f"(micro_batch_size {cfg.micro_batch_size} x {self.acc.num_processes} processes)")
        accum = cfg.gradient_accumulation_steps
        self.total_steps = cfg.max_steps if cfg.max_steps > 0 else max(
            1, math.ceil(cfg.num_epochs * self.order.per_epoch / accum))

        adapter = weights = None
        if self.resume_from is not None:
            adapter, weights = (None, self.resume_from) if cfg.mode == "full" else (self.resume_from, None)
        model = lora.build_model(cfg, self.src, self.tokenizer, self.acc.device,
                                 lora.compute_dtype(self.precision), adapter=adapter, weights=weights)
        self.vocab_size = model.get_input_embeddings().weight.shape[0]
        self.loss_chunk = cfg.loss_chunk_tokens if chunked_loss.supported(model) else 0
        if cfg.loss_chunk_tokens > 0 and not self.loss_chunk:
            log.warning("loss_chunk_tokens: model type %r is not one chunked_loss supports; computing the loss "
                        "on the full logits", chunked_loss.causal_model(model).config.model_type)
        self.trainable_params, self.total_params = lora.count_parameters(model)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = lora.make_optimizer(cfg.optimizer, params, cfg.learning_rate, cfg.weight_decay, self.acc.device)
        from transformers import get_scheduler

        warmup = cfg.warmup_steps or math.ceil(cfg.warmup_ratio * self.total_steps)
        try:
            self.scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=warmup,
                                           num_training_steps=self.total_steps)
        except ValueError as e:
            raise FireflyError(f"config key 'lr_scheduler': {e}") from None
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.params = params
        self.offload = None
        if cfg.offloaded_layers:
            from firefly_train.offload import OffloadedActivations

            self.offload = OffloadedActivations(lora.decoder_layers(model), cfg.offloaded_layers)
        self.step_no, self.micro_batches, self.tokens, self.elapsed = 0, 0, 0, 0.0
        if self.resume_from is not None:
            self._load_state(self.resume_from)
            log.info("resuming from %s (step %d)", self.resume_from, self.step_no)

    # -- setup -------------------------------------------------------------------------------------
    @staticmethod
    def _deepspeed_plugin(cfg):
        import importlib.util

        from accelerate.utils import DeepSpeedPlugin

        if importlib.util.find_spec("deepspeed") is None:
            raise FireflyError("deepspeed is not installed: pip install 'firefly[deepspeed]' (or drop the "
                               "deepspeed key)")
        if not Path(cfg.deepspeed).is_file():
            raise FireflyError(f"deepspeed config {cfg.deepspeed} not found")
        plugin = DeepSpeedPlugin(hf_ds_config=cfg.deepspeed, gradient_clipping=cfg.max_grad_norm or None,
                                 gradient_accumulation_steps=cfg.gradient_accumulation_steps)
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size  # no DataLoader to read
        return plugin

    def _find_resume(self) -> Path | None:
        resume = self.cfg.resume
        if resume == "never":
            if complete_checkpoints(self.out):
                raise FireflyError(f"{self.out} already holds checkpoints and resume is 'never': use another "
                                   "output_dir or resume: auto")
            return None
        if resume == "auto":
            ckpts = complete_checkpoints(self.out)
            return ckpts[-1] if ckpts else None
        path = Path(resume)
        if not (path / CHECKPOINT_META).is_file() or not (path / STATE_FILE).is_file():
            raise FireflyError(f"resume: {path} is not a complete resumable checkpoint (needs {CHECKPOINT_META} "
                               f"and {STATE_FILE})")
        return path

    def _load_state(self, ckpt: Path) -> None:
        state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
        if self.acc.distributed_type.name == "DEEPSPEED":
            self.model.load_checkpoint(str(ckpt / "deepspeed"), load_module_strict=False,
                                       load_lr_scheduler_states=False)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_no, self.micro_batches = state["step"], state["micro_batches"]
        self.tokens, self.elapsed = state["tokens"], state["elapsed_s"]
        rngs = state["rng"]
        set_rng_state(rngs[self.acc.process_index] if len(rngs) == self.acc.num_processes else rngs[0])

    # -- one optimizer step --------------------------------------------------------------------------
    def _batch(self) -> tuple[dict, int]:
        """The next micro-batch on the device, and its token count before any padding. The copy to the device is
        asynchronous: a blocking one would first wait for every step queued on the GPU."""
        items = [self.dataset[i] for i in self.order.indices(self.micro_batches)]
        self.micro_batches += 1
        tokens = sum(len(item["input_ids"]) for item in items)
        return {k: v.to(self.acc.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in self.collate(items).items()}, tokens

    def _loss_mode(self):
        if not self.loss_chunk:
            return contextlib.nullcontext()
        return chunked_loss.chunked_head_loss(self.acc.unwrap_model(self.model), self.loss_chunk)

    def step(self) -> dict:
        """One optimizer step over gradient_accumulation_steps micro-batches: {"loss", "tokens", "lr"}. The loss is
        a tensor on the device: reading it waits for the GPU, so `train` reads it only when it logs, and the CPU
        meanwhile queues the next step."""
        accum = self.cfg.gradient_accumulation_steps
        deepspeed = self.acc.distributed_type.name == "DEEPSPEED"
        losses, tokens = [], 0
        for i in range(accum):
            batch, n = self._batch()
            tokens += n
            sync = i == accum - 1 or deepspeed
            with contextlib.nullcontext() if sync else self.acc.no_sync(self.model):
                with self._loss_mode(), self.offload or contextlib.nullcontext():
                    loss = self.model(**batch, use_cache=False).loss
                self.acc.backward(loss if deepspeed else loss / accum)
            losses.append(loss.detach().float())
        if self.cfg.max_grad_norm > 0 and not deepspeed:
            self.acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_no += 1
        loss = self.acc.reduce(torch.stack(losses).mean(), "mean")
        if self.acc.num_processes > 1:
            tokens = int(self.acc.reduce(torch.tensor(tokens, device=self.acc.device), "sum").item())
        self.tokens += tokens
        return {"loss": loss, "tokens": tokens, "lr": lr}

    # -- outputs -------------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return checked("checkpoint_meta", {"format": 1, "base_model": self.src.base_ref, "mode": self.cfg.mode,
                                           "vocab_size": self.vocab_size, "step": self.step_no,
                                           "train_embeddings": self.src.train_embeddings})

    def _write_model(self, folder: Path) -> None:
        unwrapped = self.acc.unwrap_model(self.model)
        if self.cfg.mode == "full":
            unwrapped.save_pretrained(folder, state_dict=self.acc.get_state_dict(self.model))
        else:  # trained embeddings are modules_to_save: saved in full without the untouched base copies
            unwrapped.save_pretrained(folder, save_embedding_layers=False)
        self.tokenizer.save_pretrained(folder)

    def _gathered_rng(self) -> list[dict]:
        if self.acc.num_processes == 1:
            return [rng_state()]
        from accelerate.utils import gather_object

        return gather_object([rng_state()])

    def save_checkpoint(self) -> Path:
        """checkpoints/step-NNNNNN/, built under a temporary name, firefly_checkpoint.json written last."""
        from accelerate.utils import broadcast_object_list

        final = self.out / "checkpoints" / f"step-{self.step_no:06d}"
        rngs = self._gathered_rng()
        deepspeed = self.acc.distributed_type.name == "DEEPSPEED"
        with atomic_dir(final) if self.acc.is_main_process else contextlib.nullcontext() as tmp:
            tmp = broadcast_object_list([str(tmp) if tmp else None])[0] if self.acc.num_processes > 1 else tmp
            if deepspeed:  # every process writes its optimizer shard
                self.model.save_checkpoint(str(Path(tmp) / "deepspeed"))
            if self.acc.is_main_process:
                self._write_model(Path(tmp))
                torch.save({"optimizer": None if deepspeed else self.optimizer.state_dict(),
                            "scheduler": self.scheduler.state_dict(), "step": self.step_no,
                            "micro_batches": self.micro_batches, "tokens": self.tokens,
                            "elapsed_s": self.elapsed, "rng": rngs}, Path(tmp) / STATE_FILE)
            self.acc.wait_for_everyone()
            if self.acc.is_main_process:
                write_json(Path(tmp) / CHECKPOINT_META, self._meta())
        if self.acc.is_main_process and self.cfg.save_total_limit > 0:
            for old in complete_checkpoints(self.out)[:-self.cfg.save_total_limit]:
                shutil.rmtree(old)
        self.acc.wait_for_everyone()
        return final

    def save_final(self) -> None:
        if self.acc.is_main_process:
            with atomic_dir(self.out / "final") as tmp:
                self._write_model(tmp)
                write_json(tmp / CHECKPOINT_META, self._meta())
        self.acc.wait_for_everyone()

    def _run_info(self, started_at: str, finished: bool, final_loss: float | None) -> dict:
        info = {"format": 1, "kind": "train_run", "command": self.command, "base_model": self.src.base_ref,
                "mode": self.cfg.mode, "data": self.data_stats.get("files", []), "versions": library_versions(),
                "git_commit": git_commit(),
                "hardware": {"device": self.acc.device.type,
                             "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                             "n_gpus": self.acc.num_processes if self.acc.device.type == "cuda" else 0,
                             "cpu_count": os.cpu_count(), "platform": platform.platform()},
                "started_at": started_at, "finished_at": _now() if finished else None, "steps": self.step_no,
                "tokens": self.tokens, "train_runtime_s": round(self.elapsed, 3),
                "trainable_params": self.trainable_params, "total_params": self.total_params,
                "final_loss": final_loss}
        if torch.cuda.is_available():
            info["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(self.acc.device) / 2**30, 2)
        if "dropped_no_trainable" in self.data_stats:
            info["dropped_conversations"] = self.data_stats["dropped_no_trainable"]
        return checked("train_run", info)

    def _truncate_log(self) -> None:
        """Drop loss lines logged after the checkpoint being resumed (and a torn last line)."""
        log = self.out / "loss.jsonl"
        if not log.is_file():
            return
        keep = []
        for line in log.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line)["step"] <= self.step_no:
                    keep.append(line + "\n")
        write_text(log, "".join(keep))  # atomic: a kill here leaves the old log, never half of it

    # -- the schedule --------------------------------------------------------------------------------
    def train(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        main = self.acc.is_main_process
        info_path = self.out / "run_info.json"
        started_at = _now()
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in (self.out / "checkpoints").glob(".step-*"):  # temporaries of a killed write
                shutil.rmtree(stale, ignore_errors=True)
            if self.resume_from is not None and info_path.is_file():
                started_at = validate("train_run", read_json(info_path), info_path)["started_at"]
            self._truncate_log()
            save_config(self.cfg, self.out / "config.yaml")
            write_json(info_path, self._run_info(started_at, False, None))
        writer = SummaryWriter(str(self.out / "tb"), purge_step=self.step_no + 1) if main else None
        bar = tqdm(total=self.total_steps, initial=self.step_no, disable=not main, desc=self.command, unit="step")
        last_loss, window_tokens, window_start = None, 0, time.perf_counter()
        clock = time.perf_counter()
        while self.step_no < self.total_steps:
            result = self.step()
            logging_step = self.step_no % self.cfg.logging_steps == 0 or self.step_no == self.total_steps
            if logging_step:
                last_loss = float(result["loss"])  # waits for the GPU: the clock below counts the steps' real time
            now = time.perf_counter()
            self.elapsed += now - clock
            clock = now
            window_tokens += result["tokens"]
            if logging_step:
                rate = window_tokens / max(now - window_start, 1e-9)
                row = {"step": self.step_no, "loss": last_loss, "lr": result["lr"],
                       "tokens": self.tokens, "tokens_per_s": round(rate, 1), "elapsed_s": round(self.elapsed, 3),
                       "epoch": round(self.micro_batches / self.order.per_epoch, 4)}
                if main:
                    append_jsonl(self.out / "loss.jsonl", checked("loss_line", row))
                    for key in ("loss", "lr", "tokens_per_s"):
                        writer.add_scalar(f"train/{key}", row[key], self.step_no)
                bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{rate:,.0f}")
                window_tokens, window_start = 0, now
            bar.update(1)
            if self.step_no % self.cfg.save_steps == 0 or self.step_no == self.total_steps:
                self.save_checkpoint()
                clock = time.perf_counter()  # checkpoint writing is not training time
        bar.close()
        self.save_final()
        info = self._run_info(started_at, True, last_loss)
        if main:
            writer.close()
            write_json(info_path, info)
        return info


def train(cfg, command: str, data_fn: Callable) -> dict | None:
    """Run a whole schedule; the run_info dict on the main process, None on the others."""
    trainer = Trainer(cfg, command, data_fn)
    info = trainer.train()
    return info if trainer.acc.is_main_process else None

