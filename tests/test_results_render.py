"""Every board renderer, and the HTML page sorted by a click in headless Chromium; CIs clipped to the range of a
percentage, bars from 0, warnings of split groups, and no board from an empty work dir."""

import csv
import html
import io
import math
import re
import shutil
import subprocess

import pytest
from _results_fixtures import make_record, write_run

from mixbench.cli.leaderboard import main as leaderboard_main
from mixbench.errors import ConfigError
from mixbench.results.aggregate import aggregate, curves, reference_table
from mixbench.results.render import (
    FORMATS,
    latex_escape,
    parse_formats,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
    write_board,
)
from mixbench.results.store import scan
from mixbench.results.wandb_table import board_frame

HEADER = "top-1 (%), median of the last 10 epochs, mean ± std over n seeds"
# method -> per-seed values; means 73 (mixup), 61 (none), 66 (cut_mix&co, n=1); "cut_mix&co" tests escaping
VALUES = {"mixup": [70.0, 72.0, 77.0], "none": [60.0, 62.0], "cut_mix&co": [66.0]}


@pytest.fixture
def work(tmp_path):
    root = tmp_path / "work"
    for method, vals in VALUES.items():
        for seed, v in enumerate(vals):
            write_run(root, make_record(method, seed, v), curve=[v - 10, v - 4, v])
    write_run(root, make_record("fmix", 0, status="failed", error="ValueError: bad <mask>"))
    write_run(root, make_record("fmix", 1, value=float("nan")))
    (root / "broken").mkdir()
    (root / "broken" / "record.json").write_text("{")
    return root


@pytest.fixture
def board(work):
    return aggregate(scan(work), reference=reference_table([{"method": "mixup", "reference": 74.0}]),
                     title="Fixture board", reference_source="made-up fixture numbers")


def test_markdown(board):
    md = to_markdown(board)
    lines = md.splitlines()
    head = next(line for line in lines if line.startswith("| Dataset"))
    assert HEADER in head and "Reference" in head and "Δ" in head
    rows = [line for line in md.split("### Excluded")[0].splitlines() if line.startswith("| digits")]
    assert [r.split(" | ")[3] for r in rows] == ["mixup", "cut_mix&co", "none"]
    assert "**73.00 ± 3.61** | 3 | [64.04, 81.96] | 1 | 74.00 | -1.00" in rows[0]
    assert "| 66.00 | 1 | – | 2 | – | – |" in rows[1]
    failed = md.split("### Excluded runs")[1]
    assert "failed: ValueError: bad <mask>" in failed and "top1.median_last_k is NaN" in failed
    assert "broken/record.json" in md.split("### Skipped records")[1]
    assert "digits_lenet_fmix" not in md.split("### Excluded runs")[0]  # never on the board


def test_csv(board):
    rows = list(csv.DictReader(io.StringIO(to_csv(board))))
    assert [r["method"] for r in rows] == ["mixup", "cut_mix&co", "none"]
    assert rows[0]["metric"] == HEADER and float(rows[0]["mean"]) == 73.0
    assert float(rows[0]["std"]) == pytest.approx(math.sqrt(13)) and rows[0]["seeds"] == "0 1 2"
    assert float(rows[0]["diff"]) == -1.0 and rows[1]["std"] == "" and rows[2]["reference"] == ""


def test_latex(board):
    tex = to_latex(board)
    assert tex.startswith("\\begin{table}") and "\\toprule" in tex and "\\bottomrule" in tex
    assert "median of the last 10 epochs; mean $\\pm$ std over $n$ seeds" in tex
    assert "\\textbf{73.00 $\\pm$ 3.61}" in tex and "cut\\_mix\\&co" in tex
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
    assert len(body) == 3 and all(len(re.findall(r"(?<!\\)&", line)) == 9 for line in body)
    assert latex_escape("50% of $x_1$ {a}") == "50\\% of \\$x\\_1\\$ \\{a\\}"


def test_html_is_self_contained(board):
    page = to_html(board, curves(board))
    assert page.startswith("<!DOCTYPE html>") and HEADER in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # nothing fetched from a network
    assert page.count("<svg") == 2  # one bar chart panel, one curve panel
    assert "ValueError: bad &lt;mask&gt;" in page and "cut_mix&amp;co" in page
    assert page.count("<polyline") == 3  # one curve per method on the board


def test_write_board_all_formats_and_png(board, tmp_path):
    paths = write_board(board, tmp_path / "out", FORMATS)
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html",
                                       "leaderboard.png"]
    assert paths[-1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[-1].stat().st_size > 10_000
    with pytest.raises(ConfigError, match="--format: unknown 'pdf'"):
        parse_formats("md,pdf")
    assert parse_formats("all") == list(FORMATS)


def test_leaderboard_cli(work, tmp_path, capsys, caplog):
    out = tmp_path / "board"
    assert leaderboard_main([str(work), "--format", "md,csv", "--out", str(out), "--metric", "top1"]) == 0
    printed = capsys.readouterr()
    assert HEADER in printed.out and "wrote" in printed.err
    assert any(r.getMessage().startswith("skipping ") and "broken/record.json" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.csv", "leaderboard.md"]
    assert leaderboard_main([str(work), "--metric", "top9"]) == 2
    assert "no run has metric 'top9'" in capsys.readouterr().err


# 99, 100, 98 -> mean 99, s = 1, half-width t(0.975, 2) / sqrt(3) = 2.4841: the raw interval ends past 100
NEAR_100 = [99.0, 100.0, 98.0]
HALF = 4.302653 / math.sqrt(3)


@pytest.fixture
def near_100(tmp_path):
    root = tmp_path / "near100"
    for seed, v in enumerate(NEAR_100):
        write_run(root, make_record("mixup", seed, v))
    write_run(root, make_record("none", 0, 60.0))
    write_run(root, make_record("none", 1, 100.0))  # mean 80, s = 28.28: the ± std bar would reach 108
    return aggregate(scan(root))


def test_ci_of_a_percentage_is_clipped_where_shown(near_100):
    raw = near_100.table.iloc[0]
    assert raw["ci_high"] == pytest.approx(99.0 + HALF, abs=1e-4) and raw["ci_high"] > 100  # data stays raw
    shown = f"[{99.0 - HALF:.2f}, 100.00]"
    assert f"| 3 | {shown} |" in to_markdown(near_100) and "CIs clipped to [0, 100]" in to_markdown(near_100)
    assert f">{shown}</td>" in to_html(near_100)
    assert f"& 3 & {shown} &" in to_latex(near_100) and "clipped to [0, 100]" in to_latex(near_100)
    rows = list(csv.DictReader(io.StringIO(to_csv(near_100))))
    assert float(rows[0]["ci_high"]) == 100.0 and float(rows[0]["ci_low"]) == pytest.approx(99.0 - HALF)
    assert float(rows[0]["ci95"]) == pytest.approx(HALF, abs=1e-4)  # the raw half-width
    assert float(rows[1]["ci_low"]) == 0.0 and float(rows[1]["ci_high"]) == 100.0  # 80 ± 254 shown as [0, 100]
    frame = board_frame(near_100)  # the wandb Table shows the same interval
    assert frame["ci_high"].tolist() == [100.0, 100.0] and frame["ci_low"].tolist()[1] == 0.0


def test_unbounded_metric_is_not_clipped(tmp_path):
    for seed, v in enumerate([-3.0, 1.0]):  # a signed score: no range to clip to
        rec = make_record("mixup", seed)
        rec["metrics"]["score"] = {"final": v, "best": v, "median_last_k": v, "k": 1}
        write_run(tmp_path, rec)
    board = aggregate(scan(tmp_path), metric="score")
    half = 12.7062 * 2.0 * math.sqrt(2) / math.sqrt(2)
    assert board.bounds is None and "clipped" not in to_markdown(board)
    assert f"[{-1 - half:.2f}, {-1 + half:.2f}]" in to_markdown(board)


def _svg_bars(page):
    """(bar bottom, bar top) per bar and the y of each tick label, from the board's first bar chart."""
    svg = page.split("<svg")[1]
    tick_labels = re.findall(r'<text x="\d+" y="([\d.]+)" text-anchor="end">([-\d.]+)<', svg)
    ticks = {float(t): float(y) - 4 for y, t in tick_labels}  # the label sits 4 px below its grid line
    rects = re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="\d+" height="([\d.]+)"', svg)
    bars = [(float(y) + float(h), float(y)) for y, h in rects]
    whiskers = [(float(a), float(b)) for a, b in re.findall(r'<path d="M[\d.]+ ([\d.]+)V([\d.]+)', svg)]
    return ticks, bars, whiskers


def test_html_bars_start_at_zero(near_100):
    ticks, bars, whiskers = _svg_bars(to_html(near_100))
    assert min(ticks) == 0.0 and max(ticks) == 100.0
    assert all(bottom == pytest.approx(ticks[0.0], abs=0.1) for bottom, _ in bars)
    y_per_unit = (ticks[0.0] - ticks[100.0]) / 100
    assert [round((ticks[0.0] - top) / y_per_unit, 1) for _, top in bars] == [99.0, 80.0]  # bar top = mean
    assert all(min(a, b) >= ticks[100.0] - 0.1 for a, b in whiskers)  # no error bar above 100 %


def test_png_bars_start_at_zero(near_100):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixbench.results.plots import _bars

    fig, ax = plt.subplots()
    (title, rows), = near_100.panels()
    _bars(near_100, title, rows, ax)
    assert ax.get_ylim()[0] == 0.0
    assert [p.get_y() for p in ax.patches] == [0.0, 0.0] and [p.get_height() for p in ax.patches] == [99.0, 80.0]
    errorbar = next(c for c in ax.containers if hasattr(c, "lines"))
    whisker_tops = [seg[:, 1].max() for seg in errorbar.lines[2][0].get_segments()]
    assert whisker_tops == pytest.approx([100.0, 100.0])  # 99 + 1 and 80 + 28 clipped at 100
    plt.close(fig)


def test_split_groups_are_named_in_every_format(tmp_path):
    for lr, v in ((0.1, 70.0), (0.01, 60.0)):
        write_run(tmp_path, make_record("mixup", 0, v, config={"schedule.lr": lr}))
    board = aggregate(scan(tmp_path))
    warning = "split into one row per config (column 'variant')"
    md = to_markdown(board)
    assert "> **Warning:** digits / lenet / 10 / mixup: 2 runs of 2 different configs" in md
    assert md.index(warning) < md.index("| Dataset") and "| Variant |" in md.splitlines()[6]
    assert "| mixup | schedule.lr=0.1 | **70.00** |" in md
    assert '<p class="warn">Warning: digits' in to_html(board) and html.escape(warning) in to_html(board)
    assert "mixup schedule.lr=0.01" in to_html(board)  # bar label
    assert warning in to_latex(board) and "schedule.lr=0.01" in to_latex(board)
    assert [r["variant"] for r in csv.DictReader(io.StringIO(to_csv(board)))] == ["schedule.lr=0.1", "schedule.lr=0.01"]


def test_empty_work_dir_warns_and_fails(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "board"
    assert leaderboard_main([str(tmp_path / "empty"), "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert printed.out == "" and f"warning: no run records under {tmp_path / 'empty'}" in printed.err
    assert not out.exists()


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("clicks, expected", [(1, ["none", "cut_mix&co", "mixup"]),
                                              (2, ["mixup", "cut_mix&co", "none"])])
def test_html_sort_by_click_in_chromium(board, tmp_path, clicks, expected):
    # Click the metric header in a real browser (once: ascending, twice: descending) and read the DOM back.
    click = "var th=document.querySelector('th[data-key=mean]');" + "th.click();" * clicks
    page = to_html(board).replace("</body>", f"<script>{click}</script></body>")
    html_path = tmp_path / "board.html"
    html_path.write_text(page, encoding="utf-8")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html_path.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout
    body = dom.split('id="board"')[1].split("</tbody>")[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>")[1])
    methods = [re.findall(r'data-sort="([^"]*)"', row)[3] for row in rows]  # 4th column: method
    assert [m.replace("&amp;", "&") for m in methods] == expected
    assert ('aria-sort="ascending"' if clicks == 1 else 'aria-sort="descending"') in dom
