"""Offline regression datasets: scikit-learn's diabetes, and RC-Digits (rotated, spuriously coloured digits).

Both ship with scikit-learn and split once with a fixed seed into ``train`` / ``heldout`` (model selection,
``data.holdout: dataset``) / ``val`` (the test split every epoch is scored on), 60/20/20 as C-Mixup's
Airfoil split (1003/300/200 of 1,503).

* **diabetes** (Efron et al. 2004): 442 patients × 10 standardised features → disease progression one year
  later (25..346); features stored as float32 N×10×1×1, targets (N, 1) in the original units.
* **RC-Digits**: C-Mixup's RCF-MNIST construction (``src/data/RCF_MNIST.py``) on the 1,797 digits: each image
  upsampled to ``size``, rotated by θ ~ U[0, 360) with target y = θ / 360, and coloured R·r, G·0, B·(1 − r).
  In ``train`` 80 % of the samples take r = y (a spurious link between colour and target) and 20 % r = 1 − y;
  ``heldout`` has no spurious link (r ~ U[0, 1]); ``val`` inverts it (80 % r = 1 − y). ``groups`` marks
  r = y (0) and r = 1 − y (1); the worst-group metrics are taken over them.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.datasets.base import SPLITS_WITH_HELDOUT, TensorImageDataset, channel_stats, check_split
from mixbench.errors import ConfigError
from mixbench.registry import DATASETS

FRACTIONS = (0.6, 0.2, 0.2)  # train / heldout / val
SPURIOUS = 0.8


def three_way(n: int, seed: int) -> dict[str, Tensor]:
    """Seeded 60/20/20 split of ``range(n)`` into ``train``/``heldout``/``val`` index tensors."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a = int(round(FRACTIONS[0] * n))
    b = a + int(round(FRACTIONS[1] * n))
    return {"train": perm[:a], "heldout": perm[a:b], "val": perm[b:]}


@DATASETS.register_module("diabetes")
def diabetes(split: str, root: str | None = None, split_seed: int = 0) -> TensorImageDataset:
    """scikit-learn diabetes regression (442 × 10 → 1 target); 265 train / 88 heldout / 89 val.

    Args:
        split: ``train``, ``heldout`` or ``val``.
        root: unused (the data ships with scikit-learn).
        split_seed: seed of the 60/20/20 split.
    """
    from sklearn.datasets import load_diabetes

    check_split(split, "diabetes", SPLITS_WITH_HELDOUT)
    x, y = load_diabetes(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32).view(len(x), -1, 1, 1)
    y = torch.as_tensor(y, dtype=torch.float32).view(-1, 1)
    parts = three_way(len(y), split_seed)
    mean, std = channel_stats(x[parts["train"]])
    idx = parts[split]
    return TensorImageDataset(x[idx], y[idx], 0, mean=mean, std=std, classes=[])


def rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Rotate N×C×H×W float images counter-clockwise by per-sample angles (bilinear, zero fill)."""
    t = degrees.double() * math.pi / 180.0
    cos, sin = torch.cos(t).float(), torch.sin(t).float()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def colour(grey: Tensor, r: Tensor) -> Tensor:
    """Grey N×1×H×W in [0, 1] → RGB with R = grey·r, G = 0, B = grey·(1 − r) (RCF-MNIST's colouring)."""
    rv = r.view(-1, 1, 1, 1)
    return torch.cat([grey * rv, torch.zeros_like(grey), grey * (1 - rv)], 1)


@functools.lru_cache(maxsize=4)
def _rc_digits(size: int, seed: int) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    g = torch.Generator().manual_seed(seed)
    degrees = torch.rand(len(x), generator=g, dtype=torch.float64) * 360.0
    y = (degrees / 360.0).float()
    x = rotate(x, degrees)
    out = {}
    for split, idx in three_way(len(x), seed).items():
        yy = y[idx]
        flip = torch.rand(len(idx), generator=g) >= SPURIOUS  # the 20 % minority of each split
        if split == "train":
            inverted = flip
        elif split == "val":
            inverted = ~flip
        else:
            inverted = torch.zeros(len(idx), dtype=torch.bool)
        r = torch.where(inverted, 1 - yy, yy)
        if split == "heldout":
            r = torch.rand(len(idx), generator=g)
        rgb = (colour(x[idx], r) * 255).round().clamp(0, 255).to(torch.uint8)
        out[split] = (rgb, yy.view(-1, 1), inverted.long())
    return out


@DATASETS.register_module("rc_digits")
def rc_digits(split: str, root: str | None = None, size: int = 16, split_seed: int = 0) -> TensorImageDataset:
    """RC-Digits: rotation-angle regression on coloured digits with a spurious colour link that the test split
    inverts (C-Mixup's RCF-MNIST on scikit-learn digits); 3×size×size uint8, target θ/360 in [0, 1).

    Args:
        split: ``train`` (1,078), ``heldout`` (359, no spurious colour) or ``val`` (360, inverted colour).
        root: unused (the data ships with scikit-learn).
        size: side length after upsampling the 8×8 digits (≥ 8).
        split_seed: seed of the rotations, colours and the 60/20/20 split.
    """
    check_split(split, "rc_digits", SPLITS_WITH_HELDOUT)
    if size < 8:
        raise ConfigError(f"data.params.size: rc_digits needs size >= 8, got {size}")
    parts = _rc_digits(int(size), int(split_seed))
    mean, std = channel_stats(parts["train"][0])
    images, targets, groups = parts[split]
    return TensorImageDataset(images, targets, 0, mean=mean, std=std, classes=[], groups=groups)
