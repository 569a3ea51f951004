"""Derived splits of an in-memory dataset: the held-out part of the training split, relabelled copies.

The held-out split (``data.holdout``) is kept apart from training: temperature scaling fits on it for
classification, and regression selects the epoch by it. It is a pure function of the training split's size,
the fraction and the run seed (:func:`heldout_split`), so it is recorded by those three numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.datasets.base import ImageDataset, TensorImageDataset
from mixbench.errors import ConfigError

# Stream of the held-out draw, so it does not coincide with any other use of the run seed.
HELDOUT_STREAM = 7_368_787


def heldout_size(n: int, fraction: float) -> int:
    """How many of ``n`` training samples the held-out split takes: ``round(fraction · n)``, at least 1 and at
    most ``n − 1`` (0 when ``n < 2``)."""
    return max(0, min(max(1, int(round(fraction * n))), n - 1))


def heldout_split(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, heldout)`` sorted int64 indices: :func:`heldout_size` samples drawn uniformly."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + HELDOUT_STREAM)
    perm = torch.randperm(n, generator=g)
    k = heldout_size(n, fraction)
    return perm[k:].sort().values, perm[:k].sort().values


def _tensors(dataset: ImageDataset, what: str) -> tuple[Tensor, Tensor]:
    tensors = dataset.tensors()
    if tensors is None:
        raise ConfigError(f"{what}: needs an in-memory dataset; {type(dataset).__name__} reads files")
    return tensors


def derived(dataset: ImageDataset, images: Tensor, labels: Tensor, groups: Tensor | None) -> TensorImageDataset:
    """A dataset with the given tensors and ``dataset``'s classes and normalisation statistics."""
    return TensorImageDataset(images, labels, dataset.num_classes, mean=dataset.mean, std=dataset.std,
                              classes=getattr(dataset, "classes", None), groups=groups)


def subset(dataset: ImageDataset, indices: Tensor, what: str = "data.holdout") -> TensorImageDataset:
    """The samples ``indices`` of an in-memory dataset (statistics unchanged: those of the full split)."""
    images, labels = _tensors(dataset, what)
    groups = getattr(dataset, "groups", None)
    return derived(dataset, images[indices], labels[indices], None if groups is None else groups[indices])


def relabelled(dataset: ImageDataset, labels: Tensor, what: str = "data.label_noise") -> TensorImageDataset:
    """An in-memory dataset with its labels replaced (label noise)."""
    images, _ = _tensors(dataset, what)
    return derived(dataset, images, labels, getattr(dataset, "groups", None))
