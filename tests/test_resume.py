"""kill -9 during training, rerun: the run resumes from its last checkpoint and ends exactly where an
uninterrupted run with the same seed ends (deterministic mode)."""

from __future__ import annotations

import glob
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _spine import ROOT, TINY, TRAIN, env, run_cli

from mixbench.engine import compat
from mixbench.results.record import read_record

pytestmark = pytest.mark.slow

ARGS = ["configs/digits/mixup.yaml", *TINY, "schedule.epochs=3", "data.params.repeat=2", "runtime.deterministic=true",
        "runtime.checkpoint_interval=1", "runtime.max_keep_ckpts=5"]


def _final_state(run_dir: Path) -> dict:
    return compat.load_checkpoint(str(run_dir / "epoch_3.pth"), map_location="cpu")["state_dict"]  # weights-only


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    ref = run_cli([*ARGS, f"work_dir={tmp_path / 'ref'}"], ROOT)
    assert ref.returncode == 0, ref.stderr[-2000:]

    wd = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, TRAIN, *ARGS, f"work_dir={wd}"], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not glob.glob(str(wd / "digits" / "*" / "epoch_1.pth")) and time.time() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    time.sleep(0.3)  # into epoch 2, past the checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = [Path(p) for p in glob.glob(str(wd / "digits" / "*"))]
    assert read_record(run_dir / "record.json")["status"] == "running"
    assert not (run_dir / "epoch_3.pth").exists()

    again = run_cli([*ARGS, f"work_dir={wd}"], ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    (ref_dir,) = [Path(p) for p in glob.glob(str(tmp_path / "ref" / "digits" / "*"))]
    assert ref_dir.name == run_dir.name
    a, b = read_record(ref_dir / "record.json"), read_record(run_dir / "record.json")
    assert b["status"] == "finished"
    assert a["metrics"] == b["metrics"]
    sa, sb = _final_state(ref_dir), _final_state(run_dir)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_force_retrains(tmp_path: Path) -> None:
    args = ["configs/digits/vanilla.yaml", *TINY, "schedule.epochs=1", f"work_dir={tmp_path}"]
    assert run_cli(args, ROOT).returncode == 0
    (rec_path,) = glob.glob(str(tmp_path / "digits" / "*" / "record.json"))
    started = read_record(rec_path)["finished"]
    first_mtime = Path(rec_path).stat().st_mtime_ns
    forced = run_cli([*args, "--force"], ROOT)
    assert forced.returncode == 0 and "already finished" not in forced.stdout
    assert Path(rec_path).stat().st_mtime_ns != first_mtime and read_record(rec_path)["finished"] >= started
