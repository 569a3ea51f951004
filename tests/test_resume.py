"""kill -9 during training, rerun: the run resumes from its last checkpoint and ends exactly where an
uninterrupted run with the same seed ends (deterministic mode)."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from _spine import ROOT, TINY, assert_sigkill_resume_bit_identical, run_cli

from mixbench.results.record import read_record

pytestmark = pytest.mark.slow

ARGS = ["configs/digits/mixup.yaml", *TINY, "schedule.epochs=3", "data.params.repeat=2", "runtime.deterministic=true",
        "runtime.checkpoint_interval=1", "runtime.max_keep_ckpts=5"]


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    assert_sigkill_resume_bit_identical(ARGS, tmp_path, state_prefix="backbone.", timeout=300)


def test_force_retrains(tmp_path: Path) -> None:
    args = ["configs/digits/vanilla.yaml", *TINY, "schedule.epochs=1", f"work_dir={tmp_path}"]
    assert run_cli(args, ROOT).returncode == 0
    (rec_path,) = glob.glob(str(tmp_path / "digits" / "*" / "record.json"))
    started = read_record(rec_path)["finished"]
    first_mtime = Path(rec_path).stat().st_mtime_ns
    forced = run_cli([*args, "--force"], ROOT)
    assert forced.returncode == 0 and "already finished" not in forced.stdout
    assert Path(rec_path).stat().st_mtime_ns != first_mtime and read_record(rec_path)["finished"] >= started
