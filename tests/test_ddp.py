"""Two-process DDP on CPU through torchrun (gloo), and the SLURM/torchrun environment parsing."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _spine import ROOT, TINY, TRAIN, env

from mixbench.config import config_hash, load_config, run_dir_of
from mixbench.engine import dist
from mixbench.results.record import read_record, validate_record

TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    args = ["configs/digits/vanilla.yaml", *TINY, "schedule.epochs=1", f"work_dir={tmp_path}"]
    proc = subprocess.run([*TORCHRUN_2, TRAIN, *args], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec_path,) = glob.glob(str(tmp_path / "digits" / "*" / "record.json"))
    rec = read_record(rec_path)
    assert validate_record(rec) == [] and rec["status"] == "finished"
    assert rec["env"]["world_size"] == 2
    assert rec["metrics"]["top1"]["final"] > 0.0
    assert proc.stdout.count("finished") == 1  # only rank 0 prints the summary
    # the 2-process run has a run dir of its own: the 1-process command would not find it "already finished"
    cfg, _ = load_config(args[0], args[1:])
    assert Path(rec_path).parent == Path(run_dir_of(cfg, world_size=2)) != Path(run_dir_of(cfg))
    assert rec["config_hash"] == config_hash(cfg, world_size=2) != config_hash(cfg)


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    # only rank 1's loss is NaN (from its 3rd iteration); rank 0's loss and the averaged gradients stay finite
    cmd = [*TORCHRUN_2, str(Path(__file__).with_name("_nan_on_rank1.py")), "configs/digits/vanilla.yaml", *TINY,
           f"work_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode != 0
    (rec_path,) = glob.glob(str(tmp_path / "digits" / "*" / "record.json"))
    rec = read_record(rec_path)  # written by rank 0, which saw only finite losses itself
    assert rec["status"] == "failed" and validate_record(rec) == [], rec.get("error")
    assert rec["error"] == "NonFiniteLoss: loss is not finite on rank 1 at epoch 1, iteration 3"
    assert "FAILED" in proc.stdout and "loss is not finite on rank 1" in proc.stdout


def test_loss_check_without_a_process_group() -> None:
    from mixbench.engine.hooks import loss_check

    assert loss_check(torch.tensor(0.25)) == (0.25, None)
    value, rank = loss_check(torch.tensor(float("inf")))
    assert value == float("inf") and rank == 0


def test_detect_torchrun_env() -> None:
    info = dist.detect("auto", {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (3, 4, 1, "pytorch")
    assert dist.detect("auto", {}).world_size == 1


def test_detect_slurm_env() -> None:
    e = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[03-04]"}
    info = dist.detect("auto", e)
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (5, 8, 1, "slurm")
    assert dist.detect("auto", {**e, "SLURM_NTASKS": "1"}).world_size == 1  # one task: not distributed


@pytest.mark.parametrize("nodelist,host", [("gpu[03-04]", "gpu03"), ("node7", "node7"), ("a[1,5-6],b2", "a1"),
                                           ("n1,n2", "n1")])
def test_first_host(nodelist: str, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist.shutil, "which", lambda _: None)  # no scontrol: parse the list
    assert dist.first_host(nodelist) == host


def test_explicit_launcher_without_env_is_a_config_error() -> None:
    from mixbench.errors import ConfigError

    with pytest.raises(ConfigError, match="torchrun"):
        dist.detect("pytorch", {})
    with pytest.raises(ConfigError, match="srun"):
        dist.detect("slurm", {})
