"""Regression metrics as C-Mixup reports them (Yao et al., NeurIPS 2022; ``src/algorithm.py::test``).

On (N, D) predictions ŷ and targets y:

* ``rmse`` = √mean((ŷ − y)²) and ``mae`` = mean |ŷ − y| over all N·D values;
* ``mape`` = 100 · mean |ŷ − y| / |y| over the values with y ≠ 0 (percent);
* ``r``: Pearson correlation per output d, averaged over the outputs whose targets vary (σ(y_d) ≠ 0); an output
  whose predictions are constant counts as r = 0 (no linear association);
* ``r2``: coefficient of determination 1 − SS_res/SS_tot per output, averaged (scikit-learn's ``r2_score``);
* ``worst_rmse`` (max over groups) and ``worst_r`` (min over groups) over the test groups a dataset defines
  (RC-Digits: normal and inverted colouring); a dataset without groups is one group.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from mixbench.evaluation.specs import MetricSpec, SpecMetric
from mixbench.registry import METRICS

REGRESSION_SPECS = {
    "rmse": MetricSpec("lower", "label units", "{:.4f}", "RMSE"),
    "mae": MetricSpec("lower", "label units", "{:.4f}", "MAE"),
    "mape": MetricSpec("lower", "%", "{:.2f}", "MAPE"),
    "r": MetricSpec("higher", "correlation", "{:.4f}", "Pearson r"),
    "r2": MetricSpec("higher", "fraction of variance", "{:.4f}", "R²"),
    "worst_rmse": MetricSpec("lower", "label units", "{:.4f}", "worst-group RMSE"),
    "worst_r": MetricSpec("higher", "correlation", "{:.4f}", "worst-group r"),
}


def _2d(t: Tensor) -> Tensor:
    t = t.double()
    return t.view(-1, 1) if t.dim() == 1 else t.reshape(t.shape[0], -1)


def pearson_r(pred: Tensor, target: Tensor) -> float:
    """Mean Pearson r over the outputs whose targets vary; constant predictions give r = 0."""
    p, y = _2d(pred), _2d(target)
    pc, yc = p - p.mean(0), y - y.mean(0)
    sp, sy = pc.pow(2).sum(0).sqrt(), yc.pow(2).sum(0).sqrt()
    varies = sy > 0
    if not bool(varies.any()):
        return float("nan")
    r = torch.where(sp > 0, (pc * yc).sum(0) / (sp * sy).clamp_min(1e-300), torch.zeros_like(sp))
    return float(r[varies].mean())


def r2_score(pred: Tensor, target: Tensor) -> float:
    """1 − SS_res / SS_tot per output, averaged over outputs (outputs with SS_tot = 0 excluded)."""
    p, y = _2d(pred), _2d(target)
    ss_res = (y - p).pow(2).sum(0)
    ss_tot = (y - y.mean(0)).pow(2).sum(0)
    ok = ss_tot > 0
    return float((1 - ss_res[ok] / ss_tot[ok]).mean()) if bool(ok.any()) else float("nan")


def regression_metrics(pred: Tensor, target: Tensor, groups: Tensor | None = None) -> dict[str, float]:
    """The keys of :data:`REGRESSION_SPECS` for (N, D) or (N,) predictions against targets of the same shape."""
    p, y = _2d(pred), _2d(target)
    err = p - y
    nonzero = y != 0
    out = {
        "rmse": float(err.pow(2).mean().sqrt()),
        "mae": float(err.abs().mean()),
        "mape": float(100.0 * (err.abs()[nonzero] / y.abs()[nonzero]).mean()) if bool(nonzero.any()) else float("nan"),
        "r": pearson_r(p, y),
        "r2": r2_score(p, y),
    }
    ids = torch.zeros(p.shape[0], dtype=torch.long) if groups is None else groups.long().view(-1)
    per_group = [(float(err[ids == g].pow(2).mean().sqrt()), pearson_r(p[ids == g], y[ids == g]))
                 for g in torch.unique(ids).tolist()]
    out["worst_rmse"] = max(rmse for rmse, _ in per_group)
    out["worst_r"] = min(r for _, r in per_group)
    return out


def gather_regression(outputs: Sequence[dict]) -> tuple[Tensor, Tensor, Tensor | None]:
    pred = torch.cat([o["logits"].float().cpu() for o in outputs])
    target = torch.cat([o["labels"].float().cpu() for o in outputs])
    groups = [o.get("groups") for o in outputs]
    return pred, target, None if any(g is None for g in groups) else torch.cat([g.cpu() for g in groups])


@METRICS.register_module("regression")
class RegressionMetrics(SpecMetric):
    """RMSE, MAE, MAPE, Pearson r, R², worst-group RMSE and r (see the module docstring).

    With a held-out split (:meth:`fit`), the same keys on it are reported with the ``heldout_`` prefix: the
    run's model selection reads them (C-Mixup keeps the epoch with the best validation RMSE).
    """

    default_prefix = ""
    specs = REGRESSION_SPECS

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.heldout: dict[str, float] = {}

    def fit(self, heldout: Sequence[dict]) -> dict[str, float]:
        """Metrics of the held-out split's predict-mode outputs, reported next to the test metrics."""
        self.heldout = {f"heldout_{k}": v for k, v in regression_metrics(*gather_regression(heldout)).items()}
        return self.heldout

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for out in data_samples:
            self.results.append({k: v.detach().cpu() for k, v in out.items() if isinstance(v, Tensor)})

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        return {**regression_metrics(*gather_regression(results)), **self.heldout}
