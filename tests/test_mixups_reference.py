"""Equivalence with timm, torchvision v2 and mmpretrain: the same λ, partner and box injected, the same output
to float tolerance. timm and mmpretrain draw from NumPy's global RNG: their draws are recorded (timm) or
replayed after reseeding (mmpretrain), then fed to mixbench's deterministic ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mixbench.mixups  # noqa: F401  (import order: the mixups package first, see the losses package)
from mixbench.losses.cross_entropy import smooth_targets
from mixbench.mixups import _ops
from mixbench.mixups._ops import box_from_lam
from mixbench.mixups.base import one_hot
from mixbench.mixups.cutmix import paste_boxes
from mixbench.mixups.mixup import mixup_batch
from mixbench.mixups.resizemix import paste_resized
from mixbench.registry import MIXUPS, build

pytestmark = pytest.mark.reference


@pytest.fixture(params=["mask", "host"], autouse=True)
def path(request, monkeypatch):
    """Every equivalence holds on the vectorised mask path and on the CPU per-row host path (forced here)."""
    monkeypatch.setattr(_ops, "HOST_ROW_BYTES", 0 if request.param == "host" else 1 << 62)
    return request.param

K = 10
N, H, W = 8, 20, 24


def data(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 3, H, W), generator=g), torch.randint(0, K, (n,), generator=g)


def t(v, dtype=torch.int64):
    return torch.as_tensor(np.asarray(v)).reshape(-1).to(dtype)


# ---------------------------------------------------------------------------------------------- timm
def run_timm(monkeypatch, kwargs, x, y, seed):
    """Run timm's Mixup and record its draws: (λ, use_cutmix) per batch/elem and every box it cut."""
    timm_mixup = pytest.importorskip("timm.data.mixup")
    rec = {"boxes": []}
    orig_box = timm_mixup.cutmix_bbox_and_lam

    def box_spy(*a, **k):
        out = orig_box(*a, **k)
        rec["boxes"].append(out[0])
        return out
    monkeypatch.setattr(timm_mixup, "cutmix_bbox_and_lam", box_spy)
    mix = timm_mixup.Mixup(num_classes=K, **kwargs)
    for name in ("_params_per_batch", "_params_per_elem"):
        orig = getattr(mix, name)

        def spy(*a, _orig=orig, **k):
            lam, use_cut = _orig(*a, **k)
            rec["params"] = (np.array(lam, dtype=np.float64, copy=True), np.array(use_cut, copy=True))
            return lam, use_cut
        setattr(mix, name, spy)
    np.random.seed(seed)
    xt, target = mix(x.clone(), y)
    return xt, target, rec


def timm_params_to_mixbench(rec, mode, n):
    lam, use_cut = rec["params"]
    lam, use_cut = np.atleast_1d(lam), np.atleast_1d(use_cut)
    k = lam.shape[0]
    boxes = np.zeros((k, 4), dtype=np.int64)
    it = iter(rec["boxes"])
    for i in range(k):
        if use_cut[i] and lam[i] != 1.0:
            boxes[i] = [int(v) for v in next(it)]
    lam_t, cut_t = torch.tensor(lam), torch.tensor(use_cut)
    box = tuple(torch.tensor(boxes[:, j]) for j in range(4))
    if mode == "pair":
        lam_t, cut_t = torch.cat([lam_t, lam_t.flip(0)]), torch.cat([cut_t, cut_t.flip(0)])
        box = tuple(torch.cat([b, b.flip(0)]) for b in box)
    return lam_t, cut_t, box


TIMM_CASES = [
    dict(mixup_alpha=1.0, cutmix_alpha=0.0),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=0.6),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=[0.2, 0.8]),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False),
]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("case", range(len(TIMM_CASES)))
def test_timm_mixup_equivalence(monkeypatch, case, mode, smoothing):
    kwargs = dict(TIMM_CASES[case], mode=mode, label_smoothing=smoothing)
    x, y = data(case)
    policy = build(MIXUPS, {"type": "timm_mix", **kwargs}, "mixup")
    plain = build(MIXUPS, {"type": "timm_mix", **kwargs, "label_smoothing": 0.0}, "mixup")
    for seed in range(4):
        xt, target, rec = run_timm(monkeypatch, kwargs, x, y, seed)
        lam, cut, box = timm_params_to_mixbench(rec, mode, N)
        index = torch.arange(N - 1, -1, -1)
        b = policy.mix_with(x, y, K, lam=lam, use_cutmix=cut, box=box, index=index)
        torch.testing.assert_close(b.inputs, xt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.targets, target, atol=1e-5, rtol=1e-5)
        # label smoothing in the loss gives timm's smoothed target from the unsmoothed policy output
        b0 = plain.mix_with(x, y, K, lam=lam, use_cutmix=cut, box=box, index=index)
        torch.testing.assert_close(smooth_targets(b0.targets, smoothing), target, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------- torchvision
def test_torchvision_mixup_equivalence():
    v2 = pytest.importorskip("torchvision.transforms.v2")
    x, y = data(1)
    for seed in range(5):
        torch.manual_seed(seed)
        xt, target = v2.MixUp(alpha=1.0, num_classes=K)(x, y)
        torch.manual_seed(seed)
        lam = torch.distributions.Beta(torch.tensor([1.0]), torch.tensor([1.0])).sample(()).reshape(1)
        b = mixup_batch(x, y, K, lam, torch.arange(N).roll(1))
        torch.testing.assert_close(b.inputs, xt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.targets, target, atol=1e-6, rtol=1e-6)


def test_torchvision_cutmix_equivalence():
    v2 = pytest.importorskip("torchvision.transforms.v2")
    x, y = data(2)
    for seed in range(10):
        torch.manual_seed(seed)
        xt, target = v2.CutMix(alpha=1.0, num_classes=K)(x, y)
        torch.manual_seed(seed)
        lam = torch.distributions.Beta(torch.tensor([1.0]), torch.tensor([1.0])).sample(()).reshape(1)
        cx, cy = torch.randint(W, (1,)), torch.randint(H, (1,))
        # torchvision's half-sides int(0.5·√(1−λ)·W) equal clovaai's ⌊⌊√(1−λ)·W⌋/2⌋
        box = box_from_lam(lam, cy, cx, H, W, rounding="clovaai")
        b = paste_boxes(x, y, K, torch.arange(N).roll(1), box)
        torch.testing.assert_close(b.inputs, xt, atol=0, rtol=0)
        torch.testing.assert_close(b.targets, target, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------- mmpretrain
@pytest.fixture(scope="module")
def mmpre():
    return pytest.importorskip("mmpretrain.models.utils.batch_augments")


def _mm_draws(seed, lam_fn=lambda v: v):
    np.random.seed(seed)
    torch.manual_seed(seed)
    lam = lam_fn(np.random.beta(1.0, 1.0))
    index = torch.randperm(N)
    return lam, index


def test_mmpretrain_mixup_equivalence(mmpre):
    x, y = data(3)
    for seed in range(5):
        np.random.seed(seed), torch.manual_seed(seed)
        xt, target = mmpre.Mixup(alpha=1.0)(x.clone(), one_hot(y, K))
        lam, index = _mm_draws(seed)
        b = mixup_batch(x, y, K, torch.tensor([lam]), index)
        torch.testing.assert_close(b.inputs, xt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.targets, target, atol=1e-6, rtol=1e-6)


def test_mmpretrain_cutmix_equivalence(mmpre):
    x, y = data(4)
    for seed in range(8):
        np.random.seed(seed), torch.manual_seed(seed)
        xt, target = mmpre.CutMix(alpha=1.0)(x.clone(), one_hot(y, K))
        lam, index = _mm_draws(seed)
        cy, cx = np.random.randint(0, H), np.random.randint(0, W)
        box = box_from_lam(torch.tensor([lam]), t(cy), t(cx), H, W, rounding="clovaai")
        b = paste_boxes(x, y, K, index, box)
        torch.testing.assert_close(b.inputs, xt, atol=0, rtol=0)
        torch.testing.assert_close(b.targets, target, atol=1e-6, rtol=1e-6)


def test_mmpretrain_resizemix_equivalence(mmpre):
    x, y = data(5)
    for seed in range(8):
        np.random.seed(seed), torch.manual_seed(seed)
        xt, target = mmpre.ResizeMix(alpha=1.0)(x.clone(), one_hot(y, K))
        lam, index = _mm_draws(seed, lambda v: v * (0.8 - 0.1) + 0.1)
        cy, cx = np.random.randint(0, H), np.random.randint(0, W)
        box = box_from_lam(torch.tensor([lam]), t(cy), t(cx), H, W, rounding="clovaai")
        b = paste_resized(x, y, K, index, box, interpolation="bilinear")
        torch.testing.assert_close(b.inputs, xt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.targets, target, atol=1e-6, rtol=1e-6)
