"""CIFAR-10 and CIFAR-100 from a local directory (torchvision's readers; never downloads).

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009). ``root`` holds the extracted
python-version archives: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
``<root>/cifar-100-python/{train,test,meta}`` (``root`` may also be that folder itself). Split ``val`` is the
official test set, as in every mixup paper. The whole split is kept in memory as uint8 N×3×32×32.
"""

from __future__ import annotations

import torch

from mixbench.datasets.base import (
    TensorImageDataset,
    check_split,
    probed_by,
    require_root,
)
from mixbench.errors import ConfigError
from mixbench.registry import DATASETS

# Per-channel statistics of the training splits in 0..255 units (the values mixup reference code uses).
CIFAR10_MEAN, CIFAR10_STD = (125.307, 122.961, 113.8575), (62.9932, 62.0887, 66.7048)
CIFAR100_MEAN, CIFAR100_STD = (129.304, 124.070, 112.434), (68.170, 65.392, 70.418)
# Both sets ship 50,000 training and 10,000 test images.
SPLIT_SIZES = {"train": 50_000, "val": 10_000}


def _unverified(cls: type) -> type:
    """The torchvision reader with md5 checks turned into presence checks (fast start, no download)."""
    return type(f"Local{cls.__name__}", (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _check_files(name: str, tv_cls: type, split: str, root: str | None) -> str:
    """The directory torchvision reads (``root`` or its parent), after checking that every file is there."""
    check_split(split, name)
    folder = tv_cls.base_folder
    files = [f for f, _ in tv_cls.train_list + tv_cls.test_list] + [tv_cls.meta["filename"]]
    layout = f"<root>/{folder}/{{{','.join(files)}}}"
    base = require_root(root, name, layout)
    if base.name == folder and not (base / folder).exists():
        base = base.parent  # root given as the archive folder itself
    for f in files:
        if not (base / folder / f).is_file():
            raise ConfigError(f"data.root: {name} file not found: {base / folder / f}; expected layout {layout}")
    return str(base)


def _load(name: str, tv_cls: type, split: str, root: str | None, verify: bool, num_classes: int,
          mean: tuple[float, ...], std: tuple[float, ...]) -> TensorImageDataset:
    base = _check_files(name, tv_cls, split, root)
    folder = tv_cls.base_folder
    reader = tv_cls if verify else _unverified(tv_cls)
    try:
        ds = reader(base, train=split == "train", download=False)
    except RuntimeError as err:  # md5 mismatch with verify=True
        raise ConfigError(f"data.root: {name} files under {base}/{folder} are corrupted ({err})") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return TensorImageDataset(images, labels, num_classes, mean=mean, std=std, classes=list(ds.classes))


def _probe_cifar10(split: str, root: str | None = None, verify: bool = False) -> int:
    from torchvision.datasets import CIFAR10

    _check_files("cifar10", CIFAR10, split, root)
    return SPLIT_SIZES[split]


def _probe_cifar100(split: str, root: str | None = None, verify: bool = False) -> int:
    from torchvision.datasets import CIFAR100

    _check_files("cifar100", CIFAR100, split, root)
    return SPLIT_SIZES[split]


@DATASETS.register_module("cifar10")
@probed_by(_probe_cifar10)
def cifar10(split: str, root: str | None = None, verify: bool = False) -> TensorImageDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (50,000 train / 10,000 val, 3×32×32).

    Args:
        split: ``"train"`` or ``"val"`` (the official test batch).
        root: directory that contains ``cifar-10-batches-py``.
        verify: check the files' md5 sums (slower start).
    """
    from torchvision.datasets import CIFAR10

    return _load("cifar10", CIFAR10, split, root, verify, 10, CIFAR10_MEAN, CIFAR10_STD)


@DATASETS.register_module("cifar100")
@probed_by(_probe_cifar100)
def cifar100(split: str, root: str | None = None, verify: bool = False) -> TensorImageDataset:
    """CIFAR-100 from ``<root>/cifar-100-python`` (50,000 train / 10,000 val, 3×32×32, 100 fine classes).

    Args:
        split: ``"train"`` or ``"val"`` (the official test file).
        root: directory that contains ``cifar-100-python``.
        verify: check the files' md5 sums (slower start).
    """
    from torchvision.datasets import CIFAR100

    return _load("cifar100", CIFAR100, split, root, verify, 100, CIFAR100_MEAN, CIFAR100_STD)
