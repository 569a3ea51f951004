"""Tensor kernels shared by the model-free policies: pairwise blending, boxes and box masks.

Everything here is deterministic given its tensor arguments (the policies draw the randomness) and runs on the
inputs' device without host synchronisation: box corners stay tensors and masks are built by comparisons
against ``arange`` instead of slicing with Python integers.

Host paths: on a CPU tensor, reading a box corner or a partner index is a memory load, not a device
synchronisation. CPU batches of large images (rows of at least ``HOST_ROW_BYTES``) are therefore mixed row by
row with Python-integer slices: each output row is written once while it is in cache, a box paste copies only
the box from the partner instead of reading two whole images, and no full-size mask or gathered partner batch
is materialised. CUDA tensors (and small CPU rows, where one vectorised op beats a Python loop) take the
mask path. The two paths give bit-identical results; tests run both (``HOST_PATHS`` / ``HOST_ROW_BYTES``).

In place: when the caller owns the batch (``MixContext.owned``: in training the preprocessor has just made it),
the CPU paths write the partner's pixels into it instead of building a new batch, as mmpretrain and timm do.
Skipping the fresh allocation is most of the gain: a new batch of large images is new memory, and the page
faults of its first write cost more than the mixing. Rows are overwritten cycle by cycle of the partner
permutation (:func:`overwrite_rows`), so every partner is read before it is overwritten; the results are
bit-identical to the out-of-place paths. Direct callers keep the default, which never modifies the inputs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from mixbench.mixups.base import MixBatch, MixContext, MixPolicy

# On CPU the partner rows are gathered and blended in chunks of about this many bytes so the gathered copy
# stays in cache: one pass over memory instead of two (a full gather, then a blend).
_CPU_CHUNK_BYTES = 1 << 20
# Host paths on/off, and the smallest row (one sample) in bytes for which they are taken (see module docstring).
HOST_PATHS = True
HOST_ROW_BYTES = 1 << 16


def on_host(x: Tensor, *tensors: Tensor) -> bool:
    """Whether ``x`` may be written row by row on the host: host paths on, ``x`` and every tensor in
    ``tensors`` (indices, box corners, weights) on the CPU, and no autograd graph to record (the host paths
    write into preallocated rows, or into ``x`` itself)."""
    if not HOST_PATHS or x.device.type != "cpu" or any(t.device.type != "cpu" for t in tensors):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in tensors)))


def host_rows(x: Tensor, *tensors: Tensor) -> bool:
    """Whether batch ``x`` takes the per-row host path: :func:`on_host` and rows of at least
    ``HOST_ROW_BYTES``."""
    return on_host(x, *tensors) and x.shape[0] > 0 and x[0].numel() * x.element_size() >= HOST_ROW_BYTES


def cycles(index: list[int]) -> list[list[int]] | None:
    """The cycles ``[i, index[i], index[index[i]], ...]`` of the permutation ``index``, fixed points left out;
    ``None`` when ``index`` is not a permutation."""
    n = len(index)
    if sorted(index) != list(range(n)):
        return None
    seen = [False] * n
    out = []
    for start in range(n):
        cycle, i = [], start
        while not seen[i]:
            seen[i] = True
            cycle.append(i)
            i = index[i]
        if len(cycle) > 1:
            out.append(cycle)
    return out


def overwrite_rows(x: Tensor, index: Tensor, region: Callable[[int], tuple], write: Callable[[int, Tensor], None]
                   ) -> bool:
    """Mix the rows of ``x`` in place: ``write(i, src)`` for every row ``i`` with a partner ``j = index[i] ≠ i``,
    ``src`` being ``x[j][region(i)]`` as it was before any write.

    Rows are written cycle by cycle of the permutation, each from the next row of its cycle, which is still
    unwritten; only the first row of a cycle is copied beforehand (the region its last row reads). Returns
    ``False``, having written nothing, when ``index`` is not a permutation (the caller then mixes out of place).
    """
    order = cycles(index.tolist())
    if order is None:
        return False
    for cycle in order:
        last = cycle[-1]
        saved = x[cycle[0]][region(last)].clone()
        for i, j in zip(cycle[:-1], cycle[1:]):
            write(i, x[j][region(i)])
        write(last, saved)
    return True


def host_boxes(box: tuple[Tensor, Tensor, Tensor, Tensor]) -> list[tuple[int, int, int, int]]:
    """Box corners (each (1,) or (N,), CPU) as a list of Python ``(y1, y2, x1, x2)``, one per box."""
    return list(zip(*(b.reshape(-1).tolist() for b in box)))


def paste_row(out: Tensor, x: Tensor, i: int, j: int, box: tuple[int, int, int, int]) -> None:
    """Host path of one box paste: ``out[i]`` = ``x[i]`` with the box ``[y1, y2) × [x1, x2)`` from ``x[j]``
    (the copy is still in cache when the box is overwritten)."""
    y1, y2, x1, x2 = box
    out[i].copy_(x[i])
    if j != i and y2 > y1 and x2 > x1:
        out[i, ..., y1:y2, x1:x2].copy_(x[j, ..., y1:y2, x1:x2])


def paste_rows(x: Tensor, index: Tensor, box: tuple[Tensor, Tensor, Tensor, Tensor], inplace: bool = False
               ) -> Tensor:
    """Host path of a box paste for the batch (box corners (1,) shared or (N,) per row); equals ``blend``
    with the 0/1 "outside the box" map. ``inplace``: paste into ``x`` itself and return it."""
    boxes = host_boxes(box)
    if inplace:
        if len(boxes) == 1 and not host_rows(x, index):  # small rows: one vectorised op (the gather comes first)
            y1, y2, x1, x2 = boxes[0]
            x[..., y1:y2, x1:x2] = x[index, ..., y1:y2, x1:x2]
            return x
        # large rows: each box copied once, with no gathered copy of all the boxes to allocate and fill
        region = lambda i: (Ellipsis, slice(*boxes[0 if len(boxes) == 1 else i][:2]),  # noqa: E731
                            slice(*boxes[0 if len(boxes) == 1 else i][2:]))
        if overwrite_rows(x, index, region, lambda i, src: x[i][region(i)].copy_(src)):
            return x
    out = torch.empty_like(x)
    for i, j in enumerate(index.tolist()):
        paste_row(out, x, i, j, boxes[0 if len(boxes) == 1 else i])
    return out


def blend(x: Tensor, index: Tensor, weight: Tensor, inplace: bool = False) -> Tensor:
    """Return ``weight·x + (1−weight)·x[index]``: a new tensor, ``x`` not modified, unless ``inplace``.

    Args:
        x: (N, ...) batch.
        index: (N,) int64 partner of each row.
        weight: anchor weight, broadcastable against ``x`` with a leading dim of N or 1: a per-sample λ
            (N, 1, 1, 1), a shared mask (1, 1, H, W) or per-sample masks (N, 1, H, W). 0/1 weights give
            exactly the anchor / partner values (``torch.lerp`` is exact at its end points).
        inplace: on the host path, blend into ``x`` itself and return it (an owned batch; see the module
            docstring).
    """
    n = x.shape[0]
    weight = weight.to(x.dtype)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return torch.lerp(x[index], x, weight)
    row_weight = lambda i: weight[0] if weight.shape[0] == 1 else weight[i]  # noqa: E731
    if inplace and host_rows(x, index, weight) and overwrite_rows(
            x, index, lambda i: (Ellipsis,), lambda i, src: torch.lerp(src, x[i], row_weight(i), out=x[i])):
        return x
    out = torch.empty_like(x)
    if host_rows(x, index, weight):  # each row blended from views: no gathered partner copy
        for i, j in enumerate(index.tolist()):
            torch.lerp(x[j], x[i], row_weight(i), out=out[i])
        return out
    if x.device.type == "cpu":
        step = max(1, _CPU_CHUNK_BYTES // max(1, x[0].numel() * x.element_size()))
    else:
        step = max(n, 1)
    for a in range(0, n, step):
        b = min(n, a + step)
        partner = x.index_select(0, index[a:b])
        w = weight if weight.shape[0] == 1 else weight[a:b]
        torch.lerp(partner, x[a:b], w, out=out[a:b])
    return out


def randint_below(high: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform integers in ``[0, high)`` for a tensor of upper bounds (0 where ``high`` ≤ 0), no host sync."""
    u = torch.rand(high.shape, generator=generator, device=high.device, dtype=torch.float64)
    return torch.floor(u * high.clamp_min(0).double()).long()


def box_from_lam(lam: Tensor, cy: Tensor, cx: Tensor, height: int, width: int,
                 rounding: str = "clovaai") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CutMix box of side ``⌊H·√(1−λ)⌋ × ⌊W·√(1−λ)⌋`` centred at (cy, cx), clipped to the image.

    ``rounding="clovaai"`` (official CutMix, torchvision v2, mmpretrain): corners ``c ± ⌊cut/2⌋``, so the
    unclipped side is ``2⌊cut/2⌋``. ``"timm"`` (timm ≥ 1.0): ``c − ⌊cut/2⌋`` to ``c + ⌈cut/2⌉``, side ``cut``.
    λ is computed in float64 as the references do with Python floats. Returns int64 (y1, y2, x1, x2).
    """
    r = torch.sqrt((1.0 - lam.double()).clamp_min(0.0))
    cut_h = torch.floor(height * r).long()
    cut_w = torch.floor(width * r).long()
    up_h = cut_h // 2 if rounding == "clovaai" else (cut_h + 1) // 2
    up_w = cut_w // 2 if rounding == "clovaai" else (cut_w + 1) // 2
    y1 = (cy - cut_h // 2).clamp(0, height)
    y2 = (cy + up_h).clamp(0, height)
    x1 = (cx - cut_w // 2).clamp(0, width)
    x2 = (cx + up_w).clamp(0, width)
    return y1, y2, x1, x2


def rand_center(n: int, height: int, width: int, generator: torch.Generator,
                device: torch.device) -> tuple[Tensor, Tensor]:
    """(cy, cx), each (n,) int64 uniform over the image (the CutMix box centre)."""
    cy = torch.randint(height, (n,), generator=generator, device=device)
    cx = torch.randint(width, (n,), generator=generator, device=device)
    return cy, cx


def rand_box_minmax(n: int, height: int, width: int, minmax: tuple[float, float], generator: torch.Generator,
                    device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """timm's ``rand_bbox_minmax``: side ~ U{⌊H·min⌋, …, ⌊H·max⌋−1} per axis, box fully inside the image."""
    lo_h, hi_h = int(height * minmax[0]), int(height * minmax[1])
    lo_w, hi_w = int(width * minmax[0]), int(width * minmax[1])
    cut_h = lo_h + randint_below(torch.full((n,), hi_h - lo_h, device=device), generator)
    cut_w = lo_w + randint_below(torch.full((n,), hi_w - lo_w, device=device), generator)
    y1 = randint_below(height - cut_h + 1, generator)
    x1 = randint_below(width - cut_w + 1, generator)
    return y1, y1 + cut_h, x1, x1 + cut_w


def box_mask(box: tuple[Tensor, Tensor, Tensor, Tensor], height: int, width: int) -> Tensor:
    """(n, 1, H, W) bool, True inside each box ``[y1, y2) × [x1, x2)``."""
    y1, y2, x1, x2 = box
    rows = torch.arange(height, device=y1.device)
    cols = torch.arange(width, device=y1.device)
    in_y = (rows >= y1.view(-1, 1)) & (rows < y2.view(-1, 1))
    in_x = (cols >= x1.view(-1, 1)) & (cols < x2.view(-1, 1))
    return (in_y.unsqueeze(2) & in_x.unsqueeze(1)).unsqueeze(1)


def box_area_fraction(box: tuple[Tensor, Tensor, Tensor, Tensor], height: int, width: int) -> Tensor:
    """Fraction of the image each box covers, float32 (computed exactly from integer corners)."""
    y1, y2, x1, x2 = box
    return ((y2 - y1) * (x2 - x1)).double().div(height * width).float()


def per_sample(t: Tensor, n: int) -> Tensor:
    """Broadcast a (1,) or (n,) tensor to (n,) (a view)."""
    return t.reshape(-1).expand(n) if t.numel() == 1 else t.reshape(n)


class SampledPolicy(MixPolicy):
    """A policy split in two: :meth:`sample` draws every random parameter from ``ctx.generator`` and
    :meth:`mix_with` is the deterministic op. Tests and reference comparisons inject λ, partners and boxes
    by calling :meth:`mix_with` directly.

    ``writes_inputs``: :meth:`mix_with` takes ``inplace`` and, given ``True``, may mix into the inputs; :meth:`mix`
    passes ``ctx.owned`` there."""

    writes_inputs: bool = False

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict[str, Any]:
        raise NotImplementedError

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, **params: Any) -> MixBatch:
        raise NotImplementedError

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        params = self.sample(inputs, labels, ctx)
        if self.writes_inputs:
            params["inplace"] = ctx.owned
        return self.mix_with(inputs, labels, num_classes, **params)


class HostChoice:
    """Host-side draws for choices that must be known before the forward (which hook to install, which
    sub-policy to run). They come from a CPU generator seeded from ``ctx.generator``'s seed and ``ctx.iter``
    (reseeded when either, or the generator object, changes), so they need no device synchronisation, are
    reproducible for a given seed and iteration, and still differ between calls within one iteration."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._gen = torch.Generator()

    def generator(self, ctx: MixContext) -> torch.Generator:
        key = (id(ctx.generator), ctx.generator.initial_seed(), ctx.iter)
        if key != self._key:
            self._key = key
            self._gen.manual_seed((ctx.generator.initial_seed() * 1_000_003 + ctx.iter * 7919 + 17) % (2 ** 63))
        return self._gen

    def choice(self, probs: Tensor, ctx: MixContext) -> int:
        """Index drawn with the given (CPU, float64) probabilities."""
        return int(torch.multinomial(probs, 1, generator=self.generator(ctx)))
