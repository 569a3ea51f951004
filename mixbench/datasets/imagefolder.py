"""Image-file datasets: a generic class-per-folder layout plus ImageNet, Tiny-ImageNet, CUB-200-2011, Aircraft.

Every image is decoded with PIL, converted to RGB, resized so its shorter side is ``resize`` and center-cropped
to ``image_size``², and returned as uint8 3×H×W; :meth:`FileImageDataset.uncropped` returns the decoded file at
its own size, for the train loader's RandomResizedCrop. Files are read lazily (``tensors()`` is ``None``) unless
``in_memory=True``, which decodes the split once so the device-resident loader can use it (sensible for
Tiny-ImageNet-sized data). The layouts are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from mixbench.datasets.base import (
    ImageDataset,
    check_split,
    probed_by,
    require_path,
    require_root,
)
from mixbench.errors import ConfigError
from mixbench.registry import DATASETS

IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
Samples = tuple[list[tuple[Path, int]], list[str]]


def require_samples(samples: list[tuple[Path, int]], name: str) -> list[tuple[Path, int]]:
    """``samples`` unless the listing found no image."""
    if not samples:
        raise ConfigError(f"data.root: dataset '{name}' found no images ({', '.join(IMAGE_EXTENSIONS)})")
    return samples


def decode(path: Path, resize: int | None = None, image_size: int | None = None) -> Tensor:
    """Decode one file to uint8 3×H×W RGB; with ``resize`` and ``image_size``: shorter side to ``resize``
    (bilinear, antialiased), then a center crop to ``image_size``² (without them: the file's own size)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as img:
        img = img.convert("RGB")
        if resize is not None and image_size is not None:
            img = TF.resize(img, resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            img = TF.center_crop(img, [image_size, image_size])
        return TF.pil_to_tensor(img)


class FileImageDataset(ImageDataset):
    """A list of ``(path, label)`` files decoded on access (or once, with ``in_memory``).

    Args:
        samples: image paths and their labels.
        classes: class names, index = label.
        image_size: side of the square output.
        resize: shorter side before the center crop (defaults to ``image_size · 8/7``, e.g. 256 for 224).
        in_memory: decode everything now and keep it as one uint8 tensor.
        name: dataset name for messages.
    """

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], image_size: int,
                 resize: int | None = None, in_memory: bool = False, name: str = "imagefolder"):
        require_samples(samples, name)
        self.samples, self.classes, self.num_classes = samples, list(classes), len(classes)
        self.image_size, self.in_chans = (int(image_size), int(image_size)), 3
        self.resize = int(resize) if resize else round(image_size * 8 / 7)
        if self.resize < image_size:
            raise ConfigError(f"data.params.resize: must be >= image_size ({image_size}), got {self.resize}")
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self._cache: tuple[Tensor, Tensor] | None = None
        if in_memory:
            images = torch.stack([self._decode(i) for i in range(len(samples))])
            self._cache = images, torch.tensor([lab for _, lab in samples], dtype=torch.int64)

    def _decode(self, i: int) -> Tensor:
        return decode(self.samples[i][0], self.resize, self.image_size[0])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if self._cache is not None:
            return self._cache[0][i], int(self._cache[1][i])
        return self._decode(i), self.samples[i][1]

    def tensors(self) -> tuple[Tensor, Tensor] | None:
        return self._cache

    def uncropped(self, i: int) -> tuple[Tensor, int]:
        """The decoded file at its own size (the stored image with ``in_memory``: the file is not read again)."""
        if self._cache is not None:
            return self[i]
        return decode(self.samples[i][0]), self.samples[i][1]


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir())


def _folder_samples(split_dir: Path, classes: list[str], sub: str = "") -> list[tuple[Path, int]]:
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for cls in _class_dirs(split_dir):
        if cls not in index:
            raise ConfigError(f"data.root: class folder {split_dir / cls} does not exist in the training split")
        samples += [(p, index[cls]) for p in sorted((split_dir / cls / sub).rglob("*")) if _is_image(p)]
    return samples


def _split_folders(name: str, split: str, root: str | None, layout: str) -> Samples:
    check_split(split, name)
    base = require_root(root, name, layout)
    train_dir = require_path(base / "train", name, layout)
    split_dir = require_path(base / split, name, layout)
    classes = _class_dirs(train_dir)
    return _folder_samples(split_dir, classes), classes


def _probe(listing: Callable[[str, str | None], Samples], name: str) -> Callable[..., int]:
    """The probe of a file dataset (:func:`~mixbench.datasets.base.probed_by`): list the files, decode none."""
    def probe(split: str, root: str | None = None, **params: object) -> int:
        return len(require_samples(listing(split, root)[0], name))
    return probe


def _imagefolder_samples(split: str, root: str | None) -> Samples:
    return _split_folders("imagefolder", split, root, "<root>/{train,val}/<class>/<image>")


@DATASETS.register_module("imagefolder")
@probed_by(_probe(_imagefolder_samples, "imagefolder"))
def imagefolder(split: str, root: str | None = None, image_size: int = 224, resize: int | None = None,
                in_memory: bool = False) -> FileImageDataset:
    """Generic class-per-folder images: ``<root>/{train,val}/<class>/*.jpg`` (classes = train folders, sorted).

    Args:
        split: ``"train"`` or ``"val"``.
        root: the dataset directory.
        image_size: output side; resize: shorter side before the center crop (default ``image_size·8/7``).
        in_memory: decode the split once and keep it in memory (enables the device-resident loader).
    """
    samples, classes = _imagefolder_samples(split, root)
    return FileImageDataset(samples, classes, image_size, resize, in_memory, "imagefolder")


def _imagenet_samples(split: str, root: str | None) -> Samples:
    return _split_folders("imagenet", split, root, "<root>/{train,val}/<wnid>/<image>.JPEG")


@DATASETS.register_module("imagenet")
@probed_by(_probe(_imagenet_samples, "imagenet"))
def imagenet(split: str, root: str | None = None, image_size: int = 224, resize: int | None = 256,
             in_memory: bool = False) -> FileImageDataset:
    """ImageNet-1k with class-sorted val: ``<root>/{train,val}/<wnid>/*.JPEG`` (1,000 classes).

    Args:
        split: ``"train"`` or ``"val"``.
        root: the ILSVRC2012 directory with ``train/`` and ``val/`` sorted into wnid folders.
        image_size: output side (224); resize: shorter side before the center crop (256).
        in_memory: decode the split once and keep it in memory.
    """
    samples, classes = _imagenet_samples(split, root)
    return FileImageDataset(samples, classes, image_size, resize, in_memory, "imagenet")


def _tiny_imagenet_samples(split: str, root: str | None) -> Samples:
    check_split(split, "tiny_imagenet")
    layout = "<root>/train/<wnid>/images/*.JPEG and <root>/val/{val_annotations.txt,images/*.JPEG}"
    base = require_root(root, "tiny_imagenet", layout)
    train_dir = require_path(base / "train", "tiny_imagenet", layout)
    wnids = base / "wnids.txt"
    classes = wnids.read_text().split() if wnids.is_file() else _class_dirs(train_dir)
    if split == "train":
        return _folder_samples(train_dir, classes, "images"), classes
    ann = require_path(base / "val" / "val_annotations.txt", "tiny_imagenet", layout)
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for line in ann.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            if fields[1] not in index:
                raise ConfigError(f"data.root: {ann} names class '{fields[1]}' that is not a training class")
            samples.append((base / "val" / "images" / fields[0], index[fields[1]]))
    return samples, classes


@DATASETS.register_module("tiny_imagenet")
@probed_by(_probe(_tiny_imagenet_samples, "tiny_imagenet"))
def tiny_imagenet(split: str, root: str | None = None, image_size: int = 64, resize: int | None = 64,
                  in_memory: bool = False) -> FileImageDataset:
    """Tiny-ImageNet-200 as distributed (64×64, 200 classes, 100,000 train / 10,000 val).

    Layout: ``<root>/wnids.txt`` (optional; else the train folders), ``<root>/train/<wnid>/images/*.JPEG``,
    ``<root>/val/images/*.JPEG`` labelled by ``<root>/val/val_annotations.txt`` (file, wnid, box).

    Args:
        split: ``"train"`` or ``"val"``.
        root: the ``tiny-imagenet-200`` directory.
        image_size: output side (64); resize: shorter side before the center crop (64: no crop).
        in_memory: decode the split once and keep it in memory (≈1.2 GB for train).
    """
    samples, classes = _tiny_imagenet_samples(split, root)
    return FileImageDataset(samples, classes, image_size, resize, in_memory, "tiny_imagenet")


def _read_pairs(path: Path) -> dict[str, str]:
    """``id value`` lines (value may contain spaces) → dict."""
    pairs = (line.split(" ", 1) for line in path.read_text().splitlines() if line.strip())
    return {k: v.strip() for k, v in pairs}


def _cub_samples(split: str, root: str | None) -> Samples:
    check_split(split, "cub")
    layout = "<root>/{images.txt,image_class_labels.txt,train_test_split.txt,images/<class>/<image>.jpg}"
    base = require_root(root, "cub", layout)
    paths, labels, is_train = (_read_pairs(require_path(base / f, "cub", layout))
                               for f in ("images.txt", "image_class_labels.txt", "train_test_split.txt"))
    want = "1" if split == "train" else "0"
    ids = sorted((i for i in paths if is_train.get(i) == want), key=int)
    samples = [(base / "images" / paths[i], int(labels[i]) - 1) for i in ids]  # labels are 1-based
    names_file = base / "classes.txt"
    num_classes = max(int(v) for v in labels.values())
    classes = ([v for _, v in sorted(_read_pairs(names_file).items(), key=lambda kv: int(kv[0]))]
               if names_file.is_file() else [str(i) for i in range(num_classes)])
    return samples, classes


@DATASETS.register_module("cub")
@probed_by(_probe(_cub_samples, "cub"))
def cub(split: str, root: str | None = None, image_size: int = 224, resize: int | None = 256,
        in_memory: bool = False) -> FileImageDataset:
    """CUB-200-2011 birds (200 classes, 5,994 train / 5,794 val) with the official train/test split.

    Layout: ``<root>/{images.txt,image_class_labels.txt,train_test_split.txt}`` and ``<root>/images/``;
    ``classes.txt`` is used for names when present.

    Args:
        split: ``"train"`` or ``"val"`` (the official test images).
        root: the ``CUB_200_2011`` directory.
        image_size: output side (224); resize: shorter side before the center crop (256).
        in_memory: decode the split once and keep it in memory.
    """
    samples, classes = _cub_samples(split, root)
    return FileImageDataset(samples, classes, image_size, resize, in_memory, "cub")


def _aircraft_samples(split: str, root: str | None) -> Samples:
    check_split(split, "aircraft")
    layout = "<root>/data/{images_variant_trainval.txt,images_variant_test.txt,images/<id>.jpg}"
    base = require_root(root, "aircraft", layout)
    data = base if (base / "images").is_dir() and not (base / "data").is_dir() else base / "data"
    lists = {s: require_path(data / f"images_variant_{f}.txt", "aircraft", layout)
             for s, f in (("train", "trainval"), ("val", "test"))}
    variants = data / "variants.txt"
    if variants.is_file():
        classes = [v.strip() for v in variants.read_text().splitlines() if v.strip()]
    else:  # class order from both lists so train and val agree
        classes = sorted({v for p in lists.values() for v in _read_pairs(p).values()})
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for image_id, variant in _read_pairs(lists[split]).items():
        if variant not in index:
            raise ConfigError(f"data.root: {lists[split]} names variant '{variant}' missing from {variants}")
        samples.append((data / "images" / f"{image_id}.jpg", index[variant]))
    return samples, classes


@DATASETS.register_module("aircraft")
@probed_by(_probe(_aircraft_samples, "aircraft"))
def aircraft(split: str, root: str | None = None, image_size: int = 224, resize: int | None = 256,
             in_memory: bool = False) -> FileImageDataset:
    """FGVC-Aircraft variants (100 classes): train = ``trainval`` (6,667), val = ``test`` (3,333).

    Layout: ``<root>/data/images_variant_{trainval,test}.txt`` (``<image id> <variant name>`` lines),
    ``<root>/data/variants.txt`` (optional, class order) and ``<root>/data/images/<id>.jpg``.

    Args:
        split: ``"train"`` or ``"val"``.
        root: the ``fgvc-aircraft-2013b`` directory (or its ``data`` folder).
        image_size: output side (224); resize: shorter side before the center crop (256).
        in_memory: decode the split once and keep it in memory.
    """
    samples, classes = _aircraft_samples(split, root)
    return FileImageDataset(samples, classes, image_size, resize, in_memory, "aircraft")
