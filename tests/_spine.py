"""Helpers of the spine tests: run the CLI in a subprocess with a tiny, fast digits config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
