"""One test per mmengine 0.10.7 breakage worked around in mixbench.engine.compat (DESIGN §8)."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer
from torch import nn

from mixbench.engine import compat


def test_checkpoint_with_history_buffer_loads_weights_only(tmp_path: Path) -> None:
    compat.apply()
    buf = HistoryBuffer([1.0, 2.0], [1, 1])
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "message_hub": {"log": buf}}, path)
    assert "statistics_methods" not in buf.__dict__  # pickling no longer mutates the live buffer
    with pytest.raises(pickle.UnpicklingError):  # the breakage: weights_only refuses mmengine's objects
        torch.load(path)
    from mmengine.runner.checkpoint import _load_checkpoint

    ckpt = _load_checkpoint(str(path), map_location="cpu")  # mmengine's resume path, through the patch
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(2))
    log = ckpt["message_hub"]["log"]
    assert isinstance(log, HistoryBuffer) and log.mean() == 1.5 and log.statistics("max") == 2.0


def test_mmengine_pickled_method_references_are_refused(tmp_path: Path) -> None:
    """mmengine's own ``__getstate__`` pickles ``getattr(HistoryBuffer, 'min')``; a weights-only load refuses it
    (such a file needs full unpickling, which mixbench never does)."""
    buf = HistoryBuffer([1.0], [1])
    path = tmp_path / "mmengine.pth"
    torch.save({"log": buf.__dict__ | {"statistics_methods": {"min": HistoryBuffer.min}}}, path)
    with pytest.raises(pickle.UnpicklingError, match="getattr"):
        compat.load_checkpoint(str(path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA path of mmengine's init is not patched")
def test_mmengine_pytorch_launcher_inits_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as td
    from mmengine.dist import init_dist

    compat.apply()
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": "29531"}.items():
        monkeypatch.setenv(k, v)
    init_dist("pytorch", backend="nccl")  # without the patch: torch.cuda.set_device fails on this machine
    try:
        assert td.is_initialized() and td.get_backend() == "gloo"
    finally:
        td.destroy_process_group()
    assert compat.ddp_wrapper_cfg(torch.device("cpu"))["device_ids"] is None


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_wrapper_without_gpu_assert(dtype: str) -> None:
    from mmengine.optim import build_optim_wrapper

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    wrapper = build_optim_wrapper(model, dict(type="MixAmpOptimWrapper", dtype=dtype,
                                              optimizer=dict(type="SGD", lr=0.1), clip_grad=dict(max_norm=1.0)))
    if dtype == "bf16" or not torch.cuda.is_available():
        assert wrapper.loss_scaler is None  # bf16 needs no GradScaler (and CPU never uses one)
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        out = model(torch.randn(5, 4))
        if not torch.cuda.is_available() and dtype == "bf16":
            assert out.dtype == torch.bfloat16
        loss = out.float().pow(2).mean()
    wrapper.update_params(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    state = wrapper.state_dict()
    wrapper.load_state_dict(state)


@pytest.mark.skipif(torch.cuda.is_available(), reason="mmengine's wrapper works on GPUs")
def test_mmengine_amp_wrapper_still_asserts_a_gpu() -> None:
    from mmengine.optim import AmpOptimWrapper

    with pytest.raises(AssertionError):
        AmpOptimWrapper(optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))


def test_package_utils_without_pkg_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmengine.utils as mm_utils
    import mmengine.utils.package_utils as pu

    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # as with setuptools >= 82
    with pytest.raises(ImportError):
        pu.is_installed("torch")
    for mod in (pu, mm_utils):
        monkeypatch.setattr(mod, "is_installed", mod.is_installed)
        monkeypatch.setattr(mod, "get_installed_path", mod.get_installed_path)
    compat.patch_package_utils()
    assert pu.is_installed("torch") and not pu.is_installed("surely-not-a-package-xyz")
    assert os.path.isdir(mm_utils.get_installed_path("mmengine"))
