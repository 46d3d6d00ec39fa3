"""firefly_train.adamw_8bit: bitsandbytes' 8-bit AdamW, the same updates bit for bit, without a wait per parameter
(bitsandbytes runs the same blockwise 8-bit update on the CPU, so this is checked here)."""
import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from firefly_train.adamw_8bit import AdamW8bit  # noqa: E402


def _params(seed: int) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)  # one parameter under bitsandbytes' 4,096-element floor keeps a 32-bit state
    return [torch.nn.Parameter(torch.randn(*shape)) for shape in ((64, 512), (512, 64), (3000, 8), (16, 16))]


def _train(cls, steps: int = 4):
    params = _params(0)
    opt = cls(params, lr=1e-2, weight_decay=0.01)
    torch.manual_seed(1)
    for step in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        if step == 1:  # a parameter without a gradient is skipped
            params[3].grad = None
        opt.step()
    return params, opt


def _count_waits(monkeypatch) -> list:
    import bitsandbytes.optim.optimizer as bnb_optimizer

    waits = []
    monkeypatch.setattr(bnb_optimizer, "sync_gpu", lambda t: waits.append(t.shape))
    return waits


def test_same_parameters_and_8bit_state_as_bitsandbytes_without_the_waits(monkeypatch):
    waits = _count_waits(monkeypatch)
    theirs, their_opt = _train(bnb.optim.AdamW8bit)
    assert len(waits) == 4 * 4 - 1  # bitsandbytes waits after every parameter it updates
    waits.clear()
    ours, our_opt = _train(AdamW8bit)
    assert waits == []
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    state, their_state = our_opt.state[ours[0]], their_opt.state[theirs[0]]
    assert state["state1"].dtype == torch.uint8 and state["state1"].numel() == ours[0].numel()  # 1 byte a moment
    for key in ("state1", "state2", "absmax1", "absmax2"):
        assert torch.equal(state[key], their_state[key])
    assert our_opt.state[ours[3]]["state1"].dtype == torch.float32  # small: bitsandbytes' 32-bit state, as theirs
    assert our_opt.state[ours[3]]["step"] == their_opt.state[theirs[3]]["step"] == 3


def test_a_paged_state_is_refused():
    with pytest.raises(ValueError, match="not paged"):
        AdamW8bit(_params(0), lr=1e-3, is_paged=True)


def test_firefly_train_builds_it_and_its_state_resumes(tmp_path):
    """`optimizer: adamw_8bit` gives this class (on the CPU too); its state saved and loaded into a fresh optimizer,
    as a resumed run does, continues with exactly the updates of the uninterrupted one."""
    from firefly_train.lora import make_optimizer

    def build(params):
        return make_optimizer("adamw_8bit", params, 1e-2, 0.01, torch.device("cpu"))

    def grads(params, seed):
        torch.manual_seed(seed)
        for p in params:
            p.grad = torch.randn_like(p)

    straight = _params(0)
    opt = build(straight)
    assert type(opt) is AdamW8bit
    for seed in range(4):
        grads(straight, seed)
        opt.step()

    resumed = _params(0)
    first = build(resumed)
    for seed in range(2):
        grads(resumed, seed)
        first.step()
    torch.save(first.state_dict(), tmp_path / "optimizer.pt")
    second = build(resumed)
    second.load_state_dict(torch.load(tmp_path / "optimizer.pt"))
    for seed in range(2, 4):
        grads(resumed, seed)
        second.step()
    for a, b in zip(resumed, straight):
        assert torch.equal(a, b)
