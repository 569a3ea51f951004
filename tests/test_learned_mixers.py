"""AutoMix and SAMix against their definitions: gradient routing per loss term (autograd), the MixBlock and the
mask/η losses computed by hand, mask properties before and after a short training, AMP and channels_last."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixbench.config import load_config
from mixbench.mixups.base import MixContext, soft_targets
from mixbench.mixups.learned.automix import eta_balanced_ce
from mixbench.mixups.learned.base import Progress
from mixbench.mixups.learned.mixblock import PixelMixBlock, mask_loss, rescale_lam
from mixbench.models.classifier import build_classifier

METHODS = ("automix", "samix")


def _model(method: str, *overrides: str, seed: int = 0):
    cfg, _ = load_config(f"configs/digits/{method}.yaml", ["model.backbone.width=8", *overrides])
    torch.manual_seed(seed)
    return build_classifier(cfg, num_classes=10, in_chans=1, mean=(100.0,), std=(50.0,), input_shape=(1, 16, 16))


def _batch(n: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g),
            "labels": torch.arange(n) % 10}


def _nonzero(loss: torch.Tensor, params: list) -> bool:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


# -- gradient routing ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_gradient_routing_per_loss_term(method: str) -> None:
    model = _model(method, "mixup.mask_loss_margin=0.0")  # margin 0: the mask loss is never clamped to 0
    model.train()
    losses = model(**model.data_preprocessor(_batch(), True), mode="loss")
    assert set(losses) == {"loss_mix_q", "loss_one_q", "loss_mix_k", "loss_mask"}
    mixblock = list(model.policy.mixblock.parameters())
    online = [*model.backbone.parameters(), *model.head.parameters()]
    ema = list(model.policy.encoder_k.parameters())
    assert ema and not any(p.requires_grad for p in ema)  # autograd cannot reach them at all
    assert _nonzero(losses["loss_mix_k"], mixblock) and not _nonzero(losses["loss_mix_k"], online)
    assert _nonzero(losses["loss_mask"], mixblock) and not _nonzero(losses["loss_mask"], online)
    for name in ("loss_mix_q", "loss_one_q"):  # the backbone's mask is detached
        assert _nonzero(losses[name], online) and not _nonzero(losses[name], mixblock), name
    sum(losses.values()).backward()
    assert all(p.grad is None for p in ema)


# -- the MixBlock and the losses by hand ---------------------------------------------------------------------------
@pytest.mark.parametrize("lam,k,expected", [(0.0, 0.25, 0.0), (1.0, 0.25, 1.0), (0.5, 0.25, 0.5),
                                            (0.25, 0.25, (4 / 3 / 64 - 2 / 16 + 1.25 / 4) / (1.25 - 2 / 3)),
                                            (0.8, 1.0, (4 / 3 * 0.512 - 2 * 0.64 + 2 * 0.8) / (2 - 2 / 3))])
def test_samix_rescaled_lambda(lam: float, k: float, expected: float) -> None:
    assert float(rescale_lam(torch.tensor(lam), k)) == pytest.approx(expected)


def test_mask_loss_by_hand() -> None:
    s = torch.tensor([0.2, 0.4, 0.6, 1.0]).view(1, 1, 2, 2)  # mean 0.55: anchor area 0.45
    assert float(mask_loss(s, torch.tensor(0.7), 0.1)) == pytest.approx(abs(0.45 - 0.7) - 0.1)
    assert float(mask_loss(s, torch.tensor(0.5), 0.1)) == 0.0  # within the margin
    var = ((s - 0.55) ** 2).mean()
    assert float(mask_loss(s, torch.tensor(0.7), 0.1, "L1+Variance")) == pytest.approx(0.15 - 2 * float(var))


def test_eta_balanced_ce_splits_the_soft_ce() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g)
    t = soft_targets(torch.tensor([0, 1, 2, 3, 4, 0]), [torch.arange(6), torch.tensor([1, 2, 3, 4, 0, 0])],
                     [torch.full((6,), 0.7), torch.full((6,), 0.3)], 5)
    soft = -(t * F.log_softmax(z, -1)).sum(-1)
    torch.testing.assert_close(eta_balanced_ce(z, t, 1.0), soft)
    # by hand for row 0: classes 0 (0.7) and 1 (0.3) against the other three
    z0 = z[0]
    local = -(0.7 * math.log(math.exp(z0[0]) / (math.exp(z0[0]) + math.exp(z0[1])))
              + 0.3 * math.log(math.exp(z0[1]) / (math.exp(z0[0]) + math.exp(z0[1]))))
    glob = -math.log((math.exp(z0[0]) + math.exp(z0[1])) / float(z0.exp().sum()))
    assert float(eta_balanced_ce(z, t, 0.5)[0]) == pytest.approx(local + 0.5 * glob, rel=1e-5)
    # a sample mixed with its own class is one-hot: no negative classes inside P, the global term is its CE
    assert float(eta_balanced_ce(z, t, 0.0)[5]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("options", [dict(), dict(lam_concat=True),
                                     dict(lam_mul=1.0, lam_mul_k=0.25, lam_residual=True, value_net="convneck",
                                          x_qk_concat=True, upsampling="bilinear")])
def test_mixblock_matches_its_definition(options: dict) -> None:
    torch.manual_seed(0)
    block = PixelMixBlock(6, **options).eval()
    for p in block.parameters():  # larger weights than the 0.01 init, so that every term matters
        torch.nn.init.normal_(p, 0.0, 0.5)
    f = torch.randn(3, 6, 4, 4)
    lam, index = torch.tensor([0.3, 0.3, 0.3]), torch.tensor([2, 0, 1])
    s = block(f, lam, index, (8, 8))
    # the same computation written out: λ encoding, value, q/k, softmax attention, upsample, sigmoid
    x_a, x_b = f, f[index]
    lam4 = lam.view(-1, 1, 1, 1)
    if options.get("lam_mul"):
        lr = rescale_lam(lam4, 0.25)
        x_a, x_b = x_a * (1 + lr), x_b * (1 + (1 - lr))
    if options.get("lam_concat"):
        x_a = torch.cat([x_a, lam4.expand(3, 1, 4, 4)], 1)
        x_b = torch.cat([x_b, 1 - lam4.expand(3, 1, 4, 4)], 1)
    v = block.value(x_b).flatten(2)  # (N, 1, hw)
    qk_a = qk_b = torch.cat([x_a, x_b], 1) if options.get("x_qk_concat") else None
    q = block.query(qk_a if qk_a is not None else x_a).flatten(2)  # (N, C/r, hw)
    k = (block.key or block.query)(qk_b if qk_b is not None else x_b).flatten(2)
    att = torch.einsum("nci,ncj->nij", q, k) / math.sqrt(3)
    m = torch.einsum("nij,nj->ni", att.softmax(-1), v[:, 0]).view(3, 1, 4, 4)
    expected = torch.sigmoid(F.interpolate(m, size=(8, 8), mode=options.get("upsampling", "nearest")))
    torch.testing.assert_close(s, expected, rtol=1e-5, atol=1e-6)


# -- masks ---------------------------------------------------------------------------------------------------------
def _ctx(model, seed: int = 0) -> MixContext:
    return MixContext(generator=torch.Generator().manual_seed(seed), model=model)


@pytest.mark.parametrize("method", METHODS)
def test_masks_in_unit_interval_and_mix_returns_the_masked_batch(method: str) -> None:
    model = _model(method)
    x = model.data_preprocessor(_batch(), True)["inputs"]
    batch = model.policy(x, torch.arange(16) % 10, 10, _ctx(model))
    anchor = batch.mask
    assert anchor.shape == (16, 1, 16, 16) and bool(((anchor >= 0) & (anchor <= 1)).all())
    index = batch.indices[1]
    torch.testing.assert_close(batch.inputs, x * anchor + x[index] * (1 - anchor))
    lam = batch.weights[0]
    torch.testing.assert_close(batch.targets.sum(1), torch.ones(16))
    assert bool((lam > 0).all() & (lam < 1).all()) and torch.equal(batch.weights[1], 1 - lam)


def test_lam_margin_gives_plain_mixup_to_the_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model("automix", "mixup.lam_margin=0.49")  # every λ_bb is within 0.49 of 0 or 1 except ≈ 0.5
    seen = {}
    original = model.features

    def spy(x):
        seen.setdefault("inputs", []).append(x.detach())
        return original(x)

    monkeypatch.setattr(model, "features", spy)
    model.train()
    data = model.data_preprocessor(_batch(), True)
    gen_state = model.generator(data["inputs"].device).get_state()
    model(**data, mode="loss")
    x_bb = seen["inputs"][1]  # after the clean batch
    # replay the draws: λ_mb, π_mb, λ_bb, π_bb from the same generator
    g = torch.Generator().manual_seed(0)
    g.set_state(gen_state)
    ctx = MixContext(generator=g)
    model.policy.draw(16, ctx, torch.device("cpu"))
    lam_bb, index_bb = model.policy.draw(16, ctx, torch.device("cpu"))
    x = data["inputs"]
    if abs(float(lam_bb[0]) - 0.5) < 0.01:
        pytest.skip("λ_bb fell inside the margin band")
    l4 = lam_bb.view(-1, 1, 1, 1)
    torch.testing.assert_close(x_bb, x * l4 + x[index_bb] * (1 - l4))


def _train(model, steps: int, seed: int = 0) -> None:
    from mixbench.datasets.digits import digits

    ds = digits("train", size=16)
    images, labels = ds.tensors()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for it in range(steps):
        pick = torch.randint(0, labels.shape[0], (64,), generator=g)
        data = model.data_preprocessor({"inputs": images[pick], "labels": labels[pick]}, True)
        progress = Progress(it, steps)
        model.policy.before_iter(progress)
        loss = sum(model(**data, mode="loss").values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.policy.after_step(progress, model)


def _area_gap(model, lam: float) -> float:
    """|anchor area − λ| of the MixBlock's mask at λ on a fixed batch of digits."""
    from mixbench.datasets.digits import digits

    images, _ = digits("val", size=16).tensors()
    x = model.data_preprocessor({"inputs": images[:64], "labels": torch.zeros(64, dtype=torch.long)}, True)["inputs"]
    policy = model.policy
    with torch.no_grad():
        feats = policy.encoder_k.stage(x, policy.mask_layer)
        s = policy.partner_mask(feats, torch.full((64,), lam), torch.roll(torch.arange(64), 1))
    return abs(1 - float(s.mean()) - lam)


@pytest.mark.slow
def test_mask_mean_tracks_lambda_after_short_training() -> None:
    # the mask can follow λ only when the MixBlock sees λ: AutoMix's lam_concat (its ImageNet setting)
    model = _model("automix", "mixup.lam_concat=true", "mixup.mask_loss=1.0")
    lams = (0.2, 0.35, 0.65, 0.8)
    before = [_area_gap(model, lam) for lam in lams]
    _train(model, 300)
    after = [_area_gap(model, lam) for lam in lams]
    margin = model.policy.mask_loss_margin
    assert max(before) > margin + 0.1  # untrained: s ≈ 0.5 whatever λ
    assert all(gap <= margin + 0.03 for gap in after), (before, after)


# -- precision and memory format ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_and_channels_last_step(method: str) -> None:
    model = _model(method, "runtime.channels_last=true")
    assert model.policy.mixblock.query.weight.is_contiguous(memory_format=torch.channels_last)
    model.train()
    data = model.data_preprocessor(_batch(), True)
    assert data["inputs"].is_contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(**data, mode="loss")
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.policy.mixblock.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        batch = model.policy(data["inputs"], data["labels"], 10, _ctx(model))
    assert batch.mask.dtype == data["inputs"].dtype or batch.mask.dtype == torch.bfloat16


def test_state_dict_holds_mixer_and_momentum_encoder() -> None:
    model = _model("samix")
    keys = model.state_dict().keys()
    assert any(k.startswith("policy.mixblock.value.conv.1.running_mean") for k in keys)
    assert any(k.startswith("policy.encoder_k.backbone.stage3") for k in keys)
    again = _model("samix", seed=1)
    again.load_state_dict(model.state_dict())
    for a, b in zip(model.policy.encoder_k.parameters(), again.policy.encoder_k.parameters()):
        assert torch.equal(a, b)
