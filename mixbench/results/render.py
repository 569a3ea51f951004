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


def fmt(x, number: str = "{:.2f}", signed: bool = False) -> str:
    """A number for a table cell in the format ``number`` (a metric spec's ``fmt``); NaN/None as an en dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "–"
    if isinstance(x, float):
        return (number.replace("{:", "{:+", 1) if signed else number).format(x)
    return str(x)


def key_cell(x) -> str:
    """A grouping-key cell: integers without decimals, params as written (0.2, not 0.20)."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, float) and math.isfinite(x):
        return f"{x:g}"
    return fmt(x)


def value_cell(row: Mapping, pm: str = "±", number: str = "{:.2f}", prefix: str = "") -> str:
    """``mean ± std`` of a row (``prefix``: the table columns of an extra metric, ``"<key>:"``)."""
    mean, std, n = (row[f"{prefix}{s}"] for s in ("mean", "std", "n"))
    if n > 1 and not math.isnan(std):
        return f"{fmt(mean, number)} {pm} {fmt(std, number)}"
    return fmt(mean, number)


def column_cells(board: Board, row: Mapping, pm: str = "±") -> list[str]:
    """The extra metric columns of a row (:mod:`mixbench.results.columns`)."""
    return [value_cell(row, pm, c.fmt, c.key("")) for c in board.columns]


def ci_cell(board: Board, row: Mapping) -> str:
    """``[low, high]`` of the 95% CI as shown: clipped to the metric's range (:meth:`Board.clip`)."""
    if math.isnan(row["ci95"]):
        return "–"
    lo, hi = board.clip([float(row["ci_low"]), float(row["ci_high"])])
    return f"[{fmt(float(lo), board.fmt)}, {fmt(float(hi), board.fmt)}]"


def ci_note(board: Board) -> str:
    """How the CI column was computed (and clipped), for every format's header."""
    return f"{CI_NOTE}, {CI_CLIP_NOTE}" if board.bounds else CI_NOTE


def display_rows(board: Board, pm: str = "±") -> tuple[list[str], list[list[str]]]:
    """Header and string cells shared by the text renderers."""
    head = [key_name(c) for c in board.by] + [board.header, "n", "95% CI", "Rank"]
    head += [c.header for c in board.columns]
    if board.has_reference:
        head += ["Reference", "Δ"]
    rows = []
    for r in records(board.table):
        cells = [key_cell(r[c]) for c in board.by] + [value_cell(r, pm, board.fmt), str(int(r["n"])),
                                                    ci_cell(board, r), str(int(r["rank"]))]
        cells += column_cells(board, r, pm)
        if board.has_reference:
            cells += [fmt(r["reference"], board.fmt), fmt(r["diff"], board.fmt, signed=True)]
        rows.append(cells)
    return head, rows


VERDICT_RULE = ("Each check compares two entries' means over their seeds: Δ is the difference, signed so that "
                "Δ > 0 favours the first entry (for ≈: first − second), with its Welch 95% t-interval; held when "
                "the interval lies beyond the margin in the claimed direction (inside ±margin for ≈), did not "
                "hold when it lies entirely on the other side, inconclusive otherwise; the claim holds when "
                "every check holds (docs/leaderboards.md).")


def claim_header(board: Board) -> tuple[str, str] | None:
    """``(claim text, verdict summary)`` of a board that tests a claim, else ``None``."""
    if board.claim is None:
        return None
    return board.claim.claim.text, board.claim.summary


def claim_rows(board: Board) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the claim's checks: each with both entries' numbers, Δ with its CI, the verdict."""
    head = ["Check", "First: mean ± std (n)", "Second: mean ± std (n)", "Δ [95% CI]", "Verdict"]
    rows = []
    for r in board.claim.results if board.claim is not None else []:
        side = [f"{name}: {fmt(m, r.fmt)}" + (f" ± {fmt(sd, r.fmt)}" if n > 1 else "") + f" ({n})"
                for name, m, sd, n in ((r.check.a, r.a_mean, r.a_std, r.a_n), (r.check.b, r.b_mean, r.b_std, r.b_n))]
        ci = f" [{fmt(r.ci_low, r.fmt, signed=True)}, {fmt(r.ci_high, r.fmt, signed=True)}]"
        rows.append([r.text, *side, fmt(r.diff, r.fmt, signed=True) + ci,
                     r.verdict + (f" ({r.reason})" if r.reason else "")])
    return head, rows


def claim_csv(board: Board) -> str:
    """The claim's checks as CSV, numbers unrounded, in the board's display units."""
    rows = [{"claim": board.claim.claim.text, "check": r.text, "kind": r.check.kind, "first": r.check.a,
             "second": r.check.b, "metric": r.metric_label, "margin": r.check.margin, "first_mean": r.a_mean,
             "first_std": r.a_std, "first_n": r.a_n, "second_mean": r.b_mean, "second_std": r.b_std,
             "second_n": r.b_n, "diff": r.diff, "ci_low": r.ci_low, "ci_high": r.ci_high, "verdict": r.verdict,
             "reason": r.reason, "claim_verdict": board.claim.verdict} for r in board.claim.results]
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(board: Board) -> str:
    """A GitHub-flavoured Markdown board (best of each comparison in bold), then excluded runs."""
    head, rows = display_rows(board)
    lines = [f"## {board.title}", "", f"Metric: {board.header}. {ci_note(board)}; rank within "
             f"{' / '.join(key_name(c) for c in board.compare_within) or 'the board'}."]
    for w in board.warnings:
        lines += ["", f"> **Warning:** {_md_escape(w)}"]
    if claim_header(board):
        text, summary = claim_header(board)
        lines += ["", f"**Claim tested:** {_md_escape(text)}", "", f"**Verdict: {_md_escape(summary)}.**"]
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
    lines += _md_checks(board)
    lines += _md_excluded(board)
    return "\n".join(lines) + "\n"


def _md_checks(board: Board) -> list[str]:
    head, rows = claim_rows(board)
    if not rows:
        return []
    lines = ["", "### Claim checks", "", VERDICT_RULE, "", "| " + " | ".join(head) + " |",
             "|---|:-:|:-:|:-:|---|"]
    return lines + ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in rows]


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
    for c in board.columns:
        for stat in ("mean", "std", "n"):
            out[c.key(stat)] = t[c.key(stat)]
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
    if claim_header(board):
        caption += " Claim tested: {} Verdict: {}.".format(*claim_header(board))
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
        if f == "csv" and claim_rows(board)[1]:
            written.append(out_dir / f"{stem}_claim.csv")
            atomic_write_text(written[-1], claim_csv(board))
    return written
