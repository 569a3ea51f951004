"""Per-image seeded augmentation of the train loaders: the item seed and RandomResizedCrop.

Every per-image draw depends only on ``(seed, epoch, dataset index)`` (:func:`item_seed`), never on the rank,
the batch or the worker, so a resumed run and both loader paths draw the same. torchvision draws from the global
torch RNG, so each draw runs inside ``torch.random.fork_rng`` seeded with the item seed.

``data.random_resized_crop`` (:class:`ResizedCrop`) is torchvision's ``RandomResizedCrop``: a box of area
``scale`` × the image's and aspect ratio ``ratio`` (log-uniform) drawn by
``transforms.RandomResizedCrop.get_params``, cropped and resized to ``size``² by
``transforms.functional.resized_crop`` (antialiased). It crops from the image the dataset holds in full
(:meth:`~mixbench.datasets.base.ImageDataset.uncropped`: the decoded file of a file-backed dataset, the stored
image of an in-memory one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from mixbench.errors import ConfigError

KEY = "data.random_resized_crop"
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
# torchvision's RandomResizedCrop defaults; bicubic as OpenMixup's ImageNet pipelines (interpolation=3)
DEFAULTS: dict[str, Any] = {"scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3), "interpolation": "bicubic"}


def item_seed(stream: str, seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed of dataset item ``index`` in ``epoch`` for one augmentation ``stream``."""
    digest = hashlib.sha256(f"mixbench-{stream}:{int(seed)}:{int(epoch)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _pair(node: Mapping[str, Any], name: str, hi: float | None) -> tuple[float, float]:
    value = node.get(name, DEFAULTS[name])
    bound = f" ≤ {hi:g}" if hi is not None else ""
    want = f"expected two numbers 0 < lo ≤ hi{bound}"
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{KEY}.{name}={value!r}: {want}")
    lo, up = float(value[0]), float(value[1])
    if not (0 < lo <= up and (hi is None or up <= hi)):
        raise ConfigError(f"{KEY}.{name}={list(value)!r}: {want}")
    return lo, up


@dataclass(frozen=True)
class ResizedCrop:
    """RandomResizedCrop to ``size``² (see the module docstring).

    Args:
        size: output side.
        scale: range of the box area as a fraction of the image's.
        ratio: range of the box aspect ratio (width / height).
        interpolation: ``bicubic``, ``bilinear`` or ``nearest``.
    """

    size: int
    scale: tuple[float, float] = DEFAULTS["scale"]
    ratio: tuple[float, float] = DEFAULTS["ratio"]
    interpolation: str = DEFAULTS["interpolation"]

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> ResizedCrop | None:
        """The crop a ``data.random_resized_crop`` mapping describes (``None`` when unset); bad values are a
        one-line :class:`ConfigError` naming the key."""
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise ConfigError(f"{KEY}={node!r}: expected a mapping {{size, scale, ratio, interpolation}} or null")
        unknown = sorted(set(node) - {"size", *DEFAULTS})
        if unknown:
            raise ConfigError(f"{KEY}.{unknown[0]}: unknown key; expected size, scale, ratio, interpolation")
        size = node.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"{KEY}.size={size!r}: expected a positive int (the output side)")
        interpolation = node.get("interpolation", DEFAULTS["interpolation"])
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"{KEY}.interpolation={interpolation!r}: expected one of {list(INTERPOLATIONS)}")
        return cls(size, _pair(node, "scale", 1.0), _pair(node, "ratio", None), interpolation)

    def check_padding(self, crop_padding: int) -> None:
        """The crop replaces the padded crop: a ``data.crop_padding`` above 0 beside it is a config error."""
        if crop_padding > 0:
            raise ConfigError(f"{KEY}: replaces the padded crop; expected data.crop_padding=0, got {crop_padding}")

    def params(self, height: int, width: int, seed: int) -> tuple[int, int, int, int]:
        """``(top, left, h, w)`` of the box torchvision draws for an image of ``height``×``width`` after
        ``torch.manual_seed(seed)``; the caller's RNG is left as it was."""
        from torchvision import transforms

        shape_only = torch.zeros(()).expand(1, height, width)  # get_params reads only the size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return tuple(transforms.RandomResizedCrop.get_params(shape_only, list(self.scale), list(self.ratio)))

    def __call__(self, image: Tensor, seed: int) -> Tensor:
        """One C×H×W image (any device) cropped with the box of ``seed`` and resized to ``size``²."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        top, left, h, w = self.params(image.shape[-2], image.shape[-1], seed)
        return TF.resized_crop(image, top, left, h, w, [self.size, self.size],
                               interpolation=InterpolationMode(self.interpolation), antialias=True)

    def batch(self, images: Tensor, seeds: list[int]) -> Tensor:
        """Image by image where the batch lies (each its own box), restacked."""
        return torch.stack([self(img, s) for img, s in zip(images, seeds)])
