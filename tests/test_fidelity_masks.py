"""FMix and GridMix masks against NumPy transcriptions of the reference algorithms, with the same draws injected."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext
from mixbench.mixups.fmix import reference_low_freq_image, reference_rows
from mixbench.mixups.gridmix import grid_holes
from mixbench.registry import MIXUPS, build

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from gridmix_crop import draw, mixbench_holes, reference_holes  # noqa: E402

K = 5


# ---------------------------------------------------------------------------------------------- FMix
def reference_fmix_image(param: np.ndarray, h: int, w: int, decay: float) -> np.ndarray:
    """ecs-vlc/FMix ``make_low_freq_image`` (and OpenMixup's copy) for a given ``param`` (1, H, R, 2)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 else np.fft.fftfreq(w)[: w // 2 + 1]
    scale = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(h, w)) ** decay
    spectrum = scale[None, :, :, None] * param
    spectrum = spectrum[:, 0] + 1j * spectrum[:, 1]
    mask = np.real(np.fft.irfftn(spectrum, (h, w), axes=(-2, -1)))[:1, :h, :w]
    mask = mask - mask.min()
    return mask / mask.max()


def reference_binarise(mask: np.ndarray, lam: float, round_up: bool, max_soft: float) -> np.ndarray:
    """ecs-vlc/FMix ``binarise_mask`` with its ``random.random() > 0.5`` coin given as ``round_up``."""
    idx = mask.reshape(-1).argsort()[::-1]
    mask = mask.reshape(-1).copy()
    num = math.ceil(lam * mask.size) if round_up else math.floor(lam * mask.size)
    eff_soft = min(lam, 1 - lam) if max_soft > lam or max_soft > 1 - lam else max_soft
    soft = int(mask.size * eff_soft)
    lo, hi = num - soft, num + soft
    mask[idx[:hi]] = 1
    mask[idx[lo:]] = 0
    mask[idx[lo:hi]] = np.linspace(1, 0, hi - lo)
    return mask


@pytest.mark.parametrize("h, w", [(32, 32), (20, 24), (17, 15), (8, 30), (224, 224)])
@pytest.mark.parametrize("decay", [3.0, 1.5])
def test_fmix_reference_spectrum_matches_transcription(h, w, decay):
    for seed in range(5):
        param = np.random.RandomState(seed).randn(1, h, reference_rows(w), 2)
        ours = reference_low_freq_image(torch.from_numpy(param[:, :2]), h, w, decay)
        np.testing.assert_allclose(ours.numpy(), reference_fmix_image(param, h, w, decay), rtol=0, atol=1e-12)


@pytest.mark.parametrize("max_soft", [0.0, 0.1])
def test_fmix_policy_reproduces_reference_masks(max_soft):
    """The whole FMix step with ``spectrum: reference``: the reference's λ, spectrum draws and rounding coin
    injected give its mask exactly, and the noise that ``sample`` draws has the shape the generator reads."""
    h, w = 16, 18
    policy = build(MIXUPS, {"type": "fmix", "alpha": 1.0, "spectrum": "reference", "max_soft": max_soft}, "mixup")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, h, w, generator=g), torch.randint(0, K, (4,), generator=g)
    drawn = policy.sample(x, y, MixContext(generator=torch.Generator().manual_seed(1)))
    assert drawn["noise"].shape == (1, 2, reference_rows(w), 2)
    for seed in range(20):
        rng, coin = np.random.RandomState(seed), random.Random(seed)
        lam, param, round_up = rng.beta(1.0, 1.0), rng.randn(1, h, reference_rows(w), 2), coin.random() > 0.5
        expected = reference_binarise(reference_fmix_image(param, h, w, 3.0), lam, round_up, max_soft)
        out = policy.mix_with(x, y, K, lam=torch.tensor([lam]), noise=torch.from_numpy(param[:, :2]).float(),
                              round_up=torch.tensor([round_up]), index=drawn["index"])
        np.testing.assert_allclose(out.mask[0, 0].flatten().numpy(), expected, rtol=0, atol=1e-6)


def test_fmix_spectrum_option_is_checked():
    with pytest.raises(ConfigError, match="mixup.spectrum: expected one of"):
        build(MIXUPS, {"type": "fmix", "spectrum": "openmixup"}, "mixup")


def test_fmix_reference_spectrum_keeps_two_x_frequencies():
    """What the reference generator is: all power in x-frequencies 0 and 1/W; the paper's spreads over all."""
    h = w = 32
    param = torch.randn(8, 2, reference_rows(w), 2, generator=torch.Generator().manual_seed(0))
    power = torch.fft.rfft2(reference_low_freq_image(param, h, w, 3.0)).abs().pow(2).sum(0)
    assert power[:, 2:].sum() < 1e-20 * power.sum()


# ---------------------------------------------------------------------------------------------- GridMix
@pytest.mark.parametrize("h, w", [(32, 32), (24, 40), (31, 29)])
def test_gridmix_matches_reference_with_clipped_slices(h, w):
    """Every draw at OpenMixup's ranges, including the ~half whose crop is wider or taller than the image,
    gives the reference's mask once its slices are clipped to the image."""
    rng = np.random.RandomState(0)
    for _ in range(300):
        d = draw(rng, 0.2)
        np.testing.assert_array_equal(mixbench_holes(h, w, d), reference_holes(h, w, **d, clip=True))


@pytest.mark.parametrize("h, w", [(32, 32), (24, 40), (31, 29)])
def test_gridmix_edges_reference_reproduces_python_slicing(h, w):
    """``edges: reference``: the reference's own masks, holes dropped or wrapped by negative slices included."""
    rng = np.random.RandomState(2)
    for _ in range(300):
        d = draw(rng, 0.2)
        np.testing.assert_array_equal(mixbench_holes(h, w, d, "reference"), reference_holes(h, w, **d))


def test_gridmix_edges_reference_wraps_far_crops():
    """A crop starting far before the image (aspect 0.1: cut_w = 101 on 32 px, x0 = −34): holes wholly
    before the image reappear at its far end, straddling ones vanish, as with the reference's slices."""
    d = {"lam": 0.3, "n_holes": 5, "hole_aspect": 1.0, "cut_area": 1.0, "cut_aspect": 0.1, "ux": 0.5, "uy": 0.5}
    ours, ref = mixbench_holes(32, 32, d, "reference"), reference_holes(32, 32, **d)
    np.testing.assert_array_equal(ours, ref)
    assert not np.array_equal(ours, mixbench_holes(32, 32, d, "clip"))


def test_gridmix_edges_option_is_checked():
    with pytest.raises(ConfigError, match="mixup.edges: expected 'clip' or 'reference'"):
        build(MIXUPS, {"type": "gridmix", "edges": "wrap"}, "mixup")


def test_gridmix_matches_reference_exactly_when_the_crop_fits():
    rng, fits = np.random.RandomState(1), 0
    for _ in range(300):
        d = draw(rng, 0.2)
        area = int(32 * 32 * d["cut_area"])
        cut_w = int(np.sqrt(area / d["cut_aspect"]))
        if cut_w <= 32 and int(cut_w * d["cut_aspect"]) <= 32:
            fits += 1
            np.testing.assert_array_equal(mixbench_holes(32, 32, d), reference_holes(32, 32, **d))
    assert fits > 50


def test_gridmix_wide_crop_keeps_the_reference_height():
    """A crop wider than the image: the height comes from the unclamped width, the offset is truncated
    towards zero, and the grid pitch divides the unclamped width (hand-computed)."""
    # 32×32, area ratio 1 → 1024 px; aspect 0.5 → cut_w = int(sqrt(2048)) = 45, cut_h = int(22.5) = 22;
    # x0 = int((32 − 45)·0.5) = int(−6.5) = −6; y0 = int((32 − 22)·0.5) = 5; 3 holes → patch 15 × 15;
    # λ = 0.75 → hole side int(15·0.5) = 7.
    shape = {"n_holes": 3.0, "hole_aspect": 1.0, "cut_area": 1.0, "cut_aspect": 0.5, "ux": 0.5, "uy": 0.5}
    holes = grid_holes({k: torch.tensor([v], dtype=torch.float64) for k, v in shape.items()},
                       torch.tensor([0.75]), 32, 32)[0, 0]
    rows = holes.any(1).nonzero().flatten().tolist()
    cols = holes.any(0).nonzero().flatten().tolist()
    assert rows == list(range(5, 12)) + list(range(20, 27))  # crop rows 0–6 and 15–21 of 22
    # crop columns 0–6, 15–21 and 30–36, shifted by −6 and clipped to the image
    assert cols == [0] + list(range(9, 16)) + list(range(24, 31))
    assert holes.sum() == 2 * 7 * 15
    # The reference's slice [-6:1] of the first hole is empty: it drops that column.
    ref = reference_holes(32, 32, lam=0.75, n_holes=3, **{k: v for k, v in shape.items() if k != "n_holes"})
    assert ref.any(0).nonzero()[0].tolist() == cols[1:]
