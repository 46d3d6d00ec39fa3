"""Activations of the first decoder layers kept in pinned host memory instead of recomputed.

Under gradient checkpointing a layer's forward runs twice; a layer kept out of checkpointing keeps its activations
on the GPU (about 0.9 GiB at 13B and 8 x 1,024 tokens). `OffloadedActivations` takes a third way for the first n
layers: their forward runs once, and every tensor they save for the backward is copied to pinned host memory on a
side stream while the next layers compute; the GPU copy is freed once the transfer is done. In the backward each
such layer's tensors come back on the side stream while the layers above it compute their backward (`LEAD` layers
ahead, started by a hook on a later layer's output gradient), and the compute stream waits only for what is late.

The first layers are the ones offloaded because their backward comes last: by then the activations of the layers
kept on the GPU are freed, so the copies back have room and the whole backward of the other layers to overlap.
The copies back run one after another on one stream; at 13B a layer's take 17 ms at the 55 GB/s an H200's host
link gave (bench/host_link_speed.py) against about 14 ms of its backward, so a lead of two layers would fall
behind by the difference at every layer; with four (started during the recomputing layers' longer backward) no
tensor of 20 offloaded 13B layers was late (bench/NOTES.md, nineteenth session).
Each tensor keeps its strides (compiled backward code assumes them). Parameters, tensors under `min_bytes` (masks,
the NF4 absmax) and views of a larger storage (offloading them would free nothing) stay where they are. On the CPU
the same bookkeeping copies within host memory (for tests).

Like torchtune's `OffloadActivations`, built on `torch.autograd.graph.saved_tensors_hooks`; unlike it, copies come
back a layer group at a time ahead of their use instead of when autograd asks for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

LEAD = 4  # an offloaded layer's tensors start back this many layers before its backward (see the module docstring)
MIN_BYTES = 1 << 24  # 16 MiB: a 13B layer's activations are 80-226 MB each, its masks 5-14 MB


@dataclass
class _Offloaded:
    host: torch.Tensor
    device: torch.device
    layer: int
    back: torch.Tensor | None = None  # on the device again
    ready: torch.cuda.Event | None = None


class OffloadedActivations:
    """`with offloaded:` around the forward offloads what `layers[:n]` save for the backward; `layers` are the
    model's decoder layers in order (their outputs carry the hooks that bring the tensors back)."""

    def __init__(self, layers: list[torch.nn.Module], n: int, min_bytes: int = MIN_BYTES):
        self.min_bytes = min_bytes
        self.current: int | None = None
        self.saved: dict[int, list[_Offloaded]] = {}
        self.params = {p.untyped_storage().data_ptr() for layer in layers[:n] for p in layer.parameters()}
        self.stream = torch.cuda.Stream() if torch.cuda.is_available() else None
        self.offloaded_bytes = 0  # of the last forward: what went to host memory
        self.late = 0  # tensors that autograd asked for before their layer was brought back
        for i, layer in enumerate(layers):
            if i < n:
                layer.register_forward_pre_hook(partial(self._enter, i))
                layer.register_forward_hook(self._leave)
            if i - LEAD < n:  # this layer's output gradient starts bringing back layer i - LEAD and those above
                layer.register_forward_hook(partial(self._bring_back_from, i - LEAD))
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self):
        self.offloaded_bytes = 0
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.current = None
        return self._hooks.__exit__(*exc)

    def _enter(self, i, module, args):
        self.current = i

    def _leave(self, module, args, output):
        self.current = None

    def _bring_back_from(self, layer, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(hidden) and hidden.requires_grad:
            hidden.register_hook(lambda grad: self._bring_back(layer))

    def _pack(self, t: torch.Tensor):
        size = t.numel() * t.element_size()
        if (self.current is None or size < self.min_bytes or t.storage_offset() != 0
                or t.untyped_storage().nbytes() != size or t.untyped_storage().data_ptr() in self.params):
            return t  # a parameter, a small tensor, or one that does not own its whole storage (a view)
        host = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, pin_memory=t.is_cuda)
        if t.is_cuda:
            self.stream.wait_stream(torch.cuda.current_stream(t.device))  # t is written by work queued so far
            with torch.cuda.stream(self.stream):
                host.copy_(t, non_blocking=True)
            t.record_stream(self.stream)  # its memory is reused only after the copy
        else:
            host.copy_(t)
        self.offloaded_bytes += size
        entry = _Offloaded(host, t.device, self.current)
        self.saved.setdefault(self.current, []).append(entry)
        return entry

    def _unpack(self, entry):
        if not isinstance(entry, _Offloaded):
            return entry
        if entry.back is None:  # not brought back ahead of time (a backward that did not start above it)
            self.late += 1
            self._bring_back(entry.layer)
        if entry.ready is not None:
            torch.cuda.current_stream(entry.device).wait_event(entry.ready)
        return entry.back

    def _bring_back(self, layer: int) -> None:
        """Start copying the tensors of `layer` and of every offloaded layer above it back to the device."""
        for i in sorted((i for i in self.saved if i >= layer), reverse=True):
            entries = self.saved.pop(i)
            for e in entries:
                e.back = torch.empty_strided(e.host.size(), e.host.stride(), dtype=e.host.dtype, device=e.device)
            if entries[0].device.type == "cuda":
                # the new blocks may be memory that queued compute work still uses
                self.stream.wait_stream(torch.cuda.current_stream(entries[0].device))
                with torch.cuda.stream(self.stream):
                    for e in entries:
                        e.back.copy_(e.host, non_blocking=True)
                    ready = self.stream.record_event()
                for e in entries:
                    e.ready = ready
                    e.back.record_stream(self.stream)  # freed unused (an abandoned backward): not reused mid-copy
            else:
                for e in entries:
                    e.back.copy_(e.host)
