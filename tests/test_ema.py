"""EMA of the weights (runtime.ema): the checkpoint carries the averaged weights and they differ from the raw ones."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch
from _spine import ROOT, TINY, run_cli

from mixbench.engine import compat
from mixbench.results.record import read_record

pytestmark = pytest.mark.slow


def test_ema_checkpoint_holds_averaged_weights(tmp_path: Path) -> None:
    args = ["configs/digits/vanilla.yaml", *TINY, "schedule.epochs=1", "runtime.ema=true",
            "runtime.ema_momentum=0.5", f"work_dir={tmp_path}"]
    proc = run_cli(args, ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "digits" / "*-s0"))
    assert read_record(Path(run_dir) / "record.json")["status"] == "finished"
    ckpt = compat.load_checkpoint(str(Path(run_dir) / "epoch_1.pth"), map_location="cpu")  # weights-only
    assert "ema_state_dict" in ckpt
    ema = {k.removeprefix("module."): v for k, v in ckpt["ema_state_dict"].items() if k != "steps"}
    raw = ckpt["state_dict"]
    shared = [k for k in raw if k in ema and raw[k].is_floating_point() and "weight" in k]
    assert shared, "EMA state has no weights in common with the model"
    # momentum 0.5 over dozens of steps: averaged weights are close to, but not equal to, the last ones
    assert any(not torch.equal(raw[k], ema[k]) for k in shared)
    assert all(torch.isfinite(ema[k]).all() for k in shared)
