"""The stateful-policy infrastructure: schedules (hand-computed), stage probing, the momentum encoder, the
mixer's optimiser group and the config checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixbench.engine.builder import optim_wrapper_cfg
from mixbench.mixups.learned.base import (
    MomentumEncoder,
    Progress,
    cosine_anneal,
    ema_momentum,
    model_context,
    probe_stages,
    stage_output,
)
from mixbench.models.backbones.digits_cnn import DigitsCNN
from mixbench.models.heads import LinearHead


@pytest.mark.parametrize("it,expected", [
    (0, 0.999), (99, 0.999),  # held at the base for int(0.1 · 1000) iterations
    (100, 0.999999 - 0.000999 * (0.9510565162951535 + 1) / 2),  # cos(0.1π): the cosine is not restarted
    (500, 0.9994995), (1000, 0.999999)])
def test_ema_momentum_follows_openmixup_cosine_schedule_hook(it: int, expected: float) -> None:
    assert ema_momentum(Progress(it, 1000), 0.999, 0.999999, 0.1) == pytest.approx(expected, abs=1e-12)


def test_ema_momentum_without_hold_starts_at_base() -> None:
    assert ema_momentum(Progress(0, 10), 0.99, 1.0, 0.0) == pytest.approx(0.99)
    assert ema_momentum(Progress(5, 10), 0.99, 1.0, 0.0) == pytest.approx(0.995)


@pytest.mark.parametrize("fraction,expected", [(0.0, 0.1), (0.5, 0.0505), (1.0, 0.001), (2.0, 0.001)])
def test_cosine_anneal(fraction: float, expected: float) -> None:
    assert cosine_anneal(0.1, 0.001, fraction) == pytest.approx(expected)


def test_probe_stages_of_the_digits_cnn() -> None:
    net = DigitsCNN(1, 8)
    net.train()
    before = net.stage1[0][1].running_mean.clone()
    channels, sizes = probe_stages(net, (1, 16, 16))
    assert channels == (8, 16, 32) and sizes == ((16, 16), (8, 8), (4, 4))
    assert net.training and torch.equal(net.stage1[0][1].running_mean, before)  # eval-mode probe, mode restored


def test_stage_output_stops_at_the_stage() -> None:
    net = DigitsCNN(1, 8).eval()
    ran = []
    net.stage3.register_forward_hook(lambda *_: ran.append(True))
    x = torch.randn(3, 1, 16, 16)
    out = stage_output(net, x, 1)
    assert out.shape == (3, 16, 8, 8) and not ran
    assert torch.equal(out, net.stage2(net.stage1(x)))


def test_model_context_rejects_a_backbone_without_mix_points() -> None:
    from mixbench.errors import ConfigError

    class Flat(nn.Module):
        def mix_points(self) -> list:
            return []

    with pytest.raises(ConfigError, match="no mix points"):
        model_context(Flat(), nn.Identity(), 10, (1, 16, 16))


def test_momentum_encoder_is_a_frozen_copy_and_follows_by_ema() -> None:
    torch.manual_seed(0)
    backbone, head = DigitsCNN(1, 4), LinearHead(16, 10)
    enc = MomentumEncoder(backbone, head)
    online = [*backbone.parameters(), *head.parameters()]
    assert all(not p.requires_grad for p in enc.parameters())
    assert all(torch.equal(a, b) for a, b in zip(enc.parameters(), online))
    with torch.no_grad():
        for p in online:
            p.add_(1.0)
    old = [p.clone() for p in enc.parameters()]
    enc.update(backbone, head, 0.9)
    for new, k, q in zip(enc.parameters(), old, online):
        torch.testing.assert_close(new, 0.9 * k + 0.1 * q)
def test_mixer_group_is_a_custom_key_only_when_configured() -> None:
    from mixbench.mixups.learned.automix import AutoMix

    cfg = {"schedule": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False,
                        "clip_grad": None, "no_decay_norm_bias": False}, "runtime": {"amp": "off"}}
    assert "paramwise_cfg" not in optim_wrapper_cfg(cfg, AutoMix())
    with_group = optim_wrapper_cfg(cfg, AutoMix(lr=0.1, min_lr=0.001))
    assert with_group["paramwise_cfg"]["custom_keys"] == {"policy.mixblock": {"lr_mult": 1.0}}
    mixer = AutoMix(lr=0.1, min_lr=0.001, weight_decay=0.0)
    assert mixer.group_options(Progress(50, 100)) == pytest.approx({"lr": 0.0505, "weight_decay": 0.0})
    assert AutoMix(lr=0.2).group_options(Progress(70, 100)) == {"lr": 0.2}  # no min_lr: constant
    only_momentum = AutoMix(group_momentum=0.0)  # the main lr schedule, SGD without momentum
    assert only_momentum.has_own_group and only_momentum.group_options(Progress(3, 10)) == {"momentum": 0.0}
    assert "paramwise_cfg" in optim_wrapper_cfg(cfg, only_momentum)
