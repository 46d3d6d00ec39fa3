"""mask_kernel: the GPU's dropout masks are Philox4x32-10 (Random123's known answers) keyed by the seed and
counted by the byte, thresholded 16 bits an element and packed as `unpack_bits` reads them; in Triton's
interpreter on the CPU, and on a GPU."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("triton")


def philox4x32_10(counter, key):
    """Random123's Philox4x32-10 on numpy uint64 arrays holding 32-bit values."""
    c = [np.asarray(v, dtype=np.uint64) for v in counter]
    k0, k1 = (np.uint64(v) for v in key)
    low = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & low, p1 & low, ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & low, p0 & low]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & low, (k1 + np.uint64(0xBB67AE85)) & low
    return c


def test_the_reference_gives_random123_s_known_answers():
    for counter, key, want in (((0, 0, 0, 0), (0, 0), "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
                               ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, "408f276d 41c83b0e a20bc7c6 6d5451fd"),
                               ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
                                "d16cfe09 94fdcceb 5001e420 24126ea1")):
        assert " ".join(f"{int(w):08x}" for w in philox4x32_10(counter, key)) == want


def expected_bytes(seed: int, n_bytes: int, drop: int) -> np.ndarray:
    words = philox4x32_10((np.arange(n_bytes, dtype=np.uint64), 0, 0, 0), (seed & 0xFFFFFFFF, seed >> 32))
    fields = np.stack([f for w in words for f in (w & np.uint64(0xFFFF), w >> np.uint64(16))], -1)
    return ((fields >= drop * 16).astype(np.uint8) << np.arange(8, dtype=np.uint8)).sum(-1).astype(np.uint8)


CHECK = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_mask_kernel import expected_bytes
from firefly_train import mask_kernel
from firefly_train.fused_lora import unpack_bits
for seed, shape, drop in ((0x0123456789ABCDEF, [3, 700], 205), (7, [2, 4, 130], 2048), ((1 << 62) - 1, [5], 1)):
    got = mask_kernel.launch(torch.tensor([seed]), shape, drop, bytes_per_program=256)  # partial last program
    assert got.shape == tuple(shape) and got.dtype == torch.uint8
    assert (got.view(-1).numpy() == expected_bytes(seed, got.numel(), drop)).all(), (seed, shape, drop)
keep = unpack_bits(mask_kernel.launch(torch.tensor([42]), [64, 512], 205))
assert abs(1 - keep.float().mean().item() - 205 / 4096) < 0.002  # 262,144 draws: 5 standard deviations
print("equal")
"""


def test_the_kernel_gives_the_reference_bits_in_the_interpreter():
    run = subprocess.run([sys.executable, "-c", CHECK.format(tests=os.path.dirname(__file__))], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert run.returncode == 0 and "equal" in run.stdout, run.stderr[-2000:]


@pytest.mark.gpu
def test_on_cuda_the_op_gives_the_reference_bits():
    from firefly_train import mask_kernel  # noqa: F401  registers the op

    seed, shape, drop = 0x0123456789ABCDEF, [8192, 1728], 205  # a 13B MLP input's mask: 13,824 / 8 bytes a token
    got = torch.ops.firefly.keep_bits(torch.tensor([seed], device="cuda"), shape, drop)
    assert np.array_equal(got.view(-1).cpu().numpy(), expected_bytes(seed, got.numel(), drop))
