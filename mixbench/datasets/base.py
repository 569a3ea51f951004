"""The dataset contract every registered dataset satisfies (interface A).

A dataset yields ``(uint8 tensor C×H×W, label)`` pairs and describes itself with ``num_classes`` (or
``num_targets`` for regression), ``image_size``, ``in_chans`` and the per-channel ``mean``/``std`` in 0..255
units (the classifier's data preprocessor normalises with them; loaders never normalise). The label is what the
task reads: an int class index for classification, a float vector (D,) for regression; the model's data
preprocessor casts it to the task's label type. Tabular data is stored as float32 N×F×1×1 "images" (one
channel per feature, normalised per channel like pixels). An optional ``groups`` tensor (N,) int64 names
each sample's group for worst-group metrics. Small sets live in memory and expose them through
:meth:`ImageDataset.tensors`, which the device-resident loader copies to the training device once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mixbench.errors import ConfigError

SPLITS = ("train", "val")
F = TypeVar("F", bound=Callable[..., Any])

# Datasets that ship their own held-out split (``data.holdout: dataset``) also accept ``heldout``.
SPLITS_WITH_HELDOUT = SPLITS + ("heldout",)


def check_split(split: str, name: str, splits: tuple[str, ...] = SPLITS) -> None:
    """Raise a one-line :class:`ConfigError` unless ``split`` is one of ``splits`` (``train``/``val``)."""
    if split not in splits:
        raise ConfigError(f"data.split: dataset '{name}' has splits {list(splits)}, got {split!r}")


def require_path(path: str | Path, name: str, layout: str) -> Path:
    """Return ``path`` if it exists, else raise a :class:`ConfigError` naming it and the expected layout."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"data.root: {name} file not found: {path}; expected layout {layout}")
    return path


def require_root(root: str | None, name: str, layout: str) -> Path:
    """Check that a dataset root was configured and is a directory."""
    if root is None or str(root) == "":
        raise ConfigError(f"data.root: dataset '{name}' needs a local root directory; expected layout {layout}")
    path = require_path(root, name, layout)
    if not path.is_dir():
        raise ConfigError(f"data.root={str(root)!r}: expected a directory, got a file; {name} expects layout {layout}")
    return path


def probed_by(probe: Callable[..., int]) -> Callable[[F], F]:
    """Give a dataset factory a cheap check of its files: ``probe(split, root=..., **params)`` raises what the
    factory would raise about a missing or malformed root and returns the split's size, without decoding
    or loading any image (so the check can run before a run starts, see :func:`split_size`)."""
    def attach(factory: F) -> F:
        factory.probe = probe  # type: ignore[attr-defined]
        return factory
    return attach


def split_size(factory: Callable[..., ImageDataset], split: str, root: str | None, params: dict) -> int:
    """Size of ``split`` of a registered dataset, after checking its files: the factory's probe when it has
    one (file-backed datasets), else the length of the built split (in-memory datasets are cheap to build)."""
    probe = getattr(factory, "probe", None)
    if probe is not None:
        return int(probe(split, root=root, **params))
    return len(factory(split, root=root, **params))


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0..255 units) of a uint8 N×C×H×W tensor."""
    x = images.to(torch.float64).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-6).tolist())


class ImageDataset(Dataset):
    """Base class of mixbench datasets: uint8 C×H×W images and int labels.

    Attributes:
        num_classes: number of classes.
        image_size: (H, W) of every returned image.
        in_chans: channels of every returned image.
        mean: per-channel mean in 0..255 units (statistics of the training split).
        std: per-channel std in 0..255 units.
        classes: class names, index = label.
    """

    num_classes: int
    image_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    groups: Tensor | None = None

    def tensors(self) -> tuple[Tensor, Tensor] | None:
        """``(images N×C×H×W, labels (N,) or (N, D))`` when the whole split is in memory, else ``None``."""
        return None

    def uncropped(self, i: int) -> tuple[Tensor, Any]:
        """``(image, label)`` of item ``i`` before any resize or crop of the dataset's own, for crops that draw
        from the whole picture (RandomResizedCrop); an in-memory dataset holds nothing larger than ``self[i]``."""
        return self[i]

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"{type(self).__name__}(n={len(self)}, classes={self.num_classes}, "
                f"shape={self.in_chans}x{h}x{w})")


class TensorImageDataset(ImageDataset):
    """An in-memory dataset backed by one image tensor and one label tensor.

    Args:
        images: uint8 N×C×H×W images, or float32 N×F×1×1 tabular features.
        labels: (N,) class indices, or (N, D) float targets (then ``num_targets`` = D).
        num_classes: number of classes (0 for regression).
        mean: per-channel mean (0..255); computed from ``images`` when ``None``.
        std: per-channel std (0..255); computed from ``images`` when ``None``.
        classes: class names; ``["0", "1", ...]`` when ``None``.
    """

    def __init__(self, images: Tensor, labels: Tensor, num_classes: int,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 classes: Sequence[str] | None = None, groups: Tensor | None = None):
        if images.dtype not in (torch.uint8, torch.float32) or images.dim() != 4:
            raise ValueError(f"images must be uint8 or float32 N×C×H×W, got {images.dtype} {tuple(images.shape)}")
        if labels.dim() not in (1, 2) or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must have shape ({images.shape[0]},) or ({images.shape[0]}, D), "
                             f"got {tuple(labels.shape)}")
        self.images = images.contiguous()
        self.labels = labels.contiguous()
        self.groups = None if groups is None else groups.to(torch.int64).contiguous()
        self.num_classes = int(num_classes)
        self.num_targets = int(labels.shape[1]) if labels.dim() == 2 else 0
        self.in_chans = int(images.shape[1])
        self.image_size = (int(images.shape[2]), int(images.shape[3]))
        if mean is None or std is None:
            mean, std = channel_stats(images)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int | Tensor]:
        """``(image, label)``: an int class index, or the (D,) float target row of a regression set."""
        if self.labels.dim() == 1 and not self.labels.is_floating_point():
            return self.images[i], int(self.labels[i])
        return self.images[i], self.labels[i]

    def tensors(self) -> tuple[Tensor, Tensor]:
        return self.images, self.labels
