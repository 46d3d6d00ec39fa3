"""bitsandbytes' 8-bit AdamW without its wait after every parameter.

`bnb.optim.AdamW8bit.step` calls `torch.cuda.synchronize()` after each parameter's update: about 450 waits a
step for a 7B or 13B LoRA with trained embeddings. Each one drains the GPU's queue, which a compiled QLoRA step
otherwise keeps full (the seventh session's 13B profile shows the CPU waiting for room in it), and bitsandbytes'
optimizers ran slower than torch's fused AdamW in the fourth session (bench/NOTES.md). The waits serve the paged
optimizers, whose state moves between host and device asynchronously. The non-paged update has nothing to wait
for: bitsandbytes launches its kernels on the default stream, where the step's other work runs in order. This
class runs bitsandbytes' own state, kernels and arithmetic and leaves the waits out; off the default stream it
keeps them (bitsandbytes' own step). It stores both moments in 8 bits, 2 bytes a trained parameter instead of 8:
4.6 GiB less at 13B (816.6M trained).
"""
from __future__ import annotations

import bitsandbytes as bnb
import torch


class AdamW8bit(bnb.optim.AdamW8bit):
    """`bnb.optim.AdamW8bit` (not paged) whose `step` does not synchronise the device after each parameter."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_paged:  # the paged state needs bitsandbytes' own waits
            raise ValueError("firefly_train.adamw_8bit.AdamW8bit is not paged; use bnb.optim.PagedAdamW8bit")

    @torch.no_grad()
    def step(self, closure=None):
        if torch.cuda.is_available() and torch.cuda.current_stream() != torch.cuda.default_stream():
            return super().step(closure)  # bitsandbytes' kernels would not be ordered after this stream's work
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.initialized:
            self.check_overrides()
            self.to_gpu()
            self.initialized = True
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if len(self.state[p]) == 0:
                    self.init_state(group, p, gindex, pindex)
                self.update_step(group, p, gindex, pindex)
        return loss
