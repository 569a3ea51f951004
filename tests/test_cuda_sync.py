"""The model-free policies on the training device: no host synchronisation on CUDA, and the same mixed batch as
on the CPU for the same injected draws. The CPU cases run everywhere (they check the test itself); the CUDA
cases are marked ``gpu`` (``pytest -m gpu``, run by ``benchmarks/gpu_check.sh``)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_mixups_properties import HOST_CASES, STATIC, K, make

from mixbench.mixups.base import MixContext

CASES = [(name, {}) for name in sorted(STATIC)] + HOST_CASES
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


@contextlib.contextmanager
def no_host_sync(device: torch.device):
    """On CUDA, make any host synchronisation raise (``torch.cuda.set_sync_debug_mode("error")``)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def to(params, device: torch.device):
    if torch.is_tensor(params):
        return params.to(device)
    if isinstance(params, dict):
        return {k: to(v, device) for k, v in params.items()}
    if isinstance(params, (tuple, list)):
        return type(params)(to(v, device) for v in params)
    return params


@pytest.mark.parametrize("owned", [False, True], ids=["direct", "owned"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda c: f"{CASES[c][0]}{CASES[c][1]}")
@pytest.mark.parametrize("device", DEVICES)
def test_static_policy_runs_without_host_sync(device, case, owned):
    device = torch.device(device)
    name, over = CASES[case]
    policy = make(name, **over)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((8, 3, 32, 32), generator=g, device=device)
    y = torch.randint(0, K, (8,), generator=g, device=device)
    torch.cuda.synchronize() if device.type == "cuda" else None
    with no_host_sync(device):
        for it in range(2):
            batch = policy(x.clone(), y, K, MixContext(generator=g, iter=it, owned=owned))
    assert batch.inputs.shape == x.shape and torch.isfinite(batch.targets).all()


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda c: f"{CASES[c][0]}{CASES[c][1]}")
@pytest.mark.parametrize("device", DEVICES)
def test_same_draws_give_the_cpu_batch(device, case):
    """Draws made on the CPU and moved to the device give the CPU's mixed batch (device kernels may round
    differently in the last bit)."""
    name, over = CASES[case]
    policy = make(name, **over)
    if not hasattr(policy, "mix_with"):
        pytest.skip(f"{name} has no separate draws to inject")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn((8, 3, 32, 32), generator=g), torch.randint(0, K, (8,), generator=g)
    params = policy.sample(x, y, MixContext(generator=g))
    ref = policy.mix_with(x, y, K, **params)
    got = policy.mix_with(x.to(device), y.to(device), K, **to(params, torch.device(device)))
    torch.testing.assert_close(got.inputs.cpu(), ref.inputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.targets.cpu(), ref.targets, atol=1e-6, rtol=0)
