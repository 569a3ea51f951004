"""Matplotlib figures of a board (PNG): bars with ± std error bars and validation curves per comparison."""

from __future__ import annotations

import math
from pathlib import Path

from mixbench.results.aggregate import Board

MAX_PANELS = 12  # beyond this a single PNG is unreadable; the HTML page shows everything


def plot_board(board: Board, path: str | Path, curves: list[dict] | None = None, dpi: int = 110) -> Path:
    """Write one PNG: a row per comparison (dataset / backbone / epochs), bars left, curves right."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = board.panels()[:MAX_PANELS]
    by_panel: dict[str, list[dict]] = {}
    for c in curves or []:
        by_panel.setdefault(c["panel"], []).append(c)
    ncols = 2 if by_panel else 1
    nrows = max(len(panels), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 3.6 * nrows), squeeze=False)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no finished runs", ha="center", va="center")
        axes[0][0].set_axis_off()
    for (title, rows), ax_row in zip(panels, axes):
        _bars(board, title, rows, ax_row[0])
        if ncols == 2:
            _curves(board, title, by_panel.get(title, []), ax_row[1])
    fig.suptitle(f"{board.title}\n{board.header}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _bars(board: Board, title: str, rows, ax) -> None:
    """Bars from 0 to the mean (the value axis always includes 0, as in the HTML chart), ± std error bars
    clipped to the metric's range."""
    labels = [board.row_label(r) for _, r in rows.iterrows()]
    means = rows["mean"].astype(float).to_numpy()
    stds = rows["std"].astype(float).fillna(0.0).to_numpy()
    lows, highs = board.clip(means - stds), board.clip(means + stds)
    x = range(len(rows))
    ax.bar(x, means, yerr=[means - lows, highs - means], capsize=4, color=[f"C{i % 10}" for i in x],
           edgecolor="black", linewidth=0.4)
    lo = min(0.0, lows.min())
    hi = max(0.0, highs.max())
    if board.has_reference:
        refs = rows["reference"].astype(float).to_numpy()
        for i, r in zip(x, refs):
            if math.isfinite(r):
                ax.hlines(r, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1.2)
                lo, hi = min(lo, r), max(hi, r)
    pad = max((hi - lo) * 0.05, 0.5)
    ax.set_ylim(lo - pad if lo < 0 else 0.0, hi + pad if hi > 0 or lo == 0 else 0.0)
    ax.set_xticks(list(x), labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(board.metric_label)
    ref = ", dashed = reference" if board.has_reference else ""
    ax.set_title(f"{title} (mean ± std{ref})", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def _curves(board: Board, title: str, series: list[dict], ax) -> None:
    for i, s in enumerate(series):
        mean, std = s["mean"], s["std"]
        ax.plot(s["epochs"], mean, label=s["label"], color=f"C{i % 10}", linewidth=1.3)
        ax.fill_between(s["epochs"], [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                        color=f"C{i % 10}", alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"val {board.metric_label}")
    ax.set_title(f"{title}: validation curves (mean over seeds)", fontsize=9)
    if series:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
