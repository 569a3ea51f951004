"""Helpers of the spine tests: run the CLI in a subprocess with a tiny, fast digits config."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "tools" / "train.py")
# Small and fast: 2 epochs of digits at 16x16 with the small CNN at width 16, no extra sinks.
TINY = ["schedule.epochs=2", "model.backbone.width=16", "runtime.tensorboard=false", "runtime.wandb=off",
        "runtime.progress=off"]


def env(**extra: str | None) -> dict:
    e = dict(os.environ)
    e.setdefault("WANDB_MODE", "disabled")
    e["OMP_NUM_THREADS"] = e.get("OMP_NUM_THREADS", "2")
    for k, v in extra.items():  # None removes a variable
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **extra: str | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, env=env(**extra), capture_output=True,
                          text=True, timeout=timeout)


def killed_run(args: list[str], cwd: Path, epoch: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """``tools/train.py args`` killed by SIGKILL in the middle of ``epoch`` (0-based; ``tests/_die_at_iter.py``)."""
    return subprocess.run([sys.executable, str(ROOT / "tests" / "_die_at_iter.py"), *args], cwd=cwd,
                          env=env(DIE_IN_EPOCH=str(epoch)), capture_output=True, text=True, timeout=timeout)


def flat_state(obj) -> list[torch.Tensor]:
    """Every tensor and number in a nested checkpoint entry (an optimiser's state), in a fixed order."""
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in flat_state(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in flat_state(v)]
    return [torch.tensor(float(obj))] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def assert_sigkill_resume_bit_identical(args: list[str], tmp_path: Path, epochs: int = 3, state_prefix: str = "",
                                        experiment: str = "digits", timeout: float = 900) -> None:
    """A run of ``args`` killed by SIGKILL in its second epoch, then rerun, ends bit-identical to an
    uninterrupted run: the weights (all of them, ``state_prefix`` among them), the optimiser state and the
    record's metrics. ``args`` must save a checkpoint every epoch and keep the last one."""
    from mixbench.engine import compat
    from mixbench.results.record import read_record

    def run_dir(work_dir: Path) -> Path:
        (d,) = [Path(p) for p in glob.glob(str(work_dir / experiment / "*"))]
        return d

    ref = run_cli([*args, f"work_dir={tmp_path / 'ref'}"], ROOT, timeout=timeout)
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed = killed_run([*args, f"work_dir={tmp_path / 'killed'}"], ROOT, epoch=1)  # after epoch_1.pth
    assert killed.returncode == -9, killed.stderr[-2000:]
    got = run_dir(tmp_path / "killed")
    assert read_record(got / "record.json")["status"] == "running" and not (got / f"epoch_{epochs}.pth").exists()
    again = run_cli([*args, f"work_dir={tmp_path / 'killed'}"], ROOT, timeout=timeout)
    assert again.returncode == 0, again.stderr[-2000:]
    want = run_dir(tmp_path / "ref")
    assert want.name == got.name
    a, b = (compat.load_checkpoint(str(d / f"epoch_{epochs}.pth"), map_location="cpu") for d in (want, got))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith(state_prefix) for k in a["state_dict"]), state_prefix
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    opt_a, opt_b = flat_state(a["optimizer"]), flat_state(b["optimizer"])
    assert len(opt_a) == len(opt_b) > 0 and all(torch.equal(x, y) for x, y in zip(opt_a, opt_b))
    rec_a, rec_b = read_record(want / "record.json"), read_record(got / "record.json")
    assert rec_b["status"] == "finished" and rec_a["metrics"] == rec_b["metrics"]
