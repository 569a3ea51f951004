"""End to end: a tiny regression run and a tiny noisy-label run, their records; a board ranking a
lower-is-better metric."""

from __future__ import annotations

import json
from pathlib import Path

from _results_fixtures import make_record, write_run
from _spine import ROOT, run_cli

from mixbench.results.aggregate import aggregate
from mixbench.results.store import scan

QUIET = ["runtime.tensorboard=false", "runtime.wandb=off", "runtime.progress=off"]


def only_record(work_dir: Path) -> dict:
    (path,) = list(work_dir.rglob("record.json"))
    return json.loads(path.read_text())


def test_tiny_regression_run_records_selected_metrics(tmp_path: Path):
    res = run_cli([str(ROOT / "configs/regression/diabetes/cmixup.yaml"), "schedule.epochs=3",
                   f"work_dir={tmp_path}", *QUIET], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = only_record(tmp_path)
    assert rec["status"] == "finished" and rec["task"] == "regression" and rec["dataset"] == "diabetes"
    m = rec["metrics"]
    for key in ("rmse", "mae", "mape", "r", "r2", "worst_rmse", "worst_r", "heldout_rmse"):
        assert key in m, key
    assert m["rmse"]["direction"] == "lower" and m["r2"]["direction"] == "higher"
    rows = [json.loads(line) for line in (rec_dir(tmp_path) / "metrics.jsonl").open()]
    assert m["rmse"]["best"] == min(r["rmse"] for r in rows if r["kind"] == "val")
    epoch = m["rmse"]["selected_epoch"]
    assert 1 <= epoch <= 3 and m["heldout_rmse"]["selected"] == m["heldout_rmse"]["best"]
    assert rec["heldout"]["source"] == "dataset" and rec["heldout"]["n"] == 88
    assert "rmse" in res.stdout


def rec_dir(work_dir: Path) -> Path:
    return next(work_dir.rglob("record.json")).parent


def test_tiny_noisy_classification_run_records_memorisation(tmp_path: Path):
    res = run_cli([str(ROOT / "configs/digits/mixup.yaml"), "schedule.epochs=1", "model.backbone.width=8",
                   "data.params.train_size=300", "data.label_noise.type=symmetric", "data.label_noise.rate=0.4",
                   "data.holdout=0.1", f"work_dir={tmp_path}", *QUIET], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = only_record(tmp_path)
    noise = rec["label_noise"]
    # round(0.4 · n_c) per class: within half a sample per class of 40 %
    assert noise["type"] == "symmetric" and noise["n"] == 300 and abs(noise["n_flipped"] - 120) <= 5
    flips = json.loads((rec_dir(tmp_path) / "label_noise.json").read_text())
    assert len(flips["flipped"]) == noise["n_flipped"] and len(flips["noisy_labels"]) == noise["n_flipped"]
    m = rec["metrics"]
    assert 0.0 <= m["memorised"]["final"] <= 1.0 and m["memorised"]["direction"] == "lower"
    for key in ("top1", "ece", "adaece", "cw_ece", "mce", "nll", "brier", "ece_ts", "nll_ts"):
        assert key in m, key
    assert rec["heldout"]["n"] == 30 and rec["heldout"]["n_train"] == 270
    assert rec["fitted"]["temperature"]["final"] > 0


def test_board_ranks_a_lower_is_better_metric(tmp_path: Path):
    for method, rmse in (("none", 3.0), ("mixup", 4.0), ("cmixup", 2.0)):
        for seed in (0, 1):
            rec = make_record(method=method, seed=seed, dataset="diabetes")
            rec["metrics"] = {"rmse": {"final": rmse + seed * 0.1, "best": rmse, "median_last_k": rmse, "k": 1,
                                       "direction": "lower"}}
            write_run(tmp_path, rec)
    board = aggregate(scan([tmp_path]), metric="rmse", definition="final")
    assert not board.higher_is_better
    assert board.table.sort_values("rank")["method"].tolist() == ["cmixup", "none", "mixup"]
    assert "lower is better" in board.header
