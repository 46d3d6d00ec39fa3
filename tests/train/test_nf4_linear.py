"""nf4_linear: bitsandbytes' NF4 dequantisation behind an op of ours (the double-quantised absmax undone by torch
ops) gives the same weights bit for bit, the same outputs and input gradients as `Linear4bit`, compiles without a
graph break, and keeps no 16-bit weight for the backward."""
import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")
import bitsandbytes.functional as BF  # noqa: E402

from firefly_train import nf4_linear  # noqa: E402


@pytest.mark.parametrize("shape", [(128, 256), (96, 200)])  # 200: the double quantisation's last block is partial
@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_dequantised_weights_are_bitsandbytes_bit_for_bit(shape, nested, dtype):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    packed, qs = BF.quantize_4bit(w, blocksize=64, compress_statistics=nested, quant_type="nf4")
    want = BF.dequantize_4bit(packed, qs)
    got = nf4_linear.nf4_weight(packed, nf4_linear.absmax_of(qs), qs.blocksize, list(qs.shape), dtype, w)
    assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize("shape", [(96, 256), (576, 576), (192, 576), (1536, 576)])  # SmolLM2's have partial blocks
def test_compiled_dequantisation_is_bitsandbytes_bit_for_bit(shape):
    """Compiled without autograd, the absmax is a buffer that only bitsandbytes' kernel reads: the whole of it must
    be written (sliced, inductor 2.13's CPU code wrote its first 256 values only; SmolLM2 then lost its weights)."""
    import torch._dynamo

    w = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    packed, qs = BF.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    torch._dynamo.reset()
    got = torch.compile(lambda: nf4_linear.nf4_weight(packed, nf4_linear.absmax_of(qs), qs.blocksize, list(qs.shape),
                                                      torch.bfloat16, w))()
    assert torch.equal(got, BF.dequantize_4bit(packed, qs))


def _linear(bias: bool):
    torch.manual_seed(1)
    layer = bnb.nn.Linear4bit(256, 96, bias=bias, compute_dtype=torch.bfloat16, quant_type="nf4",
                              compress_statistics=True)
    layer.weight = bnb.nn.Params4bit(torch.randn(96, 256, dtype=torch.bfloat16), requires_grad=False,
                                     quant_type="nf4", compress_statistics=True)
    if bias:
        layer.bias = torch.nn.Parameter(torch.randn(96, dtype=torch.bfloat16))
    return layer.to("cpu")


@pytest.mark.parametrize("bias", [False, True])
def test_output_and_input_gradient_equal_linear4bit(bias):
    ref, ours = _linear(bias), _linear(bias)
    assert nf4_linear.install(torch.nn.ModuleList([ours])) == 1
    x = torch.randn(3, 5, 256, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(2))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = ref(xa), ours(xb)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    g = torch.randn_like(want)
    want.backward(g)
    got.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=0, atol=0)
    if bias:  # a trained bias: its gradient summed in float32 (bitsandbytes sums in 16 bits, over one dim only)
        torch.testing.assert_close(ours.bias.grad, g.float().sum((0, 1)).to(g.dtype), rtol=0, atol=0)


@pytest.mark.parametrize("compiled", [False, True])
def test_the_backward_keeps_only_the_4bit_weight(compiled):
    """Compiled, the backward's dequantisation must run in the backward: merged with the forward's, or moved into
    the forward, its 16-bit weight would be kept for the backward, 0.38 GiB a 7B layer not recomputed."""
    layer = _linear(False)
    nf4_linear.install(torch.nn.ModuleList([layer]))
    forward = torch.compile(layer) if compiled else layer
    x = torch.randn(4, 256, dtype=torch.bfloat16, requires_grad=True)
    forward(x).sum().backward()  # compiles
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        forward(x).sum().backward()
    assert saved and all(t.dtype in (torch.uint8, torch.float32) for t in saved)  # packed weight, absmax
    packed = 96 * 256 // 2
    assert sum(t.numel() * t.element_size() for t in saved) < packed * 1.5  # the packed weight, absmax: no copy


def test_compiles_without_graph_break():
    import torch._dynamo
    from torch._dynamo.utils import counters

    layer = _linear(False)
    nf4_linear.install(torch.nn.ModuleList([layer]))
    x = torch.randn(8, 256, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(3))
    eager_x, compiled_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = layer(eager_x)
    want.sum().backward()
    torch._dynamo.reset()
    counters.clear()
    got = torch.compile(layer)(compiled_x)
    got.sum().backward()
    assert dict(counters["graph_break"]) == {}
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(compiled_x.grad, eager_x.grad, rtol=0, atol=0)


@pytest.mark.gpu
def test_on_cuda_compiled_dequantisation_and_product_equal_bitsandbytes():
    """On a GPU: bitsandbytes' own dequantisation and product against the compiled op (the absmax undone in a Triton
    kernel), a 7B-sized layer."""
    w = torch.randn(11008, 4096, device="cuda", dtype=torch.bfloat16, generator=torch.Generator("cuda").manual_seed(4))
    packed, qs = BF.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    want = BF.dequantize_4bit(packed, qs)
    dequantize = torch.compile(lambda: nf4_linear.nf4_weight(packed, nf4_linear.absmax_of(qs), qs.blocksize,
                                                             list(qs.shape), torch.bfloat16, w))
    assert torch.equal(dequantize(), want)
    x = torch.randn(2048, 4096, device="cuda", dtype=torch.bfloat16)
    product = torch.compile(lambda x: nf4_linear._NF4Matmul.apply(x, packed, nf4_linear.absmax_of(qs), qs.blocksize,
                                                                  list(qs.shape), None))
    torch.testing.assert_close(product(x), bnb.matmul_4bit(x, packed, quant_state=qs), rtol=0, atol=0)


def _fp8_pair(scaling: str):
    """The same NF4 layer twice: the compute-dtype forward, and the FP8 one."""
    ref, fp8 = _linear(False), _linear(False)
    nf4_linear.install(torch.nn.ModuleList([ref]))
    nf4_linear.install(torch.nn.ModuleList([fp8]), fp8_scaling=scaling)
    assert ref._fp8_scaling == "none" and fp8._fp8_scaling == scaling
    return ref, fp8


@pytest.mark.parametrize("rowwise", [True, False])
def test_fp8_product_is_the_float32_product_of_the_rounded_operands(rowwise):
    """fp8_product's scales go where they belong: its output is the float32 product of the e4m3 operands times
    their scales (rounded once to bf16), and the e4m3 weight spans the format (largest magnitude 448 in each row,
    or in the whole weight)."""
    layer = _linear(False)
    qs = layer.weight.quant_state
    x = torch.randn(2, 7, 256, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(5))
    absmax = nf4_linear.absmax_of(qs)
    got = nf4_linear.fp8_product(x, layer.weight, absmax, qs.blocksize, list(qs.shape), rowwise)
    weight = nf4_linear.nf4_weight(layer.weight, absmax, qs.blocksize, list(qs.shape), torch.float32, x)
    w8, w_scale = nf4_linear.to_fp8(weight, rowwise)
    x8, x_scale = nf4_linear.to_fp8(x.reshape(-1, 256), rowwise)
    peaks = w8.float().abs().amax(dim=1)
    assert torch.equal(peaks, torch.full((96,), 448.0)) if rowwise else peaks.max() == 448.0
    assert w_scale.shape == ((96, 1) if rowwise else ())
    want = ((x8.float() * x_scale) @ (w8.float() * w_scale).t()).to(torch.bfloat16).view(2, 7, 96)
    torch.testing.assert_close(got, want, rtol=2 ** -7, atol=1e-3)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("scaling", ["rowwise", "tensorwise"])
def test_fp8_forward_is_within_its_rounding_and_the_backward_is_the_compute_dtypes(scaling, compiled):
    """The FP8 forward differs from the bf16 one by e4m3's rounding of both operands (a few per cent, never
    zero), compiles to the same values as eager code without a graph break, and its input gradient is the
    bf16 path's bit for bit (the backward is shared)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    ref, fp8 = _fp8_pair(scaling)
    x = torch.randn(4, 16, 256, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(6))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = ref(xa)
    eager = fp8(x)
    torch._dynamo.reset()
    counters.clear()
    got = (torch.compile(fp8) if compiled else fp8)(xb)
    assert dict(counters["graph_break"]) == {}
    torch.testing.assert_close(got, eager, rtol=0, atol=0)
    error = ((got.float() - want.float()).norm() / want.float().norm()).item()
    assert 0.005 < error < 0.06
    g = torch.randn_like(want)
    want.backward(g)
    got.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=0, atol=0)


def test_fp8_only_where_scaled_mm_can_run():
    assert nf4_linear.fp8_supported(256, 96) and not nf4_linear.fp8_supported(200, 96)
    assert not nf4_linear.fp8_supported(256, 100)


def test_fp8_base_products_needs_compiled_qlora_layers():
    from types import SimpleNamespace

    from firefly_core.errors import FireflyError
    from firefly_train.lora import build_model

    for cfg in (SimpleNamespace(fp8_base_products="rowwise", compile_layers=False, mode="qlora"),
                SimpleNamespace(fp8_base_products="tensorwise", compile_layers=True, mode="lora")):
        with pytest.raises(FireflyError, match="fp8_base_products"):
            build_model(cfg, None, None, torch.device("cpu"), torch.bfloat16)


@pytest.mark.gpu
def test_on_cuda_the_compiled_fp8_product_is_within_its_rounding():
    """On an FP8 GPU: the compiled FP8 forward of a 7B-sized layer against the bf16 one."""
    if not nf4_linear.fp8_supported(4096, 11008):
        pytest.skip("no FP8 units on this GPU")
    w = torch.randn(11008, 4096, device="cuda", dtype=torch.bfloat16, generator=torch.Generator("cuda").manual_seed(7))
    packed, qs = BF.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    args = (packed, nf4_linear.absmax_of(qs), qs.blocksize, list(qs.shape), None)
    x = torch.randn(2048, 4096, device="cuda", dtype=torch.bfloat16)
    want = nf4_linear._NF4Matmul.apply(x, *args)
    for rowwise in (True, False):
        got = torch.compile(lambda x: nf4_linear._NF4MatmulFP8.apply(x, *args, rowwise))(x)
        assert 0.005 < ((got.float() - want.float()).norm() / want.float().norm()).item() < 0.06
