"""The self-contained HTML leaderboard: sortable table, bar chart with error bars, training curves.

One file, no network: styles and the sorting script are inline and the charts are inline SVG drawn here,
so the page opens from disk, from a CI artifact or from an e-mail attachment the same way.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from mixbench.results.aggregate import Board
from mixbench.results.render import (
    VERDICT_RULE,
    ci_cell,
    ci_note,
    claim_header,
    claim_rows,
    fmt,
    key_cell,
    key_name,
    records,
    value_cell,
)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
td.num,th.num{text-align:right;white-space:nowrap}
th.sortable{cursor:pointer;user-select:none;background:#f4f4f4}
th.sortable:hover{background:#e8e8e8}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.best td{font-weight:600}
.note{color:#555}.claim{background:#eef4ff;padding:4px 8px}.warn{color:#8a4b00;background:#fff4e0;padding:4px 8px}.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0}figcaption{font-size:13px;color:#444}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""

# Sorting: click a header, rows reorder by the cell's data-sort (numbers numerically, empty last);
# clicking again reverses. Kept tiny and dependency-free on purpose.
_SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');var x=parseFloat(v);
    return (v!==null&&v!==''&&!isNaN(x)&&isFinite(v))?{n:true,v:x}:{n:false,v:(v===null?td.textContent:v)};}
  function cmp(a,b){if(a.v===''&&b.v!=='')return 1;if(b.v===''&&a.v!=='')return -1;
    if(a.n&&b.n)return a.v-b.v;return String(a.v).localeCompare(String(b.v),undefined,{numeric:true});}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths=table.querySelectorAll('thead th');
    ths.forEach(function(th,i){th.classList.add('sortable');th.addEventListener('click',function(){
      var dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
      ths.forEach(function(o){o.removeAttribute('aria-sort');});th.setAttribute('aria-sort',dir);
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(r1,r2){var c=cmp(key(r1.cells[i]),key(r2.cells[i]));
        return dir==='ascending'?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});});});});
})();
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _td(text: str, sort=None, num: bool = False) -> str:
    sort = text if sort is None else sort
    if isinstance(sort, float) and not math.isfinite(sort):
        sort = ""
    cls = ' class="num"' if num else ""
    return f'<td{cls} data-sort="{_e(sort)}">{_e(text)}</td>'


def board_table(board: Board) -> str:
    heads = [(key_name(c), c, c == "epochs") for c in board.by]
    heads += [(board.header, "mean", True), ("n", "n", True), ("95% CI", "ci95", True), ("Rank", "rank", True)]
    heads += [(c.header, c.key("mean"), True) for c in board.columns]
    if board.has_reference:
        heads += [("Reference", "reference", True), ("Δ", "diff", True)]
    th = "".join(f'<th data-key="{_e(k)}"{" class=num" if num else ""} scope="col">{_e(h)}</th>'
                 for h, k, num in heads)
    body = []
    for r in records(board.table):
        cells = [_td(key_cell(r[c]), num=c == "epochs") for c in board.by]
        cells += [_td(value_cell(r, number=board.fmt), r["mean"], True), _td(str(int(r["n"])), int(r["n"]), True),
                  _td(ci_cell(board, r), r["ci95"], True), _td(str(int(r["rank"])), int(r["rank"]), True)]
        cells += [_td(value_cell(r, number=c.fmt, prefix=c.key("")), float(r[c.key("mean")]), True)
                  for c in board.columns]
        if board.has_reference:
            cells += [_td(fmt(r["reference"], board.fmt), float(r["reference"]), True),
                      _td(fmt(r["diff"], board.fmt, signed=True), float(r["diff"]), True)]
        cls = ' class="best"' if r["rank"] == 1 and len(board.table) > 1 else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (f'<table class="sortable" id="board"><thead><tr>{th}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 10))
        t += step
    return ticks


def bar_chart(board: Board, title: str, rows: pd.DataFrame) -> str:
    """SVG bars of the mean with ± std error bars (and reference ticks when the board has them).

    The value axis always includes 0 and bars grow from it, so bar lengths compare as the values do.
    """
    means = rows["mean"].astype(float).tolist()
    stds = rows["std"].astype(float).fillna(0.0).tolist()
    refs = rows["reference"].astype(float).tolist() if board.has_reference else [math.nan] * len(rows)
    # error bars end inside the metric's range (no accuracy reaches past 100 %)
    lows = [float(v) for v in board.clip([m - s for m, s in zip(means, stds)])]
    highs = [float(v) for v in board.clip([m + s for m, s in zip(means, stds)])]
    values = [0.0, *lows, *highs, *(r for r in refs if math.isfinite(r))]
    ticks = _nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    bw, gap, left, top, bottom = 34, 14, 48, 24, 70
    width = left + len(rows) * (bw + gap) + gap
    height = 300

    def y(v):
        return top + (hi - v) / (hi - lo or 1) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}">']
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for i, (r, m, s, e0, e1, ref) in enumerate(zip(records(rows), means, stds, lows, highs, refs)):
        x = left + gap + i * (bw + gap)
        color = PALETTE[i % len(PALETTE)]
        label = board.row_label(r)
        parts.append(f'<rect x="{x}" y="{min(y(m), y(0)):.1f}" width="{bw}" height="{abs(y(0) - y(m)):.1f}" '
                     f'fill="{color}"><title>{_e(label)}: {_e(value_cell(r))} (n={int(r["n"])})</title></rect>')
        if s > 0:
            cx = x + bw / 2
            parts.append(f'<path d="M{cx:.1f} {y(e0):.1f}V{y(e1):.1f}M{cx - 6:.1f} {y(e0):.1f}'
                         f'h12M{cx - 6:.1f} {y(e1):.1f}h12" stroke="#000" stroke-width="1.2"/>')
        if math.isfinite(ref):
            parts.append(f'<path d="M{x - 3} {y(ref):.1f}h{bw + 6}" stroke="#000" stroke-dasharray="3 2"'
                         f' stroke-width="1.5"><title>reference {ref:g}</title></path>')
        tx, ty = x + bw / 2, height - bottom + 12
        parts.append(f'<text x="{tx:.1f}" y="{ty}" transform="rotate(40 {tx:.1f} {ty})">{_e(label)}</text>')
    parts.append("</svg>")
    ref_note = "; dashed: reference" if board.has_reference else ""
    return (f"<figure>{''.join(parts)}<figcaption>{_e(title)}: {_e(board.metric_label)}, "
            f"{_e(board.definition_text)}; bars from 0 to the mean, error bars ± std{ref_note}</figcaption></figure>")


def curve_chart(board: Board, title: str, series: list[dict]) -> str:
    """SVG validation curves, one line per row (mean over seeds) with a ± std band."""
    xs = [x for s in series for x in s["epochs"]]
    ys = [v for s in series for m, sd in zip(s["mean"], s["std"]) for v in (m - sd, m + sd)]
    if not xs:
        return ""
    yt = _nice_ticks(min(ys), max(ys))
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    left, top, w, h = 48, 16, 460, 240

    def px(x):
        return left + (x - x0) / (x1 - x0) * w

    def py(v):
        return top + (yt[-1] - v) / (yt[-1] - yt[0] or 1) * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + w + 150}" height="{top + h + 36}" '
             f'role="img" aria-label="curves {_e(title)}">']
    for t in yt:
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in _nice_ticks(x0, x1):
        if x0 <= t <= x1:
            parts.append(f'<text x="{px(t):.1f}" y="{top + h + 16}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{top + h + 32}" text-anchor="middle">epoch</text>')
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        upper = [f"{px(x):.1f},{py(m + sd):.1f}" for x, m, sd in zip(s["epochs"], s["mean"], s["std"])]
        lower = [f"{px(x):.1f},{py(m - sd):.1f}" for x, m, sd in zip(s["epochs"], s["mean"], s["std"])]
        parts.append(f'<polygon points="{" ".join(upper + lower[::-1])}" fill="{color}" opacity="0.15"/>')
        line = " ".join(f"{px(x):.1f},{py(m):.1f}" for x, m in zip(s["epochs"], s["mean"]))
        parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="1.6">'
                     f'<title>{_e(s["label"])}</title></polyline>')
        parts.append(f'<rect x="{left + w + 12}" y="{top + i * 16}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + w + 26}" y="{top + i * 16 + 9}">{_e(s["label"])}</text>')
    parts.append("</svg>")
    return (f"<figure>{''.join(parts)}<figcaption>{_e(title)}: validation {_e(board.metric_label)} per epoch, "
            f"mean over seeds ± std</figcaption></figure>")


def excluded_section(board: Board) -> str:
    out = []
    if len(board.excluded):
        rows = "".join(f"<tr><td>{_e(r.get('run_id', r.get('path')))}</td><td>{_e(r.get('method'))}</td>"
                       f"<td>{_e(key_cell(r.get('seed')))}</td><td>{_e(r['reason'])}</td></tr>"
                       for r in records(board.excluded))
        out.append('<h2>Excluded runs (failed, NaN or unfinished; not on the board)</h2><table id="excluded">'
                   f"<thead><tr><th>Run</th><th>Method</th><th>Seed</th><th>Reason</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    if board.skipped:
        items = "".join(f"<li><code>{_e(p)}</code>: {_e(r)}</li>" for p, r in board.skipped)
        out.append(f"<h2>Skipped records (unreadable or invalid)</h2><ul>{items}</ul>")
    return "".join(out)


def claim_section(board: Board) -> tuple[str, str]:
    """The claim and its verdict (for the top of the page) and the table of its checks (below the board)."""
    if claim_header(board) is None:
        return "", ""
    text, summary = claim_header(board)
    top = f'<p class="claim"><b>Claim tested:</b> {_e(text)}</p><p class="claim"><b>Verdict: {_e(summary)}.</b></p>'
    head, rows = claim_rows(board)
    if not rows:
        return top, ""
    th = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    return top, (f'<h2>Claim checks</h2><p class="note">{_e(VERDICT_RULE)}</p>'
                 f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>")


def render_page(board: Board, curves: list[dict] | None = None) -> str:
    """The whole page as one string."""
    charts = "".join(bar_chart(board, title, rows) for title, rows in board.panels())
    curve_html = ""
    if curves:
        by_panel: dict[str, list[dict]] = {}
        for c in curves:
            by_panel.setdefault(c["panel"], []).append(c)
        curve_html = "<h2>Training curves</h2><div class=charts>" + "".join(
            curve_chart(board, p, s) for p, s in by_panel.items()) + "</div>"
    ref = f'<p class="note">Reference: {_e(board.reference_source)}</p>' if board.reference_source else ""
    warn = "".join(f'<p class="warn">Warning: {_e(w)}</p>' for w in board.warnings)
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in board.notes)
    within = " / ".join(key_name(c) for c in board.compare_within) or "the board"
    claim_top, checks = claim_section(board)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{_e(board.title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>{_e(board.title)}</h1>"
        f'<p class="note">Metric: {_e(board.header)}. {_e(ci_note(board))}; rank within {_e(within)}. '
        "Click a column header to sort.</p>"
        f"{warn}{claim_top}{ref}{board_table(board)}{checks}"
        f"<h2>{_e(board.metric_label.capitalize())} by method</h2><div class=charts>{charts}</div>"
        f"{curve_html}{excluded_section(board)}{notes}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
