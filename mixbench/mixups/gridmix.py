"""GridMix as OpenMixup ships it: IlyaDobrynin's "GridMixup" (a grid of partner holes inside a crop).

Reference code: IlyaDobrynin/GridMixup ``gridmix/gridmix_pytorch.py`` and OpenMixup
``openmixup/models/augments/gridmix.py``. OpenMixup cites Baek et al., "GridMix: Strong regularization
through local context mapping" (Pattern Recognition 2021), but implements GridMixup: the paper's method
mixes grid cells of two images and adds a local-context loss (a second head predicting a label per cell);
GridMixup has no extra head, it pastes a regular grid of rectangular holes from the partner inside a random
crop. mixbench registers the GridMixup algorithm under ``gridmix`` (OpenMixup's key) and documents this.

The crop and its grid are sized as in the reference: ``cut_w = int(sqrt(area / aspect))`` and
``cut_h = int(cut_w · aspect)`` from that unclamped width, so at OpenMixup's ranges (area ∈ [0.5, 1],
aspect ∈ [0.5, 2]) about half of the crops are wider or taller than the image; the offset
``int((W − cut_w) · u)`` is then negative (truncated towards zero, as ``int`` does) and the patch width
``ceil(cut_w / n_holes)`` still divides the unclamped crop. Deviations from the reference:

* by default (``edges="clip"``) holes are clipped to the image. The reference writes them with Python slices
  at negative offsets: a hole that straddles the left (top) edge is dropped whole and one entirely beyond it
  wraps around to the right (bottom) edge; ``edges="reference"`` does the same, on the device.
  ``benchmarks/gridmix_crop.py`` measures both against the reference;
* the mask is built on the device by modular arithmetic (no Python loop over holes);
* ``n_holes`` is clamped to ``[1, crop_width // 2]`` instead of asserting, and the patch height to ≥ 1;
* H and W are not swapped for non-square images (OpenMixup reads W from ``size[2]``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, blend, per_sample
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.ranges import COUNT, POSITIVE, UNIT_OPEN_BOTTOM
from mixbench.registry import MIXUPS


def _pair(v: float | Sequence[float]) -> tuple[float, float]:
    return (float(v), float(v)) if isinstance(v, (int, float)) else (float(v[0]), float(v[1]))


def axis_holes(size: int, origin: Tensor, cut: Tensor, pitch: Tensor, hole: Tensor, edges: str) -> Tensor:
    """(k, size) bool: the pixels of one image axis that fall in a hole. Holes start every ``pitch`` pixels of
    the crop ``[origin, origin + cut)`` and are ``hole`` long, cut off at the crop's end. ``edges`` says what
    happens to holes beyond the image start (``origin`` < 0): ``clip`` keeps their part inside the image;
    ``reference`` follows the reference's Python slices, which drop a hole that straddles the start and move
    one that lies wholly before it to the far end (a negative index counts from the end)."""
    v = lambda t: t.view(-1, 1)  # noqa: E731
    pos = torch.arange(size, device=origin.device, dtype=torch.float64)

    def inside(local: Tensor) -> Tensor:
        return (local >= 0) & (local < v(cut)) & (torch.remainder(local, v(pitch)) < v(hole))

    local = pos - v(origin)  # crop-local coordinate of each pixel
    if edges == "clip":
        return inside(local)
    start = local - torch.remainder(local, v(pitch))  # crop-local start of the hole a pixel is in
    direct = inside(local) & (v(origin) + start >= 0)
    wrapped = local - size  # the pixel as a negative index
    stop = torch.minimum(wrapped - torch.remainder(wrapped, v(pitch)) + v(hole), v(cut))
    return direct | (inside(wrapped) & (v(origin) + stop < 0))


def grid_holes(shape: dict[str, Tensor], lam: Tensor, height: int, width: int, edges: str = "clip") -> Tensor:
    """(k, 1, H, W) bool, True on the partner holes. ``shape`` holds (k,) float64 draws ``n_holes``,
    ``hole_aspect``, ``cut_area``, ``cut_aspect``, ``ux``, ``uy`` (crop position in [0, 1)); ``edges`` is
    :func:`axis_holes`'s."""
    area = torch.floor(height * width * shape["cut_area"])
    # The crop may extend past the image (see the module docstring): neither side is clamped to the image,
    # and the height follows the unclamped width, as in the reference.
    cut_w = torch.floor(torch.sqrt(area / shape["cut_aspect"])).clamp_min(1)
    cut_h = torch.floor(cut_w * shape["cut_aspect"]).clamp_min(1)
    x0 = torch.trunc((width - cut_w) * shape["ux"])
    y0 = torch.trunc((height - cut_h) * shape["uy"])
    n_holes = torch.minimum(shape["n_holes"], torch.floor(cut_w / 2).clamp_min(1))
    patch_w = torch.ceil(cut_w / n_holes)
    patch_h = torch.floor(patch_w * shape["hole_aspect"]).clamp_min(1)
    ratio = torch.sqrt(1.0 - lam.double())
    hole_w = torch.minimum(torch.floor(patch_w * ratio).clamp_min(1), patch_w - 1)
    hole_h = torch.minimum(torch.floor(patch_h * ratio).clamp_min(1), patch_h - 1)
    in_y = axis_holes(height, y0, cut_h, patch_h, hole_h, edges)
    in_x = axis_holes(width, x0, cut_w, patch_w, hole_w, edges)
    return (in_y.unsqueeze(2) & in_x.unsqueeze(1)).unsqueeze(1)


@MIXUPS.register_module("gridmix")
class GridMix(SampledPolicy):
    """GridMixup (the GridMix of OpenMixup): partner holes on a grid inside a random crop; λ = anchor area.

    Args:
        alpha: Beta(α, α) for the hole ratio (OpenMixup CIFAR-100 and ImageNet 0.2).
        prob: probability of mixing a batch.
        partner: ``perm`` (OpenMixup), ``flip`` or ``roll``.
        n_holes: holes along x, an int or an inclusive ``[min, max]`` range (OpenMixup: [2, 6]).
        hole_aspect_ratio: hole height / width, a value or a ``[min, max]`` uniform range (1).
        cut_area_ratio: crop area / image area, value or range (OpenMixup: [0.5, 1]).
        cut_aspect_ratio: crop height / width, value or range (OpenMixup: [0.5, 2]).
        edges: holes of a crop that starts before the image: ``clip`` (default) or ``reference`` (dropped or
            wrapped around as the reference's Python slices do; reproduces OpenMixup's masks exactly).
    """

    writes_inputs = True
    # 2: the crop is sized from the unclamped width, as in the reference (1 recomputed the height from the width
    # clamped to the image); runs recorded with 1 keep their own config hash
    behaviour = 2
    tasks = ANY_TARGETS

    # aspect ratios are height / width; the crop is a non-empty share of the image
    ranges = {"alpha": POSITIVE, "n_holes": COUNT, "hole_aspect_ratio": POSITIVE, "cut_area_ratio": UNIT_OPEN_BOTTOM,
              "cut_aspect_ratio": POSITIVE}

    def __init__(self, alpha: float = 0.2, prob: float = 1.0, partner: str = "perm",
                 n_holes: int | Sequence[int] = (2, 6), hole_aspect_ratio: float | Sequence[float] = 1.0,
                 cut_area_ratio: float | Sequence[float] = (0.5, 1.0),
                 cut_aspect_ratio: float | Sequence[float] = (0.5, 2.0), edges: str = "clip"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if edges not in ("clip", "reference"):
            raise ValueError(f"edges: expected 'clip' or 'reference', got {edges!r}")
        self.edges = edges
        lo, hi = _pair(n_holes)
        if lo < 1 or hi < lo:
            raise ValueError(f"n_holes: expected an int >= 1 or [min, max], got {n_holes}")
        self.n_holes = (int(lo), int(hi))
        self.hole_aspect_ratio = _pair(hole_aspect_ratio)
        self.cut_area_ratio = _pair(cut_area_ratio)
        self.cut_aspect_ratio = _pair(cut_aspect_ratio)
        if not 0 < self.cut_area_ratio[0] <= self.cut_area_ratio[1] <= 1:
            raise ValueError(f"cut_area_ratio: expected values in (0, 1], got {cut_area_ratio}")

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, dev, g = labels.shape[0], inputs.device, ctx.generator
        lam = sample_beta(self.alpha, 1, g, dev)
        u = torch.rand((6, 1), generator=g, device=dev, dtype=torch.float64)
        lerp = lambda r, t: r[0] + (r[1] - r[0]) * t  # noqa: E731
        shape = {"n_holes": torch.floor(lerp((self.n_holes[0], self.n_holes[1] + 1), u[0])).clamp_max(self.n_holes[1]),
                 "hole_aspect": lerp(self.hole_aspect_ratio, u[1]), "cut_area": lerp(self.cut_area_ratio, u[2]),
                 "cut_aspect": lerp(self.cut_aspect_ratio, u[3]), "ux": u[4], "uy": u[5]}
        return {"lam": lam, "shape": shape, "index": self.partner_index(n, ctx, dev)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, shape: dict,
                 index: Tensor, inplace: bool = False) -> MixBatch:
        n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
        anchor_map = (~grid_holes(shape, lam, h, w, self.edges)).float()
        x = blend(inputs, index, anchor_map, inplace)
        weight = per_sample(anchor_map.mean(dim=(1, 2, 3)), n)
        return pair_batch(x, labels, num_classes, index, weight, mask=anchor_map.expand(n, 1, h, w))
