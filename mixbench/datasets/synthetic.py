"""A seeded, learnable synthetic image dataset (class templates plus noise).

Each class has a smooth random template (a coarse random grid upsampled bicubically); a sample is its class
template, randomly shifted by a few pixels and scaled in contrast, plus per-pixel Gaussian noise. Any model
can learn it, nothing is downloaded, and with ``num_classes=100, image_size=32, in_chans=3,
train_size=50000, val_size=10000`` it has the shape of CIFAR-100, which is what GPU speed benchmarks use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.datasets.base import TensorImageDataset, check_split
from mixbench.errors import ConfigError
from mixbench.registry import DATASETS

_CHUNK = 4096  # samples generated at a time: bounds the float32 working memory


def _templates(num_classes: int, in_chans: int, size: int, gen: torch.Generator) -> Tensor:
    coarse = torch.rand(num_classes, in_chans, 4, 4, generator=gen)
    fine = torch.rand(num_classes, in_chans, 8, 8, generator=gen)
    up = lambda t: F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)  # noqa: E731
    t = 0.7 * up(coarse) + 0.3 * up(fine)
    return (t - t.mean(dim=(1, 2, 3), keepdim=True)) * 255.0  # zero-mean patterns, roughly ±90 grey levels


def _samples(templates: Tensor, labels: Tensor, noise: float, max_shift: int, gen: torch.Generator) -> Tensor:
    n = labels.numel()
    out = torch.empty(n, *templates.shape[1:], dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        lab = labels[start:start + _CHUNK]
        m = lab.numel()
        x = templates[lab]
        shifts = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
        x = torch.roll(x, shifts=shifts, dims=(2, 3))  # one shift per chunk keeps generation vectorised
        contrast = 0.75 + 0.5 * torch.rand(m, 1, 1, 1, generator=gen)
        x = 127.5 + contrast * x + noise * torch.randn(x.shape, generator=gen)
        out[start:start + m] = x.round().clamp(0, 255).to(torch.uint8)
    return out


@DATASETS.register_module("synthetic")
def synthetic(split: str, root: str | None = None, num_classes: int = 10, image_size: int = 32,
              in_chans: int = 3, train_size: int = 5000, val_size: int = 1000, noise: float = 48.0,
              max_shift: int = 2, seed: int = 0) -> TensorImageDataset:
    """Seeded synthetic images: class templates + shift + contrast + Gaussian noise (learnable, offline).

    Args:
        split: ``"train"`` or ``"val"``.
        root: unused; accepted so every dataset has the same signature.
        num_classes: number of classes (balanced: label ``i % num_classes``, then shuffled).
        image_size: side length of the square images.
        in_chans: channels.
        train_size: images in the training split.
        val_size: images in the validation split.
        noise: std of the per-pixel Gaussian noise in grey levels (0..255 units).
        max_shift: templates are rolled by up to this many pixels.
        seed: the same seed gives the same templates and images; splits use distinct streams.
    """
    check_split(split, "synthetic")
    for key, value in (("num_classes", num_classes), ("image_size", image_size), ("in_chans", in_chans),
                       ("train_size", train_size), ("val_size", val_size)):
        if value < 1:
            raise ConfigError(f"data.params.{key}: expected a positive int, got {value}")
    gen = torch.Generator().manual_seed(seed)
    templates = _templates(num_classes, in_chans, image_size, gen)
    n = train_size if split == "train" else val_size
    gen.manual_seed(seed * 2 + (1 if split == "train" else 2) + 1_000_003)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    images = _samples(templates, labels, noise, max_shift, gen)
    # Known by construction (contrast is mean-one around grey 127.5): exact per-split stats are not needed.
    mean = (127.5,) * in_chans
    std = (float((templates.var().item() + noise ** 2) ** 0.5),) * in_chans
    return TensorImageDataset(images, labels, num_classes, mean=mean, std=std)
