"""nf4_kernel: the Triton dequantisation gives bitsandbytes' weights bit for bit (in Triton's interpreter on the
CPU, and on a GPU), including a last program that is partly outside the weight."""
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")
BF = pytest.importorskip("bitsandbytes.functional")

CHECK = """
import torch, bitsandbytes.functional as BF
from firefly_train import nf4_kernel
from firefly_train.nf4_linear import absmax_of
for shape, dtype in (((96, 200), torch.bfloat16), ((64, 130), torch.float32)):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    packed, qs = BF.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    want = BF.dequantize_4bit(packed, qs)
    got = nf4_kernel.launch(packed, absmax_of(qs), qs.code, qs.blocksize, qs.shape.numel(), dtype,
                            bytes_per_program=1024).view(qs.shape)
    assert got.dtype == want.dtype and torch.equal(got, want), (shape, dtype)
print("equal")
"""


def test_the_kernel_gives_bitsandbytes_weights_in_the_interpreter():
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TRITON_INTERPRET": "1"})
    assert run.returncode == 0 and "equal" in run.stdout, run.stderr[-2000:]


@pytest.mark.gpu
def test_on_cuda_the_op_gives_bitsandbytes_weights():
    from firefly_train import nf4_kernel
    from firefly_train.nf4_linear import absmax_of

    w = torch.randn(5120, 1366, device="cuda", dtype=torch.bfloat16)  # 3,496,960 bytes: a partial last program
    packed, qs = BF.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    got = torch.ops.firefly.dequantize_nf4(packed, absmax_of(qs), qs.code, qs.blocksize, qs.shape.numel(),
                                           torch.bfloat16, False)
    assert torch.equal(got.view(qs.shape), BF.dequantize_4bit(packed, qs))
    assert nf4_kernel.BYTES_PER_PROGRAM and (qs.shape.numel() // 2) % nf4_kernel.BYTES_PER_PROGRAM
