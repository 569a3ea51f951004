"""AdAutoMix against its definition: the generator (by hand), co-λ weights, the lam_margin condition, L_re_q,
the adversarial/cooperative schedule and the cosine term's sign on fixed inputs, gradient routing by autograd,
and the run-level contracts (end-to-end digits run, kill -9 and rerun, 2-process gloo DDP)."""

from __future__ import annotations

import glob
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _spine import ROOT, TINY, assert_sigkill_resume_bit_identical, env, run_cli

from mixbench.config import load_config
from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext, sample_beta
from mixbench.mixups.learned.adaptive_mask import AdaptiveMask
from mixbench.mixups.learned.adautomix import (
    Draw,
    co_weights,
    cosine_term,
    is_adversarial,
    linear_mix,
    mix_images,
    plain_mixup,
)
from mixbench.models.classifier import build_classifier
from mixbench.registry import MIXUPS, build, import_components
from mixbench.results.record import read_record

import_components()


def tiny_model(*overrides: str) -> torch.nn.Module:
    cfg, _ = load_config("configs/digits/adautomix.yaml", ["model.backbone.width=4", *overrides])
    torch.manual_seed(0)
    return build_classifier(cfg, num_classes=10, in_chans=1, mean=[0.0], std=[1.0], input_shape=(1, 16, 16)).train()


def batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def ctx(seed: int = 0, it: int = 0) -> MixContext:
    return MixContext(generator=torch.Generator().manual_seed(seed), iter=it)


# -- the generator ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,lam_concat", [(2, False), (3, False), (4, False), (3, True)])
def test_masks_in_unit_interval_and_sum_to_one(n: int, lam_concat: bool) -> None:
    torch.manual_seed(n)
    gen = AdaptiveMask(6, lam_concat=lam_concat)
    for conv in (gen.query[0], gen.key[0], gen.value):  # large weights: sharp, non-uniform masks
        torch.nn.init.normal_(conv.weight, std=1.0)
    masks = gen([torch.randn(5, 6, 4, 4) for _ in range(n)], co_weights(torch.rand(n) + 0.1), (16, 16))
    assert masks.shape == (5, n, 16, 16)
    assert masks.min() >= 0 and masks.max() <= 1
    assert masks.min() < 0.05 and masks.max() > 0.7  # far from uniform: the bounds are not met trivially
    torch.testing.assert_close(masks.sum(1), torch.ones(5, 16, 16))


def test_generator_matches_its_definition() -> None:
    torch.manual_seed(1)
    gen = AdaptiveMask(4, reduction=2, use_scale=True, upsampling="nearest")
    for conv in (gen.query[0], gen.key[0], gen.value):
        torch.nn.init.normal_(conv.weight, std=0.7)
        torch.nn.init.normal_(conv.bias, std=0.3)
    feats = [torch.randn(2, 4, 3, 3) for _ in range(3)]
    got = gen(feats, torch.tensor([0.2, 0.3, 0.5]), (3, 3))

    def conv(layer: torch.nn.Conv2d, f: torch.Tensor) -> torch.Tensor:  # a 1x1 conv by hand: (N, out, hw)
        return torch.einsum("oc,nch->noh", layer.weight[:, :, 0, 0], f.flatten(2)) + layer.bias.view(1, -1, 1)

    q = [conv(gen.query[0], f).clamp_min(0) for f in feats]
    k = [conv(gen.key[0], f).clamp_min(0) for f in feats]
    v = [conv(gen.value, f) for f in feats]
    logits = torch.zeros(2, 3, 9)
    for j in range(3):
        scores = sum(q[j].transpose(1, 2) @ k[i] for i in range(3) if i != j) / math.sqrt(2)
        logits[:, j] = (scores.softmax(-1) @ v[j].transpose(1, 2))[..., 0]
    torch.testing.assert_close(got, logits.view(2, 3, 3, 3).softmax(1), rtol=1e-5, atol=1e-6)


def test_lam_concat_feeds_each_source_its_weight() -> None:
    torch.manual_seed(2)
    gen = AdaptiveMask(3, lam_concat=True)
    torch.nn.init.normal_(gen.value.weight, std=1.0)
    feats = [torch.randn(2, 3, 2, 2) for _ in range(3)]
    a = gen(feats, torch.tensor([0.2, 0.3, 0.5]), (2, 2))
    b = gen(feats, torch.tensor([0.5, 0.3, 0.2]), (2, 2))
    assert gen.query[0].in_channels == 4 and not torch.allclose(a, b)


# -- λ, partners, margin ------------------------------------------------------------------------------------------
def test_co_lambda_normalisation_by_hand() -> None:
    torch.testing.assert_close(co_weights(torch.tensor([1.0, 1.0, 2.0])), torch.tensor([0.25, 0.25, 0.5]))
    torch.testing.assert_close(co_weights(torch.tensor([0.1, 0.3, 0.4, 0.2])), torch.tensor([0.1, 0.3, 0.4, 0.2]))


@pytest.mark.parametrize("mix_samples", [2, 3])
def test_draw_weights_and_sources(mix_samples: int) -> None:
    policy = build(MIXUPS, {"type": "adautomix", "alpha": 0.7, "mix_samples": mix_samples}, "mixup")
    draw = policy.draw(16, ctx(5), torch.device("cpu"))
    lam = sample_beta(0.7, mix_samples, torch.Generator().manual_seed(5), torch.device("cpu"))  # λ drawn first
    if mix_samples == 2:  # two draws: λ₀ for the mixer, λ₁ for the backbone
        torch.testing.assert_close(draw.weights_mb, torch.stack([lam[0], 1 - lam[0]]))
        torch.testing.assert_close(draw.weights_bb, torch.stack([lam[1], 1 - lam[1]]))
    else:
        torch.testing.assert_close(draw.weights_mb, lam / lam.sum())
        assert draw.weights_bb is draw.weights_mb
    assert draw.sources == mix_samples and len(draw.index_bb) == mix_samples
    for idx in (draw.index_mb, draw.index_bb):
        assert torch.equal(idx[0], torch.arange(16))
        assert all(torch.equal(torch.sort(p).values, torch.arange(16)) for p in idx[1:])
    assert not torch.equal(draw.index_mb[1], draw.index_bb[1])  # independent permutations per branch


def test_is_random_draws_every_count() -> None:
    policy = build(MIXUPS, {"type": "adautomix", "mix_samples": 4, "is_random": True}, "mixup")
    seen = {policy.draw(8, ctx(s), torch.device("cpu")).sources for s in range(40)}
    assert seen == {2, 3, 4}


@pytest.mark.parametrize("w0,sources,plain", [
    (0.02, 3, True), (0.03, 3, True), (0.5, 3, False), (0.96, 3, False), (0.98, 3, True),
    (0.5, 2, False), (0.02, 2, True), (0.99, 2, True)])
def test_lam_margin_is_the_authors_condition(w0: float, sources: int, plain: bool) -> None:
    # OpenMixup's port reads ``margin < 1 - w0``, true at w0 = 0.5: there the backbone would get plain mixup
    assert bool(plain_mixup(torch.tensor(w0), 0.03, sources)) is plain


@pytest.mark.parametrize("w0,plain", [(0.01, True), (0.5, False)])
def test_backbone_masks_become_the_weights_within_the_margin(w0: float, plain: bool) -> None:
    model = tiny_model()
    policy = model.policy
    x, _ = batch()
    weights = torch.tensor([w0, (1 - w0) * 0.4, (1 - w0) * 0.6])
    idx = [torch.arange(8), torch.randperm(8), torch.randperm(8)]
    draw = Draw(weights, weights, idx, idx)
    feats = policy.encoder_k.stage(x, policy.mask_layer)
    got = policy.backbone_masks(feats, draw)
    expected = weights.view(1, 3, 1, 1).expand(8, 3, 16, 16) if plain else policy.masks(feats, idx, weights)
    torch.testing.assert_close(got, expected)
    assert not got.requires_grad


def test_mixing_by_hand() -> None:
    x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    idx = [torch.arange(3), torch.tensor([2, 0, 1])]
    masks = torch.zeros(3, 2, 2, 2)
    masks[:, 0, 0], masks[:, 1, 1] = 1.0, 1.0  # top row from the anchor, bottom row from the partner
    got = mix_images(x, masks, idx)
    torch.testing.assert_close(got[:, 0, 0], x[:, 0, 0])
    torch.testing.assert_close(got[:, 0, 1], x[idx[1], 0, 1])
    torch.testing.assert_close(linear_mix(x, torch.tensor([0.25, 0.75]), idx)[:, 0, 0, 0],
                               torch.tensor([1.5, 0.25, 1.25]))


# -- losses -------------------------------------------------------------------------------------------------------
def soft_ce(logits: torch.Tensor, labels: torch.Tensor, idx: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    targets = sum(wj * F.one_hot(labels[i], 10).float() for wj, i in zip(w, idx))
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("radio", [0.5, 0.2])
def test_re_q_combination(radio: float) -> None:
    model = tiny_model(f"mixup.mixup_radio={radio}")
    x, y = batch()
    w = torch.tensor([0.5, 0.3, 0.2])
    idx = [torch.arange(8), torch.randperm(8), torch.randperm(8)]
    out = model.policy.classifier_losses(model, x, x.flip(0), y, Draw(w, w, idx, idx))
    lin = sum(wj * x[i] for wj, i in zip(w, idx))
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
        mixed = soft_ce(model(lin), y, idx, w)
        generated = soft_ce(model(x.flip(0)), y, idx, w)
    torch.testing.assert_close(out["loss_one_q"], (1 - radio) * clean)
    torch.testing.assert_close(out["loss_lin_q"], radio * mixed)
    torch.testing.assert_close(out["loss_mix_q"], generated)


def test_re_q_is_the_clean_loss_for_two_sources() -> None:
    model = tiny_model("mixup.mix_samples=2")
    x, y = batch()
    w, idx = torch.tensor([0.3, 0.7]), [torch.arange(8), torch.randperm(8)]
    out = model.policy.classifier_losses(model, x, x, y, Draw(w, w, idx, idx))
    with torch.no_grad():
        torch.testing.assert_close(out["loss_one_q"], F.cross_entropy(model(x), y))
    assert float(out["loss_lin_q"]) == 0.0


def test_alternation_schedule() -> None:
    assert [is_adversarial(t, 2) for t in range(6)] == [True, False] * 3
    assert [is_adversarial(t, 3) for t in range(6)] == [True, False, False] * 2
    assert all(is_adversarial(t, 1) for t in range(4)) and not any(is_adversarial(t, 0) for t in range(4))


def test_adversarial_and_cooperative_steps() -> None:
    model = tiny_model("mixup.beta_radio=0.25")
    x, y = batch()
    adv = model.policy.train_losses(model, x, y, ctx(3, it=4))  # same draw, same weights: only the step differs
    coop = model.policy.train_losses(model, x, y, ctx(3, it=5))
    torch.testing.assert_close(adv["loss_mix_k"], -0.25 * coop["loss_mix_k"])
    assert float(coop["loss_cos_k"]) == 0.0 and float(adv["loss_cos_k"].detach()) > 0.0
    for key in ("loss_one_q", "loss_lin_q", "loss_mix_q"):
        torch.testing.assert_close(adv[key], coop[key])


def test_cosine_term_sign_on_fixed_inputs() -> None:
    mixed = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    sources = [torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [-1.0, -1.0]])]
    w = torch.tensor([0.75, 0.25])
    # sample 0: cos = 1 and 0; sample 1: cos = 1/√2 and -1
    sim = ((0.75 * 1 + 0.25 * 0) + (0.75 / math.sqrt(2) - 0.25)) / 2
    assert float(cosine_term(mixed, sources, w, "similarity")) == pytest.approx(sim)
    assert float(cosine_term(mixed, sources, w, "distance")) == pytest.approx(1 - sim)
    # descending the paper's term brings the mixed prediction closer to its sources; the code's pushes it away
    for mode, closer in (("distance", True), ("similarity", False)):
        p = mixed.clone().requires_grad_(True)
        cosine_term(p, sources, w, mode).backward()
        after = cosine_term((p - 0.1 * p.grad).detach(), sources, w, "similarity")
        assert (float(after) > sim) is closer


def test_cosine_modes_in_the_step_differ_by_the_constant() -> None:
    x, y = batch()
    paper = tiny_model("mixup.beta_radio=0.4")  # same seed: the same weights, and the same draw below
    code = tiny_model("mixup.beta_radio=0.4", "mixup.cosine=similarity")
    a = paper.policy.train_losses(paper, x, y, ctx(7))["loss_cos_k"]
    b = code.policy.train_losses(code, x, y, ctx(7))["loss_cos_k"]
    torch.testing.assert_close(a + b, torch.tensor(0.6))  # (1 − β)·Σ_j w_j·((1 − cos) + cos)


# -- gradient routing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("it", [0, 1])  # adversarial, cooperative
def test_gradient_routing(it: int) -> None:
    model = tiny_model()
    policy = model.policy
    x, y = batch()
    losses = policy.train_losses(model, x, y, ctx(1, it=it))
    assert set(losses) == {"loss_mix_k", "loss_cos_k", "loss_one_q", "loss_lin_q", "loss_mix_q"}
    generator = list(policy.generator.parameters())
    online = [*model.backbone.parameters(), *model.head.parameters()]
    assert all(not p.requires_grad for p in policy.encoder_k.parameters())
    for key, value in losses.items():
        if not value.requires_grad:
            assert key == "loss_cos_k" and it == 1 and float(value) == 0.0
            continue
        g_gen = torch.autograd.grad(value, generator, retain_graph=True, allow_unused=True)
        g_on = torch.autograd.grad(value, online, retain_graph=True, allow_unused=True)
        if key.endswith("_k"):
            assert all(g is not None for g in g_gen) and any(float(g.abs().sum()) > 0 for g in g_gen), key
            assert all(g is None for g in g_on), key
        else:
            assert all(g is None for g in g_gen), key
            assert any(g is not None and float(g.abs().sum()) > 0 for g in g_on), key
    sum(losses.values()).backward()
    assert all(p.grad is None for p in policy.encoder_k.parameters())


def test_ema_update_and_state_dict() -> None:
    model = tiny_model()
    with torch.no_grad():
        for p in [*model.backbone.parameters(), *model.head.parameters()]:
            p.add_(1.0)
    before = [p.clone() for p in model.policy.encoder_k.parameters()]
    from mixbench.mixups.learned.base import Progress

    model.policy.after_step(Progress(0, 10), model)  # held at the base momentum 0.999
    for new, old, q in zip(model.policy.encoder_k.parameters(), before,
                           [*model.backbone.parameters(), *model.head.parameters()]):
        torch.testing.assert_close(new, 0.999 * old + 0.001 * q)
    keys = model.state_dict().keys()
    assert any(k.startswith("policy.generator.") for k in keys)
    assert any(k.startswith("policy.encoder_k.backbone.") for k in keys)


def test_mix_returns_the_generated_batch() -> None:
    model = tiny_model()
    x, y = batch()
    out = model.policy(x, y, 10, ctx(2))
    assert out.num_sources == 3 and out.inputs.shape == x.shape
    torch.testing.assert_close(sum(w for w in out.weights), torch.ones(8))
    assert out.mask.min() >= 0 and out.mask.max() <= 1


def test_bf16_autocast_and_channels_last_step() -> None:
    model = tiny_model("runtime.channels_last=true")
    x, y = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.policy.train_losses(model, x.contiguous(memory_format=torch.channels_last), y, ctx(4))
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total.float())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.policy.generator.parameters())


def test_generator_is_the_own_optimiser_group() -> None:
    model = tiny_model("mixup.lr=0.01", "mixup.min_lr=0.001")
    policy = model.policy
    assert policy.has_own_group and policy.group_prefix() == "policy.generator"
    assert [id(p) for p in policy.group_parameters()] == [id(p) for p in policy.generator.parameters()]
    names = [n for n, _ in model.named_parameters() if n.startswith(policy.group_prefix())]
    assert names and all(".encoder_k." not in n for n in names)


@pytest.mark.parametrize("cfg,match", [
    ({"mix_samples": 3, "partner": "flip"}, "partner"), ({"cosine": "sign"}, "cosine"),
    ({"mix_samples": 1}, "mix_samples"), ({"lam_margin": 0.7}, "lam_margin"), ({"adv_interval": -1}, "adv_interval"),
    ({"upsampling": "area"}, "upsampling")])
def test_bad_options_name_the_key(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=f"mixup.{match}"):
        build(MIXUPS, {"type": "adautomix", **cfg}, "mixup")


def test_mask_layer_beyond_the_backbone_is_a_config_error() -> None:
    proc = run_cli(["configs/digits/adautomix.yaml", *TINY, "mixup.mask_layer=3", "work_dir=/nonexistent/x"], ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "mixup.mask_layer: 3 is not a mix point" in proc.stderr.strip().splitlines()[-1]


# -- runs ---------------------------------------------------------------------------------------------------------
RUN = ["configs/digits/adautomix.yaml", *TINY]


@pytest.mark.slow
def test_digits_run_end_to_end(tmp_path: Path) -> None:
    proc = run_cli([*RUN, f"work_dir={tmp_path}"], ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = [Path(p) for p in glob.glob(str(tmp_path / "digits" / "*"))]
    rec = read_record(run_dir / "record.json")
    assert rec["status"] == "finished" and rec["method"] == "adautomix"
    assert rec["metrics"]["top1"]["final"] > 0.2  # well above chance (0.1) after 2 short epochs
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    for key in ("loss_mix_k", "loss_cos_k", "loss_one_q", "loss_lin_q", "loss_mix_q"):
        assert any(key in r for r in train), key


@pytest.mark.slow
def test_sigkill_then_rerun_is_bit_identical(tmp_path: Path) -> None:
    args = [*RUN, "schedule.epochs=3", "runtime.deterministic=true", "runtime.checkpoint_interval=1",
            "runtime.max_keep_ckpts=5"]
    assert_sigkill_resume_bit_identical(args, tmp_path, state_prefix="policy.encoder_k.")


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process(tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("_adautomix_ddp.py")), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["keys"] == ["loss", "loss_cos_k", "loss_lin_q", "loss_mix_k", "loss_mix_q", "loss_one_q"]
    assert res["encoder_frozen"] and res["ranks_equal"]
    assert res["ema_moved"] > 0  # the encoders compared have moved away from their start
    assert res["max_diff_vs_single"] < 1e-5
    for ddp, single in zip(res["ddp_losses"], res["single_losses"]):
        assert ddp == pytest.approx(single, rel=1e-5, abs=1e-6)
