"""Aggregation checked against hand-computed means, sample stds and t-distribution 95% CIs; boards never pool
runs of different configs or count a seed twice."""

import math
import shutil

import pandas as pd
import pytest
from _results_fixtures import make_record, write_run

from mixbench.errors import ConfigError
from mixbench.results.aggregate import aggregate, reference_table, t_quantile
from mixbench.results.store import scan

# Student t 0.975 quantiles from printed tables: df = 1, 2, 4, 9.
T975 = {1: 12.7062, 2: 4.3027, 4: 2.7764, 9: 2.2622}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_matches_tables(df):
    assert t_quantile(df) == pytest.approx(T975[df], abs=1e-4)
    assert math.isnan(float(t_quantile(0)))


@pytest.fixture
def store(tmp_path):
    # mixup: 70, 72, 77 -> mean 73, deviations -3, -1, 4 -> s^2 = (9+1+16)/2 = 13
    for seed, v in enumerate([70.0, 72.0, 77.0]):
        write_run(tmp_path, make_record("mixup", seed, v, best=v + 1, final=v - 1))
    # none: 60, 62 -> mean 61, s = sqrt(2)
    for seed, v in enumerate([60.0, 62.0]):
        write_run(tmp_path, make_record("none", seed, v))
    write_run(tmp_path, make_record("none", 2, status="failed"))  # would drag the mean down if counted
    write_run(tmp_path, make_record("none", 3, value=float("nan")))
    write_run(tmp_path, make_record("none", 4, value=float("inf")))
    write_run(tmp_path, make_record("none", 5, 0.0, status="running"))
    write_run(tmp_path, make_record("cutmix", 0, 65.0))  # n = 1: no std, no CI
    write_run(tmp_path, make_record("mixup", 0, 90.0, epochs=20))  # another comparison (epochs)
    return scan(tmp_path)


def _row(board, method, epochs=10):
    t = board.table
    return t[(t["method"] == method) & (t["epochs"] == epochs)].iloc[0]


def test_mean_std_ci_by_hand(store):
    board = aggregate(store)
    mix = _row(board, "mixup")
    assert mix["n"] == 3 and mix["mean"] == pytest.approx(73.0)
    assert mix["std"] == pytest.approx(math.sqrt(13.0))
    half = 4.3027 * math.sqrt(13.0) / math.sqrt(3)
    assert mix["ci95"] == pytest.approx(half, abs=1e-3)
    assert (mix["ci_low"], mix["ci_high"]) == pytest.approx((73.0 - half, 73.0 + half), abs=1e-3)
    assert mix["seeds"] == [0, 1, 2]
    none = _row(board, "none")
    assert none["n"] == 2 and none["mean"] == pytest.approx(61.0) and none["std"] == pytest.approx(math.sqrt(2))
    assert none["ci95"] == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), abs=1e-3)
    cut = _row(board, "cutmix")
    assert cut["n"] == 1 and math.isnan(cut["std"]) and math.isnan(cut["ci95"])


def test_rank_within_setting_and_exclusions(store):
    board = aggregate(store)
    assert board.table[board.table["epochs"] == 10]["method"].tolist() == ["mixup", "cutmix", "none"]
    assert board.table[board.table["epochs"] == 10]["rank"].tolist() == [1, 2, 3]
    assert _row(board, "mixup", 20)["rank"] == 1
    reasons = dict(zip(board.excluded["seed"], board.excluded["reason"]))
    assert reasons == {2: "failed: RuntimeError: boom", 3: "top1.median_last_k is NaN or missing",
                       4: "top1.median_last_k is infinite", 5: "unfinished (status running)"}
    assert board.header == "top-1 (%), median of the last 10 epochs, mean ± std over n seeds"


@pytest.mark.parametrize("definition, offset", [("best", 1.0), ("final", -1.0), ("median_last_k", 0.0)])
def test_metric_definitions(store, definition, offset):
    board = aggregate(store, definition=definition)
    assert _row(board, "mixup")["mean"] == pytest.approx(73.0 + offset)
    assert definition.split("_")[0] in board.header


def test_lower_is_better_reverses_rank(store):
    board = aggregate(store, higher_is_better=False)
    assert board.table[board.table["epochs"] == 10]["method"].tolist() == ["none", "cutmix", "mixup"]


def test_group_by_params_and_reference(tmp_path):
    for seed in range(2):
        write_run(tmp_path, make_record("mixup", seed, 70.0 + seed, params={"alpha": 0.2}))
        write_run(tmp_path, make_record("mixup", seed, 80.0 + seed, params={"alpha": 1.0}))
    store = scan(tmp_path)
    pooled = aggregate(store)  # params not named: the two alphas still get a row each
    assert pooled.table["variant"].tolist() == ["mixup.alpha=1", "mixup.alpha=0.2"]
    assert pooled.table["n"].tolist() == [2, 2] and pooled.table["mean"].tolist() == [80.5, 70.5]
    board = aggregate(store, by=["dataset", "method", "alpha"],
                      reference=reference_table([{"alpha": 1.0, "reference": 80.0}]))
    assert board.by == ["dataset", "method", "params.alpha"]
    t = board.table.set_index("params.alpha")
    assert t.loc[1.0, "mean"] == pytest.approx(80.5) and t.loc[1.0, "diff"] == pytest.approx(0.5)
    assert math.isnan(t.loc[0.2, "reference"]) and t.loc[1.0, "rank"] == 1
    assert board.row_label(board.table.iloc[0]) == "mixup alpha=1"
    assert "variant" not in board.by and board.warnings == []  # alpha named: nothing left to split


LRS = {0.1: 50.0, 0.01: 20.0, 0.001: 39.0, 0.0001: 30.0}


def test_runs_of_different_configs_are_never_pooled(tmp_path, caplog):
    # four seed-0 runs that differ only in the learning rate: four experiments, not "n = 4 seeds"
    for lr, v in LRS.items():
        write_run(tmp_path, make_record("mixup", 0, v, config={"schedule.lr": lr}))
    write_run(tmp_path, make_record("cutmix", 0, 40.0))
    write_run(tmp_path, make_record("cutmix", 1, 42.0))  # one config over two seeds: pooled as before
    board = aggregate(scan(tmp_path))
    t = board.table
    mix = t[t["method"] == "mixup"].set_index("variant")
    assert sorted(mix.index) == sorted(f"schedule.lr={lr:g}" for lr in LRS)
    assert (mix["n"] == 1).all() and all(mix.loc[f"schedule.lr={lr:g}", "mean"] == v for lr, v in LRS.items())
    assert mix["std"].isna().all() and mix["ci95"].isna().all()  # one seed each: no spread, no CI
    cut = t[t["method"] == "cutmix"].iloc[0]
    assert cut["n"] == 2 and cut["variant"] == "" and cut["mean"] == 41.0
    assert board.row_label(cut) == "cutmix"
    assert board.row_label(mix.reset_index().iloc[0]).startswith("mixup schedule.lr=")
    assert board.by[-1] == "variant" and "variant" in board.contenders  # ranked within dataset / backbone / epochs
    assert t["rank"].tolist() == [1, 2, 3, 4, 5]
    assert board.warnings == ["digits / lenet / 10 / mixup: 4 runs of 4 different configs (they differ in "
                              "schedule.lr); split into one row per config (column 'variant')."]
    assert board.warnings[0] in caplog.text


def test_configs_differing_in_several_keys_name_each_key(tmp_path):
    write_run(tmp_path, make_record("mixup", 0, 70.0, config={"schedule.lr": 0.1, "data.batch_size": 64}))
    write_run(tmp_path, make_record("mixup", 1, 71.0, config={"schedule.lr": 0.2, "data.batch_size": 64}))
    write_run(tmp_path, make_record("mixup", 2, 72.0, config={"schedule.lr": 0.1}))
    board = aggregate(scan(tmp_path))
    assert sorted(board.table["variant"]) == ["data.batch_size=32, schedule.lr=0.1",
                                              "data.batch_size=64, schedule.lr=0.1",
                                              "data.batch_size=64, schedule.lr=0.2"]
    assert "they differ in data.batch_size, schedule.lr" in board.warnings[0]


def test_unhashed_keys_do_not_split(tmp_path):
    # the progress bar is left out of the config hash: same experiment, pooled over seeds as usual
    write_run(tmp_path, make_record("mixup", 0, 70.0, config={"runtime.progress": True}))
    write_run(tmp_path, make_record("mixup", 1, 72.0))
    board = aggregate(scan(tmp_path))
    assert board.table["n"].tolist() == [2] and board.warnings == [] and "variant" not in board.table


def test_same_config_under_two_hashes_is_one_experiment(tmp_path):
    # hashes written by another version of the hash rules: the resolved configs are what decide
    write_run(tmp_path, make_record("mixup", 0, 70.0, config_hash="oldhash"))
    write_run(tmp_path, make_record("mixup", 1, 72.0))
    board = aggregate(scan(tmp_path))
    assert board.table["n"].tolist() == [2] and board.warnings == []
    # ... and its seed 1 under the old hash as well: one experiment, so that seed counts once
    write_run(tmp_path, make_record("mixup", 1, 90.0, config_hash="oldhash"))
    board = aggregate(scan(tmp_path))
    assert board.table["n"].tolist() == [2] and board.table["seeds"].tolist() == [[0, 1]]
    assert len(board.excluded) == 1 and board.excluded["reason"][0].startswith("duplicate of ")


def test_unreadable_config_splits_by_hash(tmp_path):
    run = write_run(tmp_path, make_record("mixup", 0, 70.0, config={"schedule.lr": 0.5}))
    write_run(tmp_path, make_record("mixup", 1, 72.0))
    (run / "config.yaml").unlink()
    board = aggregate(scan(tmp_path))
    assert board.table["n"].tolist() == [1, 1]
    assert sorted(board.table["variant"]) == sorted(f"config {p.name.split('-')[0]}" for p in run.parent.iterdir())
    assert "a config.yaml is unreadable" in board.warnings[0]


def test_a_seed_counts_once(tmp_path):
    # the same run dir copied into a second work dir, both scanned: seed 0 must not count twice
    first, second = tmp_path / "a", tmp_path / "b"
    run = write_run(first, make_record("mixup", 0, 70.0))
    write_run(first, make_record("mixup", 1, 74.0))
    copy = second / run.relative_to(first)
    shutil.copytree(run, copy)
    rec = make_record("mixup", 0, 76.0)
    rec["finished"] = "2025-01-02T00:00:00"  # the copy finished later: it is the one that counts
    write_run(second, rec)
    board = aggregate(scan([first, second]))
    row = board.table.iloc[0]
    assert row["n"] == 2 and row["seeds"] == [0, 1] and row["mean"] == pytest.approx(75.0)
    assert board.excluded["reason"].tolist() == [f"duplicate of {copy} (same config and seed)"]
    assert board.warnings == [f"{run}: same config and seed as {copy}; the seed counts once."]


def test_user_errors_are_config_errors(store):
    with pytest.raises(ConfigError, match="--by: unknown key 'colour'"):
        aggregate(store, by=["dataset", "colour"])
    with pytest.raises(ConfigError, match="no run has metric 'top7'"):
        aggregate(store, metric="top7")
    with pytest.raises(ConfigError, match="--definition"):
        aggregate(store, definition="mean")


def test_empty_store_gives_empty_board(tmp_path):
    board = aggregate(scan(tmp_path))
    assert board.table.empty and board.excluded.empty
    assert isinstance(board.table, pd.DataFrame)
