"""Offline hand-written digits: scikit-learn's ``load_digits`` upsampled to a small image size.

The 1,797 8×8 images (UCI optical digits, 10 classes) ship inside scikit-learn, so this dataset needs no
download and no ``root``. mixbench splits them once with a fixed seed (stratified, 80/20: 1,437 train /
360 val), upsamples bilinearly to ``size``×``size`` (16 by default: room for a random crop and for a ViT with
4×4 patches) and stores them as single-channel uint8 in 0..255.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.datasets.base import TensorImageDataset, channel_stats, check_split
from mixbench.errors import ConfigError
from mixbench.registry import DATASETS

VAL_FRACTION = 0.2


@functools.lru_cache(maxsize=4)
def _digits(size: int, split_seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # N×1×8×8, values 0..16
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    idx_train, idx_val = train_test_split(torch.arange(len(labels)).numpy(), test_size=VAL_FRACTION,
                                          random_state=split_seed, stratify=labels.numpy())
    idx_train, idx_val = torch.as_tensor(idx_train), torch.as_tensor(idx_val)
    return {"train": (images[idx_train], labels[idx_train]), "val": (images[idx_val], labels[idx_val])}


@DATASETS.register_module("digits")
def digits(split: str, root: str | None = None, size: int = 16, repeat: int = 1,
           split_seed: int = 0, train_size: int | None = None) -> TensorImageDataset:
    """Offline scikit-learn digits (10 classes), 1×size×size uint8; 1,437 train / 360 val images.

    Args:
        split: ``"train"`` or ``"val"``.
        root: unused (the data ships with scikit-learn); accepted so every dataset has the same signature.
        size: output side length; the 8×8 originals are upsampled bilinearly.
        repeat: the training split is repeated this many times per epoch (larger epochs for tiny runs);
            the validation split is never repeated.
        split_seed: seed of the stratified train/val split (``0`` is the documented split).
        train_size: keep only the first ``train_size`` training images (the split is already shuffled, so
            every class stays represented); for quick end-to-end tests. ``None`` keeps all 1,437. The
            normalisation statistics stay those of the full training split, and validation is never cut.
    """
    check_split(split, "digits")
    if size < 8:
        raise ConfigError(f"data.params.size: digits needs size >= 8, got {size}")
    if repeat < 1:
        raise ConfigError(f"data.params.repeat: expected an int >= 1, got {repeat}")
    if train_size is not None and not 1 <= int(train_size):
        raise ConfigError(f"data.params.train_size: expected null or an int >= 1, got {train_size}")
    parts = _digits(int(size), int(split_seed))
    mean, std = channel_stats(parts["train"][0])
    images, labels = parts[split]
    if split == "train" and train_size is not None:
        images, labels = images[: int(train_size)], labels[: int(train_size)]
    if split == "train" and repeat > 1:
        images, labels = images.repeat(repeat, 1, 1, 1), labels.repeat(repeat)
    return TensorImageDataset(images, labels, 10, mean=mean, std=std)
