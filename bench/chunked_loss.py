"""Loss + backward through the output head: transformers' loss on full logits vs firefly's chunked loss.

The head shape is the 7B seed recipe's (hidden 4,096, vocabulary 55,296, trained lm_head, 8 x 1024 tokens);
each path runs in its own process so that its peak memory is its own: on a GPU
`torch.cuda.max_memory_allocated` above what the inputs take, on the CPU the growth of the peak RSS.

    python bench/chunked_loss.py                      # GPU if there is one, bf16
    python bench/chunked_loss.py --tokens 2048        # a quicker CPU run (fp32)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from firefly_train.chunked_loss import chunked_cross_entropy  # noqa: E402


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_one(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    head = torch.nn.Linear(args.hidden, args.vocab, bias=False, device=device, dtype=dtype)
    hidden = torch.randn(1, args.tokens, args.hidden, device=device, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, args.vocab, (1, args.tokens), device=device)

    def step():
        if args.path == "full":
            logits = head(hidden).float()
            loss = F.cross_entropy(logits[0, :-1], labels[0, 1:])
        else:
            loss = chunked_cross_entropy(hidden, labels, head, args.chunk)
        loss.backward()
        head.weight.grad = hidden.grad = None
        return loss.item()

    base = rss_peak()  # inputs in place; the CPU's high-water mark only grows, so it is read before any step
    loss = step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    for _ in range(args.reps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = rss_peak() - base
    return {"path": args.path, "device": str(device), "loss": loss, "seconds": (time.perf_counter() - start) / args.reps,
            "peak_bytes": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--vocab", type=int, default=55296)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cpu", action="store_true", help="run on the CPU even with a GPU")
    p.add_argument("--path", choices=["full", "chunked"], help=argparse.SUPPRESS)  # one child process
    args = p.parse_args()
    if args.path:
        print(json.dumps(run_one(args)))
        return
    rows = []
    for path in ("full", "chunked"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--path", path], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    full, chunked = rows
    print(f"head {args.hidden} x {args.vocab}, {args.tokens} tokens, chunk {args.chunk}, {full['device']}")
    print(f"{'path':<8} {'loss':>8} {'s/step':>8} {'peak MiB':>9}")
    for r in rows:
        print(f"{r['path']:<8} {r['loss']:8.4f} {r['seconds']:8.3f} {r['peak_bytes'] / 2**20:9.0f}")
    print(f"chunked / full: time x{chunked['seconds'] / full['seconds']:.2f}, "
          f"peak x{chunked['peak_bytes'] / max(full['peak_bytes'], 1):.2f}")


if __name__ == "__main__":
    main()
