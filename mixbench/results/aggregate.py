"""Aggregate runs into a leaderboard (docs/architecture.md, "Leaderboards").

Runs are grouped by (dataset, backbone, epochs, method) plus any parameters the user names; each group
reports mean ± sample std over its seeds, n, a 95% confidence interval of the mean from the t-distribution
(half-width ``t(0.975, n-1) · s / √n``), and its rank among the methods compared under the same
(dataset, backbone, epochs). Failed, unfinished and NaN runs never enter the table; they are listed in
:attr:`Board.excluded` with the reason.

A row must hold one experiment over several seeds. When the runs of a group have different config hashes
(a learning rate, a method parameter or any other hashed key that ``by`` does not name), the group is split:
each config gets its own row, told apart by a ``variant`` column that names the differing keys
(``schedule.lr=0.1``), and :attr:`Board.warnings` says which group was split and why. Two records of the
same config and seed (a run copied into two scanned work dirs) count once: the one that finished last stays
on the board, the others are listed as excluded duplicates.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from mixbench.errors import ConfigError
from mixbench.results.record import METRIC_DEFS, OPTIONAL_METRIC_DEFS
from mixbench.results.store import Store, read_curve

log = logging.getLogger("mixbench.results")

DEFAULT_BY = ("dataset", "backbone", "epochs", "method")
# The column that tells apart runs of one group whose configs differ in keys ``by`` does not name.
VARIANT = "variant"
# Keys that name *what is compared*; the rest of ``by`` names the setting a comparison happens in.
_CONTENDER_KEYS = ("method", "method_params", "label", VARIANT)
METRIC_LABELS = {"top1": "top-1", "top5": "top-5", "loss": "loss"}


def percent_metric(metric: str) -> bool:
    """Metrics stored as fractions in records (top-k accuracies, ECEs: unit ``fraction``) are shown in percent."""
    from mixbench.evaluation.specs import metric_spec

    spec = metric_spec(metric)
    return spec is not None and spec.unit == "fraction"


_DEF_TEXT = {"final": "final epoch", "best": "best epoch", "median_last_k": "median of the last {k} epochs",
             "selected": "at the epoch selected on the held-out split"}


def metric_direction(runs: pd.DataFrame, metric: str) -> bool:
    """Whether higher is better for ``metric``: the direction the records store, else the metric's spec;
    records from before directions existed hold only top-k accuracies (higher is better)."""
    from mixbench.evaluation.specs import metric_spec

    col = f"{metric}.direction"
    stored = set(runs[col].dropna()) if col in runs else set()
    if len(stored) > 1:
        raise ConfigError(f"--metric: records disagree on the direction of '{metric}': {sorted(stored)}")
    if stored:
        return stored.pop() == "higher"
    spec = metric_spec(metric)
    return True if spec is None else spec.higher_is_better


@dataclass
class Board:
    """An aggregated leaderboard plus what was left out of it.

    Attributes:
        table: one row per group: the ``by`` columns, ``n``, ``mean``, ``std`` (sample, NaN for n=1),
            ``ci95`` (half-width), ``ci_low``, ``ci_high``, ``rank``, ``seeds``, ``runs`` (run dirs) and,
            when a reference was given, ``reference`` and ``diff`` (mean − reference).
        excluded: one row per run kept out of the table, with ``reason``.
        skipped: ``(path, reason)`` of records that could not be read.
        warnings: what the board did to keep different experiments apart (split groups, duplicates); the
            renderers show them under the header.
    """

    table: pd.DataFrame
    excluded: pd.DataFrame
    skipped: list[tuple[str, str]]
    metric: str
    definition: str
    by: list[str]
    k: str | None = None
    higher_is_better: bool = True
    title: str = "mixbench leaderboard"
    reference_source: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scale: float = 1.0  # display unit factor applied to the records' values (100 for accuracies in %)
    fmt: str = "{:.2f}"  # display format of the metric's values (its spec's)
    columns: list = field(default_factory=list)  # extra metric columns (mixbench.results.columns.Column)
    claim: object | None = None  # the tested claim and its verdict (mixbench.results.claims.ClaimResult)

    @property
    def compare_within(self) -> list[str]:
        """The ``by`` columns that define one comparison (a ranking, a chart panel)."""
        return [c for c in self.by if c not in _CONTENDER_KEYS and not c.startswith("params.")]

    @property
    def contenders(self) -> list[str]:
        return [c for c in self.by if c not in self.compare_within]

    @property
    def metric_label(self) -> str:
        from mixbench.evaluation.specs import metric_spec

        spec = metric_spec(self.metric)
        label = METRIC_LABELS.get(self.metric, spec.label if spec is not None else self.metric)
        return f"{label} (%)" if self.scale == 100.0 else label

    @property
    def definition_text(self) -> str:
        return _DEF_TEXT[self.definition].format(k=self.k or "k")

    @property
    def header(self) -> str:
        """The metric definition as it goes into every table header."""
        lower = "" if self.higher_is_better else " (lower is better)"
        return f"{self.metric_label}{lower}, {self.definition_text}, mean ± std over n seeds"

    @property
    def has_reference(self) -> bool:
        return "reference" in self.table.columns

    @property
    def has_runs(self) -> bool:
        """False when no record was found at all (nothing on the board and nothing excluded)."""
        return not (self.table.empty and self.excluded.empty)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The range the shown metric can take: [0, 100] for accuracies in percent, else unbounded."""
        return (0.0, 100.0) if self.scale == 100.0 else None

    def clip(self, values):
        """``values`` clipped to :attr:`bounds`, unchanged for an unbounded metric. Renderers clip what they
        show (the t-interval of a mean near 100 % reaches past 100, which no accuracy can); ``table`` keeps
        the raw numbers."""
        return np.clip(values, *self.bounds) if self.bounds else values

    def shown_ci(self) -> pd.DataFrame:
        """``ci_low`` and ``ci_high`` as every renderer shows them (clipped, see :meth:`clip`)."""
        return self.clip(self.table[["ci_low", "ci_high"]].astype(float))

    def row_label(self, row: Mapping) -> str:
        """What a row compares (method and named params), for legends and bar labels."""
        parts = []
        for c in self.contenders:
            v = row[c]
            if c == VARIANT and not v:
                continue
            if c.startswith("params."):
                parts.append(f"{c[7:]}={_fmt_key(v)}")
            else:
                parts.append(_fmt_key(v))
        return " ".join(parts) or "all"

    def panel_key(self, row: Mapping) -> str:
        """The setting a row belongs to (dataset / backbone / epochs), for chart panel titles."""
        parts = []
        for c in self.compare_within:
            v = _fmt_key(row[c])
            parts.append(f"{v} ep" if c == "epochs" else v)
        return " / ".join(parts) or self.title

    def panels(self) -> list[tuple[str, pd.DataFrame]]:
        """``(panel title, rows)`` per comparison, rows in rank order."""
        if self.table.empty:
            return []
        keys = self.table.apply(self.panel_key, axis=1)
        return [(k, self.table[keys == k]) for k in dict.fromkeys(keys)]


def _fmt_key(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def resolve_by(by: Sequence[str] | None, runs: pd.DataFrame) -> list[str]:
    """Expand user grouping keys: a bare method-param name ``alpha`` means column ``params.alpha``;
    ``params`` means all method params (their canonical JSON)."""
    out = []
    for key in by or DEFAULT_BY:
        key = key.strip()
        if not key:
            continue
        if key == "params":
            key = "method_params"
        elif key not in runs.columns and f"params.{key}" in runs.columns:
            key = f"params.{key}"
        elif key not in runs.columns and not runs.empty:
            valid = [c for c in runs.columns if not c.startswith(("time.", "memory.", "env."))]
            raise ConfigError(f"--by: unknown key '{key}'; valid: {', '.join(valid[:25])}")
        if key not in out:
            out.append(key)
    return out


def t_quantile(df: np.ndarray | float, q: float = 0.975) -> np.ndarray:
    """Quantile of Student's t with ``df`` degrees of freedom (NaN where df < 1)."""
    from scipy.special import stdtrit  # scipy comes with scikit-learn; imported here to keep imports light

    df = np.asarray(df, dtype=float)
    out = np.full(df.shape, np.nan)
    ok = df >= 1
    out[ok] = stdtrit(df[ok], q)
    return out


def _exclusion_reasons(runs: pd.DataFrame, col: str) -> pd.Series:
    """Why each run stays out of the board ('' = it enters); the status outranks the metric value."""
    reasons = pd.Series("", index=runs.index, dtype=object)
    if col in runs.columns:
        values = runs[col].astype(float)
        reasons[values.isna()] = f"{col} is NaN or missing"
        reasons[np.isinf(values)] = f"{col} is infinite"
    else:
        reasons[:] = f"no metric {col}"
    reasons[runs["status"] == "running"] = "unfinished (status running)"
    failed = runs["status"] == "failed"
    if failed.any():
        first_line = runs.loc[failed, "error"].fillna("").astype(str).str.strip().str.split("\n").str[0]
        reasons[failed] = "failed: " + first_line
    return reasons


def aggregate(
    source: Store | pd.DataFrame,
    *,
    metric: str = "top1",
    definition: str = "median_last_k",
    by: Sequence[str] | None = None,
    reference: pd.DataFrame | None = None,
    higher_is_better: bool | None = None,
    title: str = "mixbench leaderboard",
    reference_source: str | None = None,
) -> Board:
    """Group runs and compute mean, std, n, 95% CI and rank of one metric.

    Args:
        source: a :class:`Store` or its ``runs`` table.
        metric: metric name in the records (``top1``).
        definition: one of ``final``, ``best``, ``median_last_k``.
        by: grouping keys (default dataset, backbone, epochs, method); bare param names allowed.
        reference: published numbers: a table with some of the ``by`` columns plus ``reference``; rows
            are matched on the shared columns and get ``reference`` and ``diff`` columns.
        higher_is_better: rank direction; ``None`` (default): the direction the records store for the metric.
        title / reference_source: carried to the renderers.
    """
    from mixbench.evaluation.specs import metric_spec

    if definition not in METRIC_DEFS + OPTIONAL_METRIC_DEFS:
        raise ConfigError(f"--definition: unknown '{definition}'; valid: "
                          f"{', '.join(METRIC_DEFS + OPTIONAL_METRIC_DEFS)}")
    store = source if isinstance(source, Store) else Store(runs=source)
    runs = store.runs
    by = resolve_by(by, runs)
    col = f"{metric}.{definition}"
    if not runs.empty and metric not in store.metric_names() and (runs["status"] == "finished").any():
        raise ConfigError(f"--metric: no run has metric '{metric}'; found: {', '.join(store.metric_names())}")

    if higher_is_better is None:
        higher_is_better = metric_direction(runs, metric)
    reasons = _exclusion_reasons(runs, col) if not runs.empty else pd.Series(dtype=object)
    keep = reasons == ""
    good = runs[keep] if not runs.empty else runs
    excluded_cols = [c for c in ("path", "run_id", "experiment", "method", "seed", "status") if c in runs]
    excluded = runs.loc[~keep, excluded_cols].assign(reason=reasons[~keep]) if not runs.empty else (
        pd.DataFrame(columns=[*excluded_cols, "reason"]))

    good, by, warnings, duplicates = separate_experiments(good, by)
    if len(duplicates):
        duplicates = duplicates[[*excluded_cols, "reason"]]
        excluded = pd.concat([excluded, duplicates]) if len(excluded) else duplicates
    for w in warnings:
        log.warning("%s", w)
    scale = 100.0 if percent_metric(metric) else 1.0
    table = _group_stats(good, by, col, scale)
    spec = metric_spec(metric)
    k = _k_text(good, metric) if definition == "median_last_k" else None
    board = Board(table=table, excluded=excluded.reset_index(drop=True), skipped=list(store.skipped),
                  metric=metric, definition=definition, by=by, k=k, higher_is_better=higher_is_better,
                  title=title, reference_source=reference_source, warnings=warnings, scale=scale,
                  fmt=spec.fmt if spec is not None else "{:.2f}")
    if reference is not None and not table.empty:
        board.table = _merge_reference(board.table, reference)
    board.table = _rank(board)
    return board


def separate_experiments(runs: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, list[str], list[str],
                                                                       pd.DataFrame]:
    """Keep each board row to one experiment: split groups that mix configs, count each seed once.

    Returns ``(runs, by, warnings, duplicates)``: ``runs`` with a ``variant`` column (and ``by`` with
    ``variant`` appended) when some group held several configs, and ``duplicates``, the runs left out
    because another record of the same experiment and seed finished later (with a ``reason``).
    """
    warnings: list[str] = []
    duplicates = runs.iloc[:0].assign(reason=pd.Series(dtype=object))
    if runs.empty:
        return runs, by, warnings, duplicates
    runs = runs.assign(**{VARIANT: ""})
    # Only the groups holding several config hashes are looked at (and their config.yaml files read).
    hashes = runs.groupby(by, dropna=False, sort=False)["config_hash"].transform("nunique")
    for group, frame in runs[hashes > 1].groupby(by, dropna=False, sort=True):
        variants, differing = _variants(frame)
        if differing is None:  # identical configs under the current hash rules: one experiment
            continue
        runs.loc[frame.index, VARIANT] = variants
        name = " / ".join(_fmt_key(v) for v in (group if isinstance(group, tuple) else (group,)))
        warnings.append(f"{name}: {len(frame)} runs of {variants.nunique()} different configs (they differ in "
                        f"{differing}); split into one row per config (column '{VARIANT}').")
    if warnings:
        by = [*by, VARIANT]
    else:
        runs = runs.drop(columns=VARIANT)
    # One experiment, one seed twice (a run dir copied into a second scanned work dir): it counts once.
    same = [*by, "seed"]
    repeated = runs[runs.duplicated(same, keep=False)]
    if repeated.empty:
        return runs, by, warnings, duplicates
    if "finished" in repeated.columns:
        repeated = repeated.sort_values("finished", na_position="first", kind="stable")
    dropped = []
    for _, frame in repeated.groupby(same, dropna=False, sort=False):
        kept = frame["path"].iloc[-1]
        for i, path in frame["path"].iloc[:-1].items():
            dropped.append((i, f"duplicate of {kept} (same config and seed)"))
            warnings.append(f"{path}: same config and seed as {kept}; the seed counts once.")
    index = [i for i, _ in dropped]
    duplicates = runs.loc[index].assign(reason=[r for _, r in dropped])
    return runs.drop(index=index), by, warnings, duplicates


def _variants(frame: pd.DataFrame) -> tuple[pd.Series, str | None]:
    """Per run, the config keys whose values differ within ``frame`` (``"schedule.lr=0.1"``), and those
    keys as one phrase; ``(…, None)`` when the configs do not differ. A run whose ``config.yaml`` cannot be
    read is told apart by its config hash."""
    configs = {i: _flat_config(path) for i, path in frame["path"].items()}
    if any(c is None for c in configs.values()):
        return "config " + frame["config_hash"].astype(str), "config hash (a config.yaml is unreadable)"
    keys = sorted(set().union(*configs.values()))
    missing = object()
    differ = [k for k in keys if len({_fmt_value(c.get(k, missing)) for c in configs.values()}) > 1]
    if not differ:
        return pd.Series("", index=frame.index), None
    text = pd.Series({i: ", ".join(f"{k}={_fmt_value(c.get(k))}" for k in differ) for i, c in configs.items()})
    return text, ", ".join(differ)


def _flat_config(run_dir: str) -> dict | None:
    """The hashed keys of a run's resolved ``config.yaml`` as ``{"schedule.lr": 0.1, ...}``."""
    # what the config hash covers, the same view the run dir's name comes from
    from mixbench.config.validate import semantic_view

    try:
        with open(f"{run_dir}/config.yaml", encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict):
        return None
    out: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(semantic_view(cfg), "")
    return out


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _group_stats(good: pd.DataFrame, by: list[str], col: str, scale: float = 1.0) -> pd.DataFrame:
    cols = [*by, "n", "mean", "std", "ci95", "ci_low", "ci_high", "seeds", "runs"]
    if good.empty:
        return pd.DataFrame(columns=cols)
    frame = good[[*by, col, "seed", "path"]].copy()
    frame[col] = frame[col].astype(float) * scale
    grouped = frame.groupby(by, dropna=False, sort=True)
    stats = grouped[col].agg(["count", "mean", "std"]).rename(columns={"count": "n"})
    stats["seeds"] = grouped["seed"].agg(lambda s: sorted(s.tolist()))
    stats["runs"] = grouped["path"].agg(list)
    stats = stats.reset_index()
    n = stats["n"].to_numpy(dtype=float)
    half = t_quantile(n - 1) * stats["std"].to_numpy(dtype=float) / np.sqrt(n)
    stats["ci95"] = half
    stats["ci_low"] = stats["mean"] - half
    stats["ci_high"] = stats["mean"] + half
    return stats[cols]


def _k_text(good: pd.DataFrame, metric: str) -> str | None:
    kcol = f"{metric}.k"
    if kcol not in good.columns:
        return None
    ks = sorted({int(k) for k in good[kcol].dropna()})
    return "/".join(map(str, ks)) or None


def _merge_reference(table: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    # A bare method-param name in the reference means the params.<name> column, as in ``by``.
    reference = reference.rename(columns={c: f"params.{c}" for c in reference.columns
                                          if c not in table.columns and f"params.{c}" in table.columns})
    on = [c for c in reference.columns if c in table.columns and c != "reference"]
    if not on:
        raise ConfigError("reference: shares no column with the board's grouping keys")
    ref = reference[[*on, "reference"]].drop_duplicates(on)
    # Align dtypes (epochs may be int in one table and float in the other after NaN handling).
    for c in on:
        if table[c].dtype != ref[c].dtype:
            ref = ref.assign(**{c: ref[c].astype(table[c].dtype, errors="ignore")})
    out = table.merge(ref, on=on, how="left")
    out["diff"] = out["mean"] - out["reference"].astype(float)
    return out


def _rank(board: Board) -> pd.DataFrame:
    table = board.table
    if table.empty:
        return table.assign(rank=pd.Series(dtype=float))
    within = board.compare_within
    means = table["mean"]
    if within:
        ranks = table.groupby(within, dropna=False)["mean"].rank(ascending=not board.higher_is_better,
                                                                method="min")
    else:
        ranks = means.rank(ascending=not board.higher_is_better, method="min")
    table = table.assign(rank=ranks.astype(int))
    order = [*within, "rank"] if within else ["rank"]
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def curves(board: Board, max_runs_per_row: int | None = None) -> list[dict]:
    """Mean validation curve per board row, from each run's ``metrics.jsonl``.

    Returns one dict per row with ``panel``, ``label``, ``epochs``, ``mean``, ``std`` (lists); rows whose
    runs logged no curve are left out. Epochs missing in some seeds average over the seeds that have them.
    """
    out = []
    for _, row in board.table.iterrows():
        series = []
        for path in row["runs"][:max_runs_per_row]:
            ep, vals = read_curve(path, board.metric)
            if ep:
                series.append(pd.Series(vals, index=ep) * board.scale)
        if not series:
            continue
        frame = pd.concat(series, axis=1)
        out.append({
            "panel": board.panel_key(row),
            "label": board.row_label(row),
            "epochs": frame.index.tolist(),
            "mean": frame.mean(axis=1).tolist(),
            "std": frame.std(axis=1).fillna(0.0).tolist(),
        })
    return out


def reference_table(rows: Iterable[dict]) -> pd.DataFrame:
    """A reference table from dicts like ``{"label": "mixup e200", "reference": 78.52}``."""
    rows = [r for r in rows if r.get("reference") is not None]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["reference"])


def to_json_records(board: Board) -> str:
    """The board table as JSON (for wandb and machine readers)."""
    return json.dumps(board.table.drop(columns=["runs"]).to_dict(orient="records"), default=str)
