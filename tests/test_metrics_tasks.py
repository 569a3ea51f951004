"""Metrics against their definitions: calibration vs a direct numpy computation, temperature scaling on
synthetic logits, regression metrics vs scikit-learn and scipy, label noise rates and transition matrices,
the C-Mixup sampler vs its kernel formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, r2_score

from mixbench.datasets.noise import add_label_noise
from mixbench.evaluation.calibration import calibration_metrics, fit_temperature
from mixbench.evaluation.regression import regression_metrics
from mixbench.mixups.cmixup import CMixup, label_kernel


def softmax_np(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def ece_np(conf, hit, edges):
    """Σ_b |B|/N |acc − conf| over bins (lo, hi] given by ``edges`` (the first bin also holds its lower edge)."""
    total = 0.0
    gaps = []
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.any():
            gap = abs(hit[inside].mean() - conf[inside].mean())
            total += inside.mean() * gap
            gaps.append(gap)
    return total, max(gaps)


@pytest.fixture
def logits_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 4)) * 2.0
    y = rng.integers(0, 4, size=400)
    return z, y


def test_calibration_metrics_match_numpy(logits_labels):
    z, y = logits_labels
    p = softmax_np(z)
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    ece, mce = ece_np(conf, hit, np.linspace(0, 1, 16))
    order = np.argsort(conf, kind="stable")
    ada = sum(len(part) / len(conf) * abs(hit[part].mean() - conf[part].mean()) for part in np.array_split(order, 15))
    onehot = np.eye(4)[y]
    cw = np.mean([ece_np(p[:, k], onehot[:, k], np.linspace(0, 1, 16))[0] for k in range(4)])
    got = calibration_metrics(torch.tensor(z), torch.tensor(y))
    assert got["ece"] == pytest.approx(ece, abs=1e-12)
    assert got["mce"] == pytest.approx(mce, abs=1e-12)
    assert got["adaece"] == pytest.approx(ada, abs=1e-12)
    assert got["cw_ece"] == pytest.approx(cw, abs=1e-12)
    assert got["nll"] == pytest.approx(-np.log(p[np.arange(400), y]).mean(), abs=1e-12)
    assert got["brier"] == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=1e-12)


def test_ece_by_hand():
    """Two samples, both in bin (14/15, 1]: conf 0.95 and 0.97, one right: |0.5 − 0.96| = 0.46."""
    z = torch.log(torch.tensor([[0.95, 0.05], [0.97, 0.03]]))
    got = calibration_metrics(z, torch.tensor([0, 1]))
    assert got["ece"] == pytest.approx(0.46) and got["mce"] == pytest.approx(0.46)


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 5, generator=g, dtype=torch.float64) * 3.0
    for t_true in (0.5, 2.0):
        y = torch.multinomial(torch.softmax(z / t_true, 1), 1, generator=g).view(-1)
        assert fit_temperature(z, y) == pytest.approx(t_true, rel=0.05)


def test_regression_metrics_match_sklearn_and_scipy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(200, 3)) + 2.0
    y_hat = y + rng.normal(scale=0.5, size=y.shape)
    groups = np.arange(200) % 2
    got = regression_metrics(torch.tensor(y_hat), torch.tensor(y), torch.tensor(groups))
    assert got["r2"] == pytest.approx(r2_score(y, y_hat), abs=1e-10)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, y_hat), abs=1e-10)
    assert got["mape"] == pytest.approx(100 * mean_absolute_percentage_error(y, y_hat), abs=1e-8)
    assert got["rmse"] == pytest.approx(np.sqrt(((y - y_hat) ** 2).mean()), abs=1e-10)
    r = np.mean([pearsonr(y_hat[:, d], y[:, d])[0] for d in range(3)])
    assert got["r"] == pytest.approx(r, abs=1e-10)
    per_group = [np.sqrt(((y - y_hat)[groups == g] ** 2).mean()) for g in (0, 1)]
    assert got["worst_rmse"] == pytest.approx(max(per_group), abs=1e-10)
    worst_r = min(np.mean([pearsonr(y_hat[groups == g, d], y[groups == g, d])[0] for d in range(3)]) for g in (0, 1))
    assert got["worst_r"] == pytest.approx(worst_r, abs=1e-10)


def test_mape_skips_zero_targets_and_r_skips_constant_outputs():
    y = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    y_hat = torch.tensor([[1.0, 1.0], [3.0, 2.0], [4.0, 0.0]])
    got = regression_metrics(y_hat, y)
    # non-zero targets: 2→3 (50 %), 4→4 (0 %), and the 1s: 0 %, 100 %, 100 %
    assert got["mape"] == pytest.approx(100 * (0.5 + 0 + 0 + 1 + 1) / 5)
    assert got["r"] == pytest.approx(pearsonr([1.0, 3.0, 4.0], [0.0, 2.0, 4.0])[0])  # output 2's targets are constant


@pytest.mark.parametrize("kind", ["symmetric", "pairflip", "asymmetric", "overlap"])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.6])
def test_label_noise_exact_rate_and_transition_matrix(kind, rate):
    c, per_class = 10, 50
    labels = torch.arange(c).repeat_interleave(per_class)[torch.randperm(c * per_class,
                                                                           generator=torch.Generator().manual_seed(3))]
    noise = add_label_noise(labels, c, {"type": kind, "rate": rate, "seed": 1}, dataset="digits")
    t = np.zeros((c, c))
    for a, b in zip(labels.tolist(), noise.labels.tolist()):
        t[a, b] += 1 / per_class
    k = round(rate * per_class) / per_class  # exact count per class
    if kind == "symmetric":
        expected = (1 - k) * np.eye(c) + k / (c - 1) * (1 - np.eye(c))
        np.testing.assert_allclose(t, expected, atol=1 / per_class)  # destinations spread evenly, ±1 sample
        np.testing.assert_allclose(np.diag(t), 1 - k)
    else:
        if kind == "pairflip":
            mapping = {i: (i + 1) % c for i in range(c)}
        elif kind == "asymmetric":
            mapping = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
        else:
            mapping = {a: int(np.argmax(t[a] - np.eye(c)[a])) for a in range(c)} if rate else {}
            assert all(m != a for a, m in mapping.items())
        expected = np.eye(c)
        for a, b in mapping.items():
            expected[a, a], expected[a, b] = 1 - k, k
        np.testing.assert_allclose(t, expected, atol=1e-12)
    flipped = (noise.labels != labels).nonzero().flatten()
    assert torch.equal(noise.flipped, flipped)
    assert noise.summary()["n_flipped"] == len(flipped)
    again = add_label_noise(labels, c, {"type": kind, "rate": rate, "seed": 1}, dataset="digits")
    assert torch.equal(again.labels, noise.labels)  # seeded


def test_cmixup_kernel_matches_its_formula_and_sampler_follows_it():
    y = torch.tensor([[0.0], [0.1], [0.5], [2.0]])
    sigma = 0.3
    p = label_kernel(y, sigma)
    d2 = (y.double() - y.double().T) ** 2
    expected = np.exp(-d2.numpy() / (2 * sigma**2))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12)
    assert (p.diagonal() > 0).all()  # j = i included
    policy = CMixup(bandwidth=sigma)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4, 4)
    for _ in range(4000):
        j = policy.partners(y, g)
        counts[torch.arange(4), j] += 1
    np.testing.assert_allclose((counts / 4000).numpy(), expected, atol=0.03)


def test_cmixup_mixes_inputs_and_targets_linearly():
    x = torch.randn(6, 1, 1, 1)
    y = torch.randn(6, 2)
    policy = CMixup(bandwidth=1.0)
    lam, index = torch.full((6,), 0.3), torch.tensor([1, 0, 2, 5, 4, 3])
    from mixbench.tasks.regression import WeightedTargets

    b = policy.mix_with(x, y, 2, lam, index).bind(WeightedTargets())
    torch.testing.assert_close(b.inputs, 0.3 * x + 0.7 * x[index])
    torch.testing.assert_close(b.targets, 0.3 * y + 0.7 * y[index])


def test_reliability_bins_and_diagram(logits_labels, tmp_path):
    from mixbench.evaluation.calibration import draw_reliability, reliability_bins

    z, y = logits_labels
    p = softmax_np(z)
    conf, hit = p.max(1), p.argmax(1) == y
    b = reliability_bins(torch.tensor(z), torch.tensor(y))
    assert b["count"].sum() == 400
    top = (conf > 14 / 15) & (conf <= 1.0)
    assert b["count"][14] == top.sum()
    assert b["accuracy"][14].item() == pytest.approx(hit[top].mean())
    draw_reliability(torch.tensor(z), torch.tensor(y), str(tmp_path / "r.png"), temperature=1.5)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
