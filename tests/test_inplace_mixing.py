"""In-place mixing of owned batches: every policy that writes into its inputs gives the same bits as its
out-of-place path, reads each partner before overwriting it, and leaves a direct caller's tensor alone."""

from __future__ import annotations

import pytest
import torch
from test_mixups_properties import HOST_CASES, STATIC, K, batch, make

from mixbench.mixups import _ops
from mixbench.mixups.base import MixContext
from mixbench.registry import MIXUPS

# The host cases, each partner scheme (flip pairs rows, roll is one long cycle), and prob < 1 (apply_with_prob).
CASES = HOST_CASES + [
    (name, {"partner": partner}) for name in ("mixup", "cutmix", "fmix", "gridmix", "smoothmix", "maskmix")
    for partner in ("flip", "roll")] + [
    ("cutmix", {"per_sample": True, "partner": "flip"}), ("timm_mix", {"mode": "elem", "partner": "perm"}),
    ("resizemix", {"per_sample": True, "partner": "roll"}), ("cutmix", {"prob": 0.5}), ("fmix", {"prob": 0.5})]


def writers() -> list[str]:
    return sorted(name for name, cls in MIXUPS.module_dict.items() if getattr(cls, "writes_inputs", False))


@pytest.fixture(params=["mask", "host"])
def path(request, monkeypatch):
    """The vectorised path (small rows) and the per-row host path (forced for 16 px rows)."""
    monkeypatch.setattr(_ops, "HOST_ROW_BYTES", 0 if request.param == "host" else 1 << 62)
    return request.param


def test_every_static_mask_policy_writes_owned_inputs():
    assert set(writers()) == set(STATIC) - {"none", "manifoldmix", "switch"}


def same(a, b) -> None:
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert all(torch.equal(p, q) for p, q in zip(a.weights, b.weights))
    assert all(torch.equal(p, q) for p, q in zip(a.indices, b.indices))
    assert (a.mask is None and b.mask is None) or torch.equal(a.mask, b.mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda c: f"{CASES[c][0]}{CASES[c][1]}")
def test_owned_batch_gives_the_same_bits(case, dtype, path):
    """``policy(x, ctx(owned=True))`` on a copy equals ``policy(x, ctx())``; the unowned input is untouched."""
    name, over = CASES[case]
    policy = make(name, **over)
    x, y = batch(7, dtype)
    original = x.clone()
    for seed in range(6):
        ref = policy(x, y, K, MixContext(generator=torch.Generator().manual_seed(seed)))
        assert torch.equal(x, original)
        owned = x.clone()
        got = policy(owned, y, K, MixContext(generator=torch.Generator().manual_seed(seed), owned=True))
        same(ref, got)


@pytest.mark.parametrize("case", range(len(HOST_CASES)), ids=lambda c: f"{HOST_CASES[c][0]}{HOST_CASES[c][1]}")
def test_host_path_writes_into_the_owned_batch(case, monkeypatch):
    """On the host path the mixed batch is the owned tensor itself (no new batch is allocated)."""
    monkeypatch.setattr(_ops, "HOST_ROW_BYTES", 0)
    name, over = HOST_CASES[case]
    policy = make(name, **over)
    if not policy.writes_inputs:
        pytest.skip(f"{name} mixes features, not the inputs")
    x, y = batch(8)
    params = policy.sample(x, y, MixContext(generator=torch.Generator().manual_seed(1)))
    ref = policy.mix_with(x, y, K, **params)
    owned = x.clone()
    got = policy.mix_with(owned, y, K, **params, inplace=True)
    assert got.inputs.data_ptr() == owned.data_ptr()
    same(ref, got)


@pytest.mark.parametrize("name", writers())
def test_any_partner_index_is_read_before_written(name, path):
    """Injected partners that are not a permutation (repeats, self-partners) still give the out-of-place bits."""
    policy = make(name)
    x, y = batch(6)
    params = policy.sample(x, y, MixContext(generator=torch.Generator().manual_seed(3)))
    for index in ([0, 0, 1, 1, 5, 5], [1, 2, 0, 3, 5, 4], [0, 1, 2, 3, 4, 5]):
        params["index"] = torch.tensor(index)
        ref = policy.mix_with(x, y, K, **params)
        same(ref, policy.mix_with(x.clone(), y, K, **params, inplace=True))


def test_cycles_of_a_permutation():
    assert _ops.cycles([1, 2, 0, 3, 5, 4]) == [[0, 1, 2], [4, 5]]
    assert _ops.cycles([0, 0, 1]) is None


@pytest.mark.parametrize("name", ["cutmix", "mixup", "fmix", "resizemix"])
def test_inputs_that_need_gradients_are_not_written(name, path):
    """With an autograd graph to record the policy mixes out of place, and gradients reach the inputs."""
    policy = make(name)
    x, y = batch(6)
    leaf = x.clone().requires_grad_(True)
    got = policy(leaf, y, K, MixContext(generator=torch.Generator().manual_seed(0), owned=True))
    ref = policy(x, y, K, MixContext(generator=torch.Generator().manual_seed(0)))
    assert torch.equal(got.inputs.detach(), ref.inputs) and torch.equal(leaf.detach(), x)
    got.inputs.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("policy", ["cutmix", "mixup"])
def test_classifier_step_mixes_the_preprocessed_batch_in_place(policy, monkeypatch):
    """The preprocessor marks its training output owned; the step mixes it in place and its loss equals the
    loss of the same step on a caller's tensor, which stays untouched."""
    from test_classifier import _batch, _model

    monkeypatch.setattr(_ops, "HOST_ROW_BYTES", 0)
    model = _model(f"mixup.type={policy}")
    model.eval()  # BN in eval mode: the two forwards see the same statistics
    assert "owned" not in model.data_preprocessor(_batch(), False)
    data = model.data_preprocessor(_batch(), True)
    assert data["owned"] is True
    clean = data["inputs"].clone()
    caller = clean.clone()
    model.reseed(0, caller.device)
    ref = model(caller, data["labels"], mode="loss")["loss"]
    model.reseed(0, caller.device)
    got = model(**data, mode="loss")["loss"]
    assert torch.equal(caller, clean) and not torch.equal(data["inputs"], clean)
    assert torch.equal(ref, got)
