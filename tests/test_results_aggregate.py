"""Aggregation checked against hand-computed means, sample stds and t-distribution 95% CIs."""

import math

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
    assert len(aggregate(store).table) == 1  # params not named: one group, n = 4
    board = aggregate(store, by=["dataset", "method", "alpha"],
                      reference=reference_table([{"alpha": 1.0, "reference": 80.0}]))
    assert board.by == ["dataset", "method", "params.alpha"]
    t = board.table.set_index("params.alpha")
    assert t.loc[1.0, "mean"] == pytest.approx(80.5) and t.loc[1.0, "diff"] == pytest.approx(0.5)
    assert math.isnan(t.loc[0.2, "reference"]) and t.loc[1.0, "rank"] == 1
    assert board.row_label(board.table.iloc[0]) == "mixup alpha=1"


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
