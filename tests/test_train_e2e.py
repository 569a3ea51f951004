"""A tiny digits run end to end through the CLI: record, metrics, sinks, rerun no-op, test CLI, sweeps."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _spine import ROOT, TINY, env, run_cli

from mixbench.results.record import read_record, validate_record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 3-epoch vanilla run with TensorBoard and wandb offline on; returns its paths and output."""
    cwd = tmp_path_factory.mktemp("e2e")
    args = ["configs/digits/vanilla.yaml", "schedule.epochs=3", "model.backbone.width=16", "runtime.progress=off",
            "runtime.tensorboard=true", "runtime.wandb=offline", f"work_dir={cwd / 'wd'}"]
    proc = run_cli(args, ROOT, WANDB_MODE=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = glob.glob(str(cwd / "wd" / "digits" / "*-s0"))
    assert len(run_dirs) == 1
    return {"cwd": cwd, "args": args, "run_dir": Path(run_dirs[0]), "stdout": proc.stdout}


def test_record_is_valid_and_complete(tiny_run: dict) -> None:
    rec = read_record(tiny_run["run_dir"] / "record.json")
    assert validate_record(rec) == []
    assert rec["status"] == "finished" and rec["error"] is None and rec["finished"]
    assert (rec["method"], rec["dataset"], rec["backbone"], rec["epochs"], rec["seed"]) == \
        ("none", "digits", "digits_cnn", 3, 0)
    assert rec["run_id"] == f"digits/{tiny_run['run_dir'].name}"
    assert tiny_run["run_dir"].name == f"{rec['config_hash']}-s0"
    for name in ("top1", "top5"):
        m = rec["metrics"][name]
        assert 0.0 <= m["final"] <= m["best"] <= 1.0 and m["k"] == 3
    assert rec["metrics"]["top1"]["final"] > 0.5  # chance is 0.1
    assert rec["time"]["wall_s"] > 0 and rec["time"]["train_images_per_s"] > 0
    assert rec["memory"]["peak_bytes"] > 0
    env_ = rec["env"]
    assert env_["world_size"] == 1 and env_["torch"] and env_["mixbench"] and env_["device"] == "cpu"


def test_run_dir_contents(tiny_run: dict) -> None:
    rd = tiny_run["run_dir"]
    assert (rd / "config.yaml").exists() and (rd / "epoch_3.pth").exists() and (rd / "last_checkpoint").exists()
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == [1, 2, 3]
    assert all(r["loss"] > 0 for r in rows if r["kind"] == "train")
    assert glob.glob(str(rd / "tb" / "events.out.tfevents.*"))
    assert glob.glob(str(rd / "wandb" / "offline-run-*" / "run-*.wandb"))


def test_summary_is_printed(tiny_run: dict) -> None:
    out = tiny_run["stdout"]
    assert "finished" in out and "top1" in out and str(tiny_run["run_dir"].name) in out
    assert len(out.strip().splitlines()) <= 10


def test_rerun_is_a_noop(tiny_run: dict) -> None:
    rec_path = tiny_run["run_dir"] / "record.json"
    before = (rec_path.stat().st_mtime_ns, rec_path.read_text())
    proc = run_cli(tiny_run["args"], ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already finished" in proc.stdout
    assert (rec_path.stat().st_mtime_ns, rec_path.read_text()) == before


def test_test_cli_reproduces_final_metrics(tiny_run: dict) -> None:
    rd = tiny_run["run_dir"]
    out = rd / "test.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), *tiny_run["args"],
                           "--checkpoint", str(rd / "epoch_3.pth"), "--out", str(out)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = read_record(rd / "record.json")
    got = json.loads(out.read_text())["metrics"]
    assert got["top1"] == pytest.approx(rec["metrics"]["top1"]["final"])
    assert "top1" in proc.stdout


def test_nan_loss_gives_failed_record(tmp_path: Path) -> None:
    proc = run_cli(["configs/digits/vanilla.yaml", *TINY, "schedule.lr=1e30", "schedule.epochs=1",
                    f"work_dir={tmp_path}"], ROOT)
    assert proc.returncode == 1
    (rec_path,) = glob.glob(str(tmp_path / "digits" / "*" / "record.json"))
    rec = read_record(rec_path)
    assert rec["status"] == "failed" and "loss is" in rec["error"] and validate_record(rec) == []


def test_multirun_writes_one_record_per_combination(tmp_path: Path) -> None:
    proc = run_cli(["configs/digits/mixup.yaml", "-m", "mixup=none,cutmix", "seed=0,1", *TINY,
                    "schedule.epochs=1", f"work_dir={tmp_path}"], ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [read_record(p) for p in glob.glob(str(tmp_path / "digits" / "*" / "record.json"))]
    assert sorted((r["method"], r["seed"]) for r in records) == [("cutmix", 0), ("cutmix", 1), ("none", 0),
                                                                 ("none", 1)]
    assert all(r["status"] == "finished" for r in records)
    assert "sweep of 4 runs" in proc.stdout
