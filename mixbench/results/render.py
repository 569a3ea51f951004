"""Render a :class:`~mixbench.results.aggregate.Board` as Markdown, CSV, LaTeX or HTML.

Every format carries the metric definition in the table header ("top-1, median of the last 10 epochs,
mean ± std over n seeds") and lists the excluded (failed / NaN / unfinished) runs apart from the board.
The HTML page lives in :mod:`mixbench.results.html`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from mixbench.errors import ConfigError
from mixbench.results.aggregate import Board

FORMATS = ("md", "csv", "latex", "html", "png")
_EXT = {"md": "md", "csv": "csv", "latex": "tex", "html": "html", "png": "png"}
_KEY_NAMES = {"dataset": "Dataset", "backbone": "Backbone", "epochs": "Epochs", "method": "Method",
              "method_params": "Params", "label": "Run", "variant": "Variant"}
CI_NOTE = "95% CI of the mean: t-distribution over seeds"
CI_CLIP_NOTE = "CIs clipped to [0, 100]"


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts: an order of magnitude cheaper than ``iterrows`` (a Series per row)."""
    return frame.to_dict("records")


def key_name(col: str) -> str:
    if col.startswith("params."):
        return col[len("params."):]
    return _KEY_NAMES.get(col, col)


def fmt(x, digits: int = 2, signed: bool = False) -> str:
    """A number for a table cell; NaN/None as an en dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "–"
    if isinstance(x, float):
        return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return str(x)


def key_cell(x) -> str:
    """A grouping-key cell: integers without decimals, params as written (0.2, not 0.20)."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, float) and math.isfinite(x):
        return f"{x:g}"
    return fmt(x)


def value_cell(row: Mapping, pm: str = "±") -> str:
    if row["n"] > 1 and not math.isnan(row["std"]):
        return f"{fmt(row['mean'])} {pm} {fmt(row['std'])}"
    return fmt(row["mean"])


def ci_cell(board: Board, row: Mapping) -> str:
    """``[low, high]`` of the 95% CI as shown: clipped to the metric's range (:meth:`Board.clip`)."""
    if math.isnan(row["ci95"]):
        return "–"
    lo, hi = board.clip([float(row["ci_low"]), float(row["ci_high"])])
    return f"[{fmt(float(lo))}, {fmt(float(hi))}]"


def ci_note(board: Board) -> str:
    """How the CI column was computed (and clipped), for every format's header."""
    return f"{CI_NOTE}, {CI_CLIP_NOTE}" if board.bounds else CI_NOTE


def display_rows(board: Board, pm: str = "±") -> tuple[list[str], list[list[str]]]:
    """Header and string cells shared by the text renderers."""
    head = [key_name(c) for c in board.by] + [board.header, "n", "95% CI", "Rank"]
    if board.has_reference:
        head += ["Reference", "Δ"]
    rows = []
    for r in records(board.table):
        cells = [key_cell(r[c]) for c in board.by] + [value_cell(r, pm), str(int(r["n"])),
                                                    ci_cell(board, r), str(int(r["rank"]))]
        if board.has_reference:
            cells += [fmt(r["reference"]), fmt(r["diff"], signed=True)]
        rows.append(cells)
    return head, rows


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(board: Board) -> str:
    """A GitHub-flavoured Markdown board (best of each comparison in bold), then excluded runs."""
    head, rows = display_rows(board)
    lines = [f"## {board.title}", "", f"Metric: {board.header}. {ci_note(board)}; rank within "
             f"{' / '.join(key_name(c) for c in board.compare_within) or 'the board'}."]
    for w in board.warnings:
        lines += ["", f"> **Warning:** {_md_escape(w)}"]
    if board.reference_source:
        lines += ["", f"Reference: {board.reference_source}"]
    lines += [""]
    lines.append("| " + " | ".join(_md_escape(h) for h in head) + " |")
    lines.append("|" + "|".join("---" if i < len(board.by) else ":-:" for i in range(len(head))) + "|")
    for cells, r in zip(rows, records(board.table)):
        if r["rank"] == 1 and len(board.table) > 1:
            cells = cells[:len(board.by)] + [f"**{cells[len(board.by)]}**"] + cells[len(board.by) + 1:]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    if board.table.empty:
        lines.append("| " + " | ".join("–" for _ in head) + " |")
    lines += _md_excluded(board)
    return "\n".join(lines) + "\n"


def _md_excluded(board: Board) -> list[str]:
    lines = []
    if len(board.excluded):
        lines += ["", "### Excluded runs (failed, NaN or unfinished; not on the board)", "",
                  "| Run | Method | Seed | Reason |", "|---|---|---|---|"]
        for r in records(board.excluded):
            lines.append(f"| {_md_escape(str(r.get('run_id', r.get('path'))))} | {_md_escape(str(r.get('method')))}"
                         f" | {key_cell(r.get('seed'))} | {_md_escape(str(r['reason']))} |")
    if board.skipped:
        lines += ["", "### Skipped records (unreadable or invalid)", ""]
        lines += [f"- `{p}`: {_md_escape(reason)}" for p, reason in board.skipped]
    for note in board.notes:
        lines += ["", note]
    return lines


def to_csv(board: Board) -> str:
    """Machine-readable board: one row per group, numbers unrounded, the metric definition in ``metric``.

    ``ci_low``/``ci_high`` are the interval as shown (clipped to [0, 100] for accuracies); ``ci95`` is the
    raw half-width, so ``mean ± ci95`` is the unclipped t-interval.
    """
    t = board.table
    out = t[board.by].copy()
    out["metric"] = board.header
    for c in ("n", "mean", "std", "ci95"):
        out[c] = t[c]
    out[["ci_low", "ci_high"]] = board.shown_ci()
    out["rank"] = t["rank"]
    if board.has_reference:
        out["reference"] = t["reference"]
        out["diff"] = t["diff"]
    out["seeds"] = t["seeds"].map(lambda s: " ".join(map(str, s)))
    buf = io.StringIO()
    out.rename(columns={c: key_name(c) if c.startswith("params.") else c for c in board.by}).to_csv(
        buf, index=False, lineterminator="\n")
    return buf.getvalue()


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "–": "--", "Δ": r"$\Delta$"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(s))


def to_latex(board: Board) -> str:
    """A booktabs ``table`` environment; best of each comparison in bold, a rule between comparisons."""
    head, rows = display_rows(board)
    head[len(board.by)] = board.metric_label
    caption = (f"{board.title}. {board.metric_label.capitalize()}, {board.definition_text}; mean ± std over "
               f"$n$ seeds; {ci_note(board)}.")
    if board.reference_source:
        caption += f" Reference: {board.reference_source}."
    caption += "".join(f" Warning: {w}" for w in board.warnings)
    align = "l" * len(board.by) + "c" * (len(head) - len(board.by))
    lines = [r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(caption).replace(
        r"\$n\$", "$n$") + "}", r"\begin{tabular}{" + align + "}", r"\toprule",
        " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
    panel_prev = None
    for cells, r in zip(rows, records(board.table)):
        panel = board.panel_key(r)
        if panel_prev is not None and panel != panel_prev:
            lines.append(r"\midrule")
        panel_prev = panel
        cells = [latex_escape(c) for c in cells]
        if r["rank"] == 1 and len(board.table) > 1:
            i = len(board.by)
            cells[i] = r"\textbf{" + cells[i] + "}"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(board: Board, curves: list[dict] | None = None) -> str:
    from mixbench.results.html import render_page

    return render_page(board, curves)


_TEXT_RENDERERS: dict[str, Callable[[Board], str]] = {"md": to_markdown, "csv": to_csv, "latex": to_latex}


def parse_formats(spec: str | Iterable[str]) -> list[str]:
    """``"md,csv"`` -> ``["md", "csv"]``; unknown names raise :class:`ConfigError`."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["all"]:
        return list(FORMATS)
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise ConfigError(f"--format: unknown '{bad[0]}'; valid: {', '.join(FORMATS)}, all")
    return names


def write_board(board: Board, out_dir: str | Path, formats: Iterable[str] = FORMATS, *, stem: str = "leaderboard",
                with_curves: bool = True) -> list[Path]:
    """Write the board in each format to ``out_dir/<stem>.<ext>``; returns the written paths.

    Training curves (read from each run's ``metrics.jsonl``) go into the HTML page and the PNG figure.
    """
    from mixbench.results.aggregate import curves as load_curves
    from mixbench.results.record import atomic_write_text

    out_dir = Path(out_dir)
    formats = list(formats)
    curve_data = load_curves(board) if with_curves and {"html", "png"} & set(formats) else []
    written = []
    for f in formats:
        path = out_dir / f"{stem}.{_EXT[f]}"
        if f == "html":
            atomic_write_text(path, to_html(board, curve_data))
        elif f == "png":
            from mixbench.results.plots import plot_board

            plot_board(board, path, curve_data)
        else:
            atomic_write_text(path, _TEXT_RENDERERS[f](board))
        written.append(path)
    return written
