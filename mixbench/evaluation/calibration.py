"""Calibration of a classifier's confidences, before and after temperature scaling.

Definitions (``n_bins`` = 15 as in RankMixup and Chidambaram & Ge 2024; p = softmax(logits), conf = max_k p_k):

* **ECE** (Guo et al. 2017): Σ_b |B_b|/N · |acc(B_b) − conf(B_b)| over equal-width bins (lo, hi] of conf;
* **AdaECE** (Nguyen & O'Connor 2015; Mukhoti et al. 2020): the same over equal-mass bins, i.e. the sorted
  confidences cut into ``n_bins`` runs of (almost) equal size;
* **classwise ECE** (Kull et al. 2019): per class k, Σ_b |B_kb|/N · |freq_k(B_kb) − mean p_k(B_kb)| with
  equal-width bins of p_k over all samples; averaged over the classes;
* **MCE**: max over non-empty equal-width bins of |acc − conf|;
* **NLL**: mean −log p_y; **Brier**: mean over samples of Σ_k (p_k − 1[k = y])².

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 fitted by LBFGS on the NLL of a
held-out split (``data.holdout``); the ``_ts`` keys are the same metrics on logits / T. Without a held-out
split only the pre-scaling keys are reported.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.evaluation.specs import MetricSpec, SpecMetric
from mixbench.registry import METRICS

N_BINS = 15
_BASE = {
    "ece": MetricSpec("lower", "fraction", "{:.2f}", "ECE"),
    "adaece": MetricSpec("lower", "fraction", "{:.2f}", "AdaECE"),
    "cw_ece": MetricSpec("lower", "fraction", "{:.2f}", "classwise ECE"),
    "mce": MetricSpec("lower", "fraction", "{:.2f}", "MCE"),
    "nll": MetricSpec("lower", "nats", "{:.4f}", "NLL"),
    "brier": MetricSpec("lower", "squared error", "{:.4f}", "Brier"),
}
CALIBRATION_KEYS = tuple(_BASE)


def width_bins(values: Tensor, n_bins: int = N_BINS) -> Tensor:
    """Equal-width bin index of values in [0, 1]: bin b holds (b/n, (b+1)/n], and 0 goes to bin 0."""
    return (torch.ceil(values * n_bins) - 1).clamp(0, n_bins - 1).long()


def mass_bins(values: Tensor, n_bins: int = N_BINS) -> Tensor:
    """Equal-mass bin index: the values sorted and cut into ``n_bins`` runs of sizes differing by at most one."""
    order = torch.argsort(values, stable=True)
    out = torch.empty_like(order)
    for b, part in enumerate(torch.tensor_split(order, n_bins)):
        out[part] = b
    return out


def binned_gaps(conf: Tensor, hit: Tensor, bins: Tensor, n_bins: int) -> tuple[Tensor, Tensor]:
    """Per bin: the share of samples |B|/N and the gap |mean(hit) − mean(conf)| (0 for empty bins)."""
    count = torch.bincount(bins, minlength=n_bins).double()
    s_conf = torch.bincount(bins, weights=conf.double(), minlength=n_bins)
    s_hit = torch.bincount(bins, weights=hit.double(), minlength=n_bins)
    gap = (s_hit - s_conf).abs() / count.clamp_min(1)
    return count / conf.numel(), gap


def calibration_metrics(logits: Tensor, labels: Tensor, n_bins: int = N_BINS) -> dict[str, float]:
    """ECE, AdaECE, classwise ECE, MCE, NLL and Brier of (N, K) logits against (N,) class labels."""
    logits, labels = logits.double(), labels.long()
    p = F.softmax(logits, dim=1)
    conf, pred = p.max(1)
    hit = (pred == labels).double()
    share, gap = binned_gaps(conf, hit, width_bins(conf, n_bins), n_bins)
    a_share, a_gap = binned_gaps(conf, hit, mass_bins(conf, n_bins), n_bins)
    onehot = F.one_hot(labels, p.shape[1]).double()
    cw = []
    for k in range(p.shape[1]):
        k_share, k_gap = binned_gaps(p[:, k], onehot[:, k], width_bins(p[:, k], n_bins), n_bins)
        cw.append((k_share * k_gap).sum())
    return {
        "ece": float((share * gap).sum()),
        "adaece": float((a_share * a_gap).sum()),
        "cw_ece": float(torch.stack(cw).mean()),
        "mce": float(gap[share > 0].max()),
        "nll": float(F.cross_entropy(logits, labels)),
        "brier": float(((p - onehot) ** 2).sum(1).mean()),
    }


def reliability_bins(logits: Tensor, labels: Tensor, n_bins: int = N_BINS) -> dict[str, Tensor]:
    """Per equal-width confidence bin: ``count``, mean ``confidence`` and ``accuracy`` (NaN for empty bins)."""
    p = F.softmax(logits.double(), dim=1)
    conf, pred = p.max(1)
    bins = width_bins(conf, n_bins)
    count = torch.bincount(bins, minlength=n_bins).double()

    def mean(values: Tensor) -> Tensor:  # NaN for empty bins (0 / 0)
        return torch.bincount(bins, weights=values, minlength=n_bins) / count

    return {"count": count, "confidence": mean(conf), "accuracy": mean((pred == labels.long()).double())}


def draw_reliability(logits: Tensor, labels: Tensor, path: str, title: str = "",
                     temperature: float | None = None) -> None:
    """Reliability diagram (accuracy per confidence bin against the diagonal, with the ECE) as a PNG; with a
    ``temperature``, the scaled model's bins are drawn next to the raw ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = torch.linspace(0, 1, N_BINS + 1)
    width = float(edges[1] - edges[0])
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=120)
    curves = [("raw", logits, "tab:blue")]
    if temperature is not None:
        curves.append((f"T = {temperature:.2f}", logits / temperature, "tab:orange"))
    bar = width / len(curves)  # side by side within each bin
    for k, (name, z, color) in enumerate(curves):
        b = reliability_bins(z, labels)
        ece = calibration_metrics(z, labels)["ece"]
        ax.bar((edges[:-1] + bar * (k + 0.5)).numpy(), torch.nan_to_num(b["accuracy"]).numpy(), width=bar,
               color=color, alpha=0.75, label=f"{name}: ECE {100 * ece:.2f}%")
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title or "reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100) -> float:
    """The T > 0 minimising NLL(softmax(logits / T), labels), by LBFGS on log T (init T = 1)."""
    z, y = logits.detach().double(), labels.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp())


def gather_outputs(outputs: Sequence[dict]) -> tuple[Tensor, Tensor]:
    """Concatenated logits and labels of predict-mode outputs (on the CPU)."""
    logits = torch.cat([o["logits"].float().cpu() for o in outputs])
    labels = torch.cat([o["labels"].cpu() for o in outputs])
    return logits, labels


@METRICS.register_module("calibration")
class Calibration(SpecMetric):
    """ECE, AdaECE, classwise ECE, MCE, NLL, Brier; with a held-out split also each after temperature scaling.

    :attr:`temperature` is set from the held-out split before each evaluation (:meth:`fit`) and reported as
    ``temperature`` (a fitted value, not a score: it has no spec and stays out of the record's metrics);
    ``None`` means no held-out split, and only the pre-scaling keys are reported.
    """

    default_prefix = ""
    specs = {**_BASE, **{f"{k}_ts": MetricSpec(s.direction, s.unit, s.fmt, f"{s.label} (TS)") for k, s in
                         _BASE.items()}}

    def __init__(self, n_bins: int = N_BINS, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_bins = int(n_bins)
        self.temperature: float | None = None

    def fit(self, heldout: Sequence[dict]) -> float:
        """Fit :attr:`temperature` on predict-mode outputs of the held-out split; returns it."""
        self.temperature = fit_temperature(*gather_outputs(heldout))
        return self.temperature

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for out in data_samples:
            self.results.append({"logits": out["logits"].float().cpu(), "labels": out["labels"].cpu()})

    def draw(self, path: str, title: str = "") -> None:
        """Reliability diagram of the evaluated outputs (:func:`draw_reliability`)."""
        draw_reliability(*gather_outputs(self.results), path, title, self.temperature)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        logits, labels = gather_outputs(results)
        out = calibration_metrics(logits, labels, self.n_bins)
        if self.temperature is not None:
            scaled = calibration_metrics(logits / self.temperature, labels, self.n_bins)
            out.update({f"{k}_ts": v for k, v in scaled.items()}, temperature=self.temperature)
        return out
