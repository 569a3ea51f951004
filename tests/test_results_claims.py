"""Claims that suites test: the Welch interval, the verdict rule, parsing, and a suite's board with a claim."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from _results_fixtures import make_record, write_run
from scipy import stats

from mixbench.cli.bench import main as bench_main
from mixbench.errors import ConfigError
from mixbench.results.claims import HELD, INCONCLUSIVE, NOT_HELD, Check, verdict, welch_interval
from mixbench.results.suite import load_suite, suite_board

T_975_DF4 = 2.7764451051977987  # Student's t, 97.5 % quantile, 4 degrees of freedom (tables)


def test_welch_interval_by_hand():
    # a = [1, 2, 3], b = [4, 5, 6]: means 2 and 5, s = 1 each; se = sqrt(1/3 + 1/3), df = 4 exactly
    d, lo, hi = welch_interval(2.0, 1.0, 3, 5.0, 1.0, 3)
    half = T_975_DF4 * math.sqrt(2 / 3)
    assert d == -3.0 and lo == pytest.approx(-3 - half) and hi == pytest.approx(-3 + half)
    assert (lo, hi) == pytest.approx((-5.26696, -0.73304), abs=1e-5)


def test_welch_interval_matches_scipy_with_unequal_spread_and_sizes():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.3, 4), rng.normal(0.2, 2.0, 7)
    d, lo, hi = welch_interval(a.mean(), a.std(ddof=1), len(a), b.mean(), b.std(ddof=1), len(b))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(a.mean() - b.mean()) and (lo, hi) == pytest.approx((ci.low, ci.high))


def test_welch_interval_without_spread_or_seeds():
    assert welch_interval(3.0, 0.0, 3, 1.0, 0.0, 3) == (2.0, 2.0, 2.0)
    d, lo, hi = welch_interval(3.0, math.nan, 1, 1.0, 0.5, 3)
    assert d == 2.0 and math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("kind, lo, hi, margin, expected", [
    ("better", 0.5, 2.0, 0.0, HELD),
    ("better", -2.0, -0.5, 0.0, NOT_HELD),  # the other way round, excluding 0
    ("better", -1.0, 1.0, 0.0, INCONCLUSIVE),
    ("better", 6.0, 8.0, 5.0, HELD),
    ("better", 3.0, 4.0, 5.0, NOT_HELD),  # better, but by less than the claimed margin
    ("better", 4.0, 6.0, 5.0, INCONCLUSIVE),
    ("similar", -1.0, 1.5, 2.0, HELD),
    ("similar", 2.5, 4.0, 2.0, NOT_HELD),
    ("similar", -4.0, -2.5, 2.0, NOT_HELD),
    ("similar", 1.0, 3.0, 2.0, INCONCLUSIVE),
    ("similar", math.nan, math.nan, 2.0, INCONCLUSIVE),
    ("better", math.nan, math.nan, 0.0, INCONCLUSIVE),
])
def test_verdict_rule(kind, lo, hi, margin, expected):
    assert verdict(kind, lo, hi, margin) == expected


def test_check_text():
    assert Check("better", "mixup", "none", margin=5).text("top-1 (%)") == "mixup better than none on top-1 (%) by more than 5"
    assert Check("similar", "a", "b", margin=2).text("top-1 (%)") == "a ≈ b on top-1 (%) within ±2"


# ------------------------------------------------------------------------------------------- suite boards

# per entry and seed: (top-1 %, ECE as a fraction)
VALUES = {"none": [(90.0, 0.03), (91.0, 0.04), (92.0, 0.05)],
          "mixup": [(90.0, 0.01), (91.0, 0.02), (92.0, 0.03)],
          "rankmixup": [(80.0, 0.005), (81.0, 0.010), (82.0, 0.015)]}


def _claim_suite(tmp_path, claim, columns=None):
    runs = [{"config": f"{name}.yaml", "label": name} for name in VALUES]
    data = {"name": "c", "title": "Claim fixture", "work_dir": str(tmp_path / "work"), "out": str(tmp_path / "out"),
            "seeds": [0, 1, 2], "metric": "ece", "definition": "final", "runs": runs, "claim": claim}
    if columns is not None:
        data["columns"] = columns
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    suite = load_suite(path)
    for run in suite.runs:
        for seed, (top1, ece) in enumerate(VALUES[run.label]):
            rec = make_record(run.label, seed, top1)
            rec["metrics"]["ece"] = {"final": ece, "best": ece, "median_last_k": ece, "k": 10, "direction": "lower"}
            write_run(suite.run_dir(run), rec)
    return suite


CLAIM = {"text": "Mixup and RankMixup lower ECE at similar accuracy.",
         "checks": [{"better": "mixup", "than": "none", "metric": "ece"},
                    {"better": "rankmixup", "than": "none"},
                    {"similar": "mixup", "to": "none", "metric": "top1", "within": 2},
                    {"similar": "rankmixup", "to": ["none", "mixup"], "metric": "top1", "within": 2}]}


def test_suite_board_computes_each_check(tmp_path):
    board = suite_board(_claim_suite(tmp_path, CLAIM))
    results = board.claim.results
    assert [r.text for r in results] == [
        "mixup better than none on ECE (%)", "rankmixup better than none on ECE (%)",
        "mixup ≈ none on top-1 (%) within ±2", "rankmixup ≈ none on top-1 (%) within ±2",
        "rankmixup ≈ mixup on top-1 (%) within ±2"]
    mix, rank, sim, far, far2 = results
    # ECE in %: none [3, 4, 5], mixup [1, 2, 3]; lower is better so Δ = 4 - 2 = 2 ± t(4) * sqrt(2/3)
    half = T_975_DF4 * math.sqrt(2 / 3)
    assert (mix.diff, mix.ci_low, mix.ci_high) == pytest.approx((2.0, 2 - half, 2 + half))
    assert mix.verdict == INCONCLUSIVE  # the interval [-0.27, 4.27] holds 0
    # rankmixup [0.5, 1, 1.5] against none [3, 4, 5]: Δ = 3, Welch (unequal spreads) excludes 0
    ci = stats.ttest_ind([3, 4, 5], [0.5, 1.0, 1.5], equal_var=False).confidence_interval(0.95)
    assert (rank.diff, rank.ci_low, rank.ci_high) == pytest.approx((3.0, ci.low, ci.high))
    assert rank.verdict == HELD
    assert sim.diff == 0.0 and sim.verdict == INCONCLUSIVE  # ±2.27 reaches past ±2
    assert far.diff == pytest.approx(-10.0) and far.verdict == NOT_HELD and far2.verdict == NOT_HELD
    assert board.claim.verdict == NOT_HELD
    assert board.claim.summary == "did not hold (5 checks: 1 held, 2 did not hold, 2 inconclusive)"


def test_report_writes_claim_verdict_and_extra_columns(tmp_path, capsys):
    suite = _claim_suite(tmp_path, CLAIM, columns=["top1", {"metric": "ece", "definition": "best"}])
    assert bench_main(["report", str(suite.path), "--format", "all"]) == 0
    md = capsys.readouterr().out
    assert "**Claim tested:** Mixup and RankMixup lower ECE at similar accuracy." in md
    assert "**Verdict: did not hold (5 checks: 1 held, 2 did not hold, 2 inconclusive).**" in md
    assert "| rankmixup better than none on ECE (%) | rankmixup: 1.00 ± 0.50 (3) | none: 4.00 ± 1.00 (3) |" in md
    # the extra columns: top-1 in its own direction and format, ECE under another definition
    assert "top-1 (%, mean ± std) | ECE (%, mean ± std, lower is better, best epoch) |" in md
    assert "| digits | lenet | 10 | mixup | 2.00 ± 1.00 | 3 | [0.00, 4.48] | 2 | 91.00 ± 1.00 | 2.00 ± 1.00 |" in md
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.csv", "leaderboard.html", "leaderboard.md",
                                                     "leaderboard.png", "leaderboard.tex", "leaderboard_claim.csv"]
    tex = (out / "leaderboard.tex").read_text()
    assert "Verdict: did not hold" in tex and r"91.00 $\pm$ 1.00" in tex
    checks = pd.read_csv(out / "leaderboard_claim.csv")
    assert checks["verdict"].tolist() == [INCONCLUSIVE, HELD, INCONCLUSIVE, NOT_HELD, NOT_HELD]
    assert set(checks["claim_verdict"]) == {NOT_HELD}
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert board.loc["rankmixup", "top1.final:mean"] == pytest.approx(81.0)
    html = (out / "leaderboard.html").read_text()
    assert "Claim checks" in html and "Verdict: did not hold" in html


def test_lower_is_better_check_with_a_missing_entry_is_inconclusive(tmp_path):
    suite = _claim_suite(tmp_path, {"text": "t", "checks": [{"better": "mixup", "than": "none"}]})
    for rec in suite.run_dir(suite.runs[0]).rglob("record.json"):  # no run of 'none' finished
        rec.unlink()
    result = suite_board(suite).claim.results[0]
    assert result.verdict == INCONCLUSIVE and result.reason == "no finished run of 'none'"


def test_a_check_or_column_on_a_metric_no_run_reports_names_it(tmp_path):
    suite = _claim_suite(tmp_path, {"text": "t", "checks": [{"better": "mixup", "than": "none", "metric": "rmse"}]})
    with pytest.raises(ConfigError, match="^claim check 'mixup better than none on rmse': --metric: no run has"):
        suite_board(suite)
    suite = _claim_suite(tmp_path, "t", columns=["worst_rmse"])
    with pytest.raises(ConfigError, match="^columns: 'worst_rmse': --metric: no run has metric 'worst_rmse'"):
        suite_board(suite)


def test_plain_string_claim_is_stated_not_checked(tmp_path, capsys):
    suite = _claim_suite(tmp_path, "Mixup  lowers ECE.")
    assert suite.claim.text == "Mixup lowers ECE." and suite.claim.checks == ()
    assert bench_main(["report", str(suite.path), "--format", "md,csv"]) == 0
    md = capsys.readouterr().out
    assert "**Claim tested:** Mixup lowers ECE." in md and "not checked" in md and "Claim checks" not in md
    assert not (tmp_path / "out" / "leaderboard_claim.csv").exists()


@pytest.mark.parametrize("claim, columns, message", [
    ({"text": "t", "checks": [{"better": "cutmix", "than": "none"}]}, None,
     "claim.checks[0].better: no suite entry labelled 'cutmix'"),
    ({"text": "t", "checks": [{"better": "mixup", "than": ["none", "x"]}]}, None,
     "claim.checks[0].than: no suite entry labelled 'x'"),
    ({"text": "t", "checks": [{"similar": "mixup", "to": "none"}]}, None,
     "claim.checks[0].within: expected a number > 0"),
    ({"text": "t", "checks": [{"better": "mixup", "than": "none", "by_at_least": -1}]}, None,
     "claim.checks[0].by_at_least: expected a number >= 0"),
    ({"text": "t", "checks": [{"better": "mixup", "than": "none", "within": 1}]}, None,
     "claim.checks[0]: unknown key 'within'"),
    ({"text": "t", "checks": [{"worse": "mixup"}]}, None, "claim.checks[0]: expected a mapping with 'better'"),
    ({"text": "t", "checks": [{"better": "mixup", "than": "none", "definition": "last"}]}, None,
     "claim.checks[0].definition 'last' unknown"),
    ({"checks": []}, None, "'claim' must be a sentence or a mapping with 'text'"),
    ({"text": "t", "why": 1}, None, "claim: unknown key 'why'"),
    ("t", "top1", "'columns' must be a list"),
    ("t", [{"metric": "top1", "definition": "mean"}], "columns[0].definition 'mean' unknown"),
    ("t", [{"name": "top1"}], "columns[0]: expected a metric name"),
])
def test_claim_and_column_mistakes_are_one_line_config_errors(tmp_path, claim, columns, message):
    with pytest.raises(ConfigError) as exc:
        _claim_suite(tmp_path, claim, columns)
    assert message in str(exc.value) and "suite.yaml" in str(exc.value) and "\n" not in str(exc.value)
