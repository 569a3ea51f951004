"""Losses for mixed targets: per-sample weights honoured (no OpenMixup-style batch averaging), BCE, decoupled
mixup (with its OpenMixup bugs as regressions) and RankMixup."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixbench.mixups.base import MixBatch, MixContext, OneHotTargets
from mixbench.registry import LOSSES, MIXUPS, import_components

import_components()
K = 5


def two_source_batch(wa, wb, ya=None, yb_index=None):
    n = len(wa)
    labels = torch.arange(n) % K if ya is None else torch.tensor(ya)
    idx0 = torch.arange(n)
    idx1 = torch.roll(idx0, 1) if yb_index is None else torch.tensor(yb_index)
    weights = [torch.tensor(wa, dtype=torch.float32), torch.tensor(wb, dtype=torch.float32)]
    return MixBatch(inputs=torch.zeros(n, 1, 2, 2), labels=labels, indices=[idx0, idx1], weights=weights,
                    builder=OneHotTargets(K))


def test_per_sample_weights_not_averaged_over_the_batch():
    """OpenMixup's hard-CE heads compute CE_a·mean(λ) + CE_b·mean(1−λ); mixbench keeps λ per sample."""
    batch = two_source_batch([0.9, 0.2, 0.6, 0.4], [0.3, 0.7, 0.2, 0.9])  # weights not summing to 1
    logits = torch.randn(4, K, generator=torch.Generator().manual_seed(0))
    ce_a = F.cross_entropy(logits, batch.labels, reduction="none")
    ce_b = F.cross_entropy(logits, batch.labels[batch.indices[1]], reduction="none")
    per_sample = batch.weights[0] * ce_a + batch.weights[1] * ce_b
    loss = LOSSES.get("soft_ce")(K)(logits, batch)
    torch.testing.assert_close(loss, per_sample)
    openmixup = ce_a.mean() * batch.weights[0].mean() + ce_b.mean() * batch.weights[1].mean()
    assert not torch.allclose(loss.mean(), openmixup)


@pytest.mark.parametrize("name", ["soft_ce", "bce", "decoupled"])
def test_weights_reach_the_loss_unchanged(name):
    batch = two_source_batch([0.7, 0.1, 0.5], [0.5, 0.6, 0.0])
    logits = torch.randn(3, K)
    loss = LOSSES.get(name)(K)(logits, batch)
    assert loss.shape == (3,)
    scaled = two_source_batch([1.4, 0.1, 0.5], [1.0, 0.6, 0.0])
    loss2 = LOSSES.get(name)(K)(logits, scaled)
    assert torch.equal(loss[1:] if name != "decoupled" else loss[1:], loss2[1:])  # other rows untouched
    assert not torch.allclose(loss[0], loss2[0])


def test_bce_matches_torch():
    batch = two_source_batch([0.7, 0.4], [0.3, 0.6])
    logits = torch.randn(2, K)
    got = LOSSES.get("bce")(K)(logits, batch)
    ref = F.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none").mean(1)
    torch.testing.assert_close(got, ref)
    soft = LOSSES.get("bce")(K, activation="softmax")(logits, batch)
    ref = F.binary_cross_entropy(F.softmax(logits, 1), batch.targets, reduction="none").mean(1)
    torch.testing.assert_close(soft, ref)
    two = LOSSES.get("bce")(K, two_hot=True).targets(batch)
    assert set(two.unique().tolist()) == {0.0, 1.0} and (two.sum(1) == 2).all()


def test_decoupled_term():
    batch = two_source_batch([0.7], [0.3], ya=[0], yb_index=[0])
    batch = two_source_batch([0.7, 0.5], [0.3, 0.5], ya=[0, 1])  # classes 0|1 and 1|0, λ = 0.5 on row 1
    z = torch.randn(2, K)
    loss = LOSSES.get("decoupled")(K, eta=0.1, mode="both", lam_idx=1.0)(z, batch)
    soft = -(batch.targets * F.log_softmax(z, 1)).sum(1)
    ya, yb = batch.labels, batch.labels[batch.indices[1]]
    expected = []
    for i in range(2):
        za = z[i].clone()
        za[yb[i]] = -float("inf")
        zb = z[i].clone()
        zb[ya[i]] = -float("inf")
        dec = 0.1 * batch.weights[0][i] * -F.log_softmax(za, 0)[ya[i]] + 0.1 * batch.weights[1][i] * -F.log_softmax(zb, 0)[yb[i]]
        expected.append(soft[i] + dec)
    torch.testing.assert_close(loss, torch.stack(expected))
    # OpenMixup regression: λ = 0.5 exactly still gets the decoupled term (float-equality lookup skipped it)
    assert loss[1] > soft[1]


def test_decoupled_eta_ordering_per_source():
    """η follows the source (anchor, partner), not the class index order (OpenMixup reads row 0 sorted)."""
    loss = LOSSES.get("decoupled")(K, eta=1.0, mode="less", thr=0.5, lam_idx=0.0)
    eta_a, eta_b = loss.etas(torch.tensor([0.2, 0.8]), torch.tensor([0.8, 0.2]))
    assert eta_a.tolist() == [1.0, 0.0] and eta_b.tolist() == [0.0, 1.0]


def rank_batch(num_mixup, n=6):
    policy = MIXUPS.get("rankmixup")(num_mixup=num_mixup)
    x = torch.randn(n, 1, 4, 4)
    y = torch.arange(n) % K
    return policy(x, y, K, MixContext(generator=torch.Generator().manual_seed(0))), y


@pytest.mark.parametrize("mode,num_mixup", [("mrl", 1), ("ndcg", 3)])
def test_rankmixup_loss(mode, num_mixup):
    batch, y = rank_batch(num_mixup)
    n = y.shape[0]
    assert batch.inputs.shape[0] == n * (1 + num_mixup)
    logits = torch.randn(batch.inputs.shape[0], K, requires_grad=True)
    loss = LOSSES.get("rankmixup")(K, mode=mode, alpha=0.1, margin=2.0)(logits, batch)
    ce = F.cross_entropy(logits[:n], y, reduction="none")
    if mode == "mrl":
        z, zm = logits[:n], logits[n:]
        one_hot = batch.targets[n:].max(1).values >= 1 - 1e-6
        rank = (~one_hot).float() * F.relu(zm.max(1).values - z.max(1).values + 2.0)
    else:
        rank = None
    mean = loss.mean()
    if rank is not None:
        torch.testing.assert_close(mean, (ce + 0.1 * rank).mean())
    else:
        assert (mean >= ce.mean() - 1e-6) and torch.isfinite(mean)
    mean.backward()
    assert torch.isfinite(logits.grad).all()


def test_rankmixup_ndcg_perfect_ranking_is_zero():
    from mixbench.losses.rankmixup import ndcg

    rel = torch.tensor([[0.9], [0.6]])
    clean = torch.tensor([[50.0, 0.0]])
    # confidences equal to relevances → nDCG 1
    def logit_for(p):
        return torch.tensor([[torch.log(torch.tensor(p / (1 - p))).item(), 0.0]])
    mixed = torch.stack([logit_for(0.9), logit_for(0.6)])
    torch.testing.assert_close(ndcg(clean, mixed, rel), torch.ones(1), atol=1e-4, rtol=0)


def test_rankmixup_loss_requires_its_policy():
    from mixbench.errors import ConfigError

    batch = two_source_batch([1.0], [0.0])
    with pytest.raises(ConfigError):
        LOSSES.get("rankmixup")(K)(torch.randn(1, K), batch)
