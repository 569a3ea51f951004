"""ResizeMix: paste the whole partner image, resized, into a box of the anchor.

Qin et al., "ResizeMix: Mixing Data with Preserved Object Information and True Labels", arXiv:2012.11101.
Reference code: JayQine/ResizeMix ``run_apis/trainer.py`` and ``tools/utils.py``; OpenMixup
``openmixup/models/augments/resizemix.py``; mmpretrain ``models/utils/batch_augments/resizemix.py``.

The resize is done on the device by index arithmetic (separable gathers along H and W), so the box size never
has to be read back on the host; ``nearest`` matches ``F.interpolate(mode="nearest")`` and ``bilinear``
matches ``F.interpolate(mode="bilinear", align_corners=False)`` for the box size. On CPU tensors (where reading
the box is no synchronisation) only the box of each partner is computed, row by row, by the same arithmetic
(bit-identical; see ``mixbench.mixups._ops`` on host paths).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, box_area_fraction, box_mask, host_boxes, host_rows, per_sample
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.ranges import NON_NEGATIVE, UNIT_OPEN_BOTTOM
from mixbench.registry import MIXUPS

Box = tuple[Tensor, Tensor, Tensor, Tensor]


def _source_coords(lo: Tensor, hi: Tensor, size: int, mode: str) -> tuple[Tensor, Tensor, Tensor]:
    """For every output position of an axis of length ``size``, the source indices (i0, i1) and the weight of
    i1 when the source axis (length ``size``) is resized to the box span [lo, hi). Shapes (k, size)."""
    out_len = (hi - lo).clamp_min(1).view(-1, 1).float()
    dst = torch.arange(size, device=lo.device).view(1, -1) - lo.view(-1, 1)
    dst = dst.clamp(min=0).float()
    scale = size / out_len  # float32, like PyTorch's area_pixel_compute_scale
    if mode == "nearest":
        i0 = torch.floor(dst * scale).long().clamp_max(size - 1)
        return i0, i0, torch.zeros_like(dst)
    src = (scale * (dst + 0.5) - 0.5).clamp_min(0.0)
    i0 = torch.floor(src).long().clamp_max(size - 1)
    i1 = (i0 + 1).clamp_max(size - 1)
    return i0, i1, src - i0.float()


def _take_rows(inputs: Tensor, index: Tensor, rows: Tensor) -> Tensor:
    """``inputs[index[m], c, rows[m, r], :]`` for all m, c, r in one gather: (M, C, R, W) from (M|1, R) rows."""
    n, c, h, w = inputs.shape
    m, r = index.shape[0], rows.shape[1]
    base = (index.view(m, 1, 1) * c + torch.arange(c, device=inputs.device).view(1, c, 1)) * h
    flat = (base + rows.view(rows.shape[0], 1, r)).reshape(-1)
    return inputs.reshape(-1, w).index_select(0, flat).view(m, c, r, w)


def _take_cols(x: Tensor, cols: Tensor) -> Tensor:
    """``x[n, c, h, cols[n, w]]`` by ``gather`` (several times faster on CPU than advanced indexing or
    ``index_select`` on the last dim)."""
    n, c, h, _ = x.shape
    return x.gather(3, cols.view(cols.shape[0], 1, 1, -1).expand(n, c, h, cols.shape[1]))


def _resize_partner(inputs: Tensor, index: Tensor, box: Box, mode: str) -> Tensor:
    """Each partner ``inputs[index]`` resized so that it exactly fills its box (values outside the box are
    meaningless and masked by the caller)."""
    h, w = inputs.shape[-2:]
    y1, y2, x1, x2 = box
    r0, r1, wr = _source_coords(y1, y2, h, mode)
    c0, c1, wc = _source_coords(x1, x2, w, mode)
    if r0.shape[0] == 1 and index.shape[0] > 1:
        r0, r1, wr = (t.expand(index.shape[0], -1) for t in (r0, r1, wr))
    out = _take_rows(inputs, index, r0)
    if mode == "bilinear":
        out = torch.lerp(out, _take_rows(inputs, index, r1), wr.view(wr.shape[0], 1, -1, 1).to(inputs.dtype))
        return torch.lerp(_take_cols(out, c0), _take_cols(out, c1), wc.view(wc.shape[0], 1, 1, -1).to(inputs.dtype))
    return _take_cols(out, c0)


# Host path: rows resized together in groups whose intermediate row block stays about this size (in cache).
_GROUP_BYTES = 1 << 19


def _paste_resized_rows(inputs: Tensor, index: Tensor, box: Box, mode: str, inplace: bool = False) -> Tensor:
    """Host path of :func:`paste_resized` (CPU): only the box of each partner is resized, a few rows at a time
    (a group shares one box) so the intermediates stay in cache, and pasted into a copy of the anchors, or
    into ``inputs`` itself when ``inplace`` (once every partner has been read). Same arithmetic as
    :func:`_resize_partner`: a column pick commutes with the element-wise row interpolation."""
    out = inputs if inplace else torch.empty_like(inputs)
    pending = []  # in place: (rows, box, patch), pasted after the last partner has been read
    boxes = host_boxes(box)
    n, c, h, w = inputs.shape
    for k, (y1, y2, x1, x2) in enumerate(boxes):
        if len(boxes) == 1:
            step = max(1, _GROUP_BYTES // max(1, c * (y2 - y1) * w * inputs.element_size()))
            groups = [(a, min(n, a + step)) for a in range(0, n, step)]
        else:
            groups = [(k, k + 1)]
        if y2 <= y1 or x2 <= x1:
            for a, b in groups:
                if not inplace:
                    out[a:b].copy_(inputs[a:b])
            continue
        r0, r1, wr = (t[:, y1:y2] for t in _source_coords(box[0][k:k + 1], box[1][k:k + 1], h, mode))
        c0, c1, wc = (t[0, x1:x2] for t in _source_coords(box[2][k:k + 1], box[3][k:k + 1], w, mode))
        wr, wc = wr.to(inputs.dtype).view(1, 1, -1, 1), wc.to(inputs.dtype)
        # flat offsets, computed once per box: source rows of every partner into the (N·C·H, W) view, and column
        # picks into a group's (M, C, y2−y1, W) row block (index_select on a flat view is the fastest CPU
        # gather; a smaller group uses a prefix)
        first = (index.view(-1, 1, 1) * c + torch.arange(c).view(1, c, 1)) * h
        src0, src1 = ((first + r.view(1, 1, -1)).view(index.shape[0], -1) for r in (r0, r1))
        block = torch.arange((groups[0][1] - groups[0][0]) * c * (y2 - y1)).view(-1, 1) * w
        pick0, pick1 = (block + c0).view(-1), (block + c1).view(-1)
        lines = inputs.view(-1, w)
        for a, b in groups:
            if inplace:  # the patch keeps the strides of its place in the batch, so every op gives the same bits
                patch = inputs.new_empty((b - a, c, y2 - y1, w))[..., x1:x2]
                pending.append((a, b, (y1, y2, x1, x2), patch))
            else:
                out[a:b].copy_(inputs[a:b])
                patch = out[a:b, :, y1:y2, x1:x2]
            size, m = (b - a, c, y2 - y1, x2 - x1), (b - a) * c * (y2 - y1) * (x2 - x1)
            rows = lines.index_select(0, src0[a:b].reshape(-1))
            if mode == "bilinear":
                rows = torch.lerp(rows.view(b - a, c, -1, w), lines.index_select(0, src1[a:b].reshape(-1)).view(
                    b - a, c, -1, w), wr).view(-1)
                torch.lerp(rows.index_select(0, pick0[:m]).view(size), rows.index_select(0, pick1[:m]).view(size),
                           wc, out=patch)
            else:
                patch.copy_(rows.view(-1).index_select(0, pick0[:m]).view(size))
    for a, b, (y1, y2, x1, x2), patch in pending:
        out[a:b, :, y1:y2, x1:x2].copy_(patch)
    return out


def paste_resized(inputs: Tensor, labels: Tensor, num_classes: int, index: Tensor, box: Box,
                  interpolation: str = "nearest", inplace: bool = False) -> MixBatch:
    """Deterministic ResizeMix core: ``x[index]`` resized to each box and pasted there; anchor elsewhere.

    Args:
        box: int64 (y1, y2, x1, x2), each (1,) shared or (N,) per sample.
        interpolation: ``nearest`` or ``bilinear``.
        inplace: ``inputs`` is an owned batch that the host path may paste into.
    """
    n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
    inside = box_mask(box, h, w)
    if host_rows(inputs, index, *box):
        x = _paste_resized_rows(inputs, index, box, interpolation, inplace)
    else:
        x = torch.where(inside, _resize_partner(inputs, index, box, interpolation), inputs)
    weight = per_sample(1.0 - box_area_fraction(box, h, w), n)
    return pair_batch(x, labels, num_classes, index, weight, mask=(~inside).float().expand(n, 1, h, w))


@MIXUPS.register_module("resizemix")
class ResizeMix(SampledPolicy):
    """ResizeMix (Qin et al., 2020): the partner resized by τ and pasted into the anchor; λ = 1 − box area.

    Defaults reproduce OpenMixup's benchmark configs (one box per batch, τ ~ Beta(α, α) redrawn from
    U(scope) when outside ``scope``, CutMix-style box clipped at the border, nearest resize). The official
    code is ``use_alpha=False, placement="inside", per_sample=True`` (τ ~ U(scope), each patch fully inside the
    image at its own random place).

    Args:
        alpha: Beta(α, α) for τ when ``use_alpha`` (OpenMixup: 1.0).
        prob: probability of mixing a batch.
        partner: ``perm`` (references), ``flip`` or ``roll``.
        scope: ``[min, max]`` range of the side ratio τ (0.1, 0.8).
        use_alpha: draw τ from Beta(α, α) (OpenMixup configs) instead of U(scope) (official).
        interpolation: ``nearest`` (official, OpenMixup CNN configs) or ``bilinear`` (mmpretrain, OpenMixup
            ViT configs).
        placement: ``clip`` (box centred at a random pixel, clipped: OpenMixup, mmpretrain) or ``inside``
            (box shifted to fit: official).
        per_sample: one τ and box per sample.
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    # α is unused with ``use_alpha=False`` (then 0 is allowed); the box is a non-empty share of the side
    ranges = {"alpha": NON_NEGATIVE, "scope": UNIT_OPEN_BOTTOM}

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm",
                 scope: Sequence[float] = (0.1, 0.8), use_alpha: bool = True, interpolation: str = "nearest",
                 placement: str = "clip", per_sample: bool = False):
        super().__init__(alpha=alpha, prob=prob, partner=partner, check_alpha=use_alpha)
        if len(scope) != 2 or not 0 < scope[0] <= scope[1] <= 1:
            raise ValueError(f"scope: expected [min, max] with 0 < min <= max <= 1, got {scope}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation: expected 'nearest' or 'bilinear', got {interpolation!r}")
        if placement not in ("clip", "inside"):
            raise ValueError(f"placement: expected 'clip' or 'inside', got {placement!r}")
        self.scope = (float(scope[0]), float(scope[1]))
        self.use_alpha = bool(use_alpha)
        self.interpolation = interpolation
        self.placement = placement
        self.per_sample = bool(per_sample)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev, g = labels.shape[0], inputs.shape[-2:], inputs.device, ctx.generator
        k = n if self.per_sample else 1
        lo, hi = self.scope
        tau = lo + (hi - lo) * torch.rand(k, generator=g, device=dev, dtype=torch.float64)
        if self.use_alpha:
            t = sample_beta(self.alpha, k, g, dev).double()
            tau = torch.where((t >= lo) & (t <= hi), t, tau)
        index = self.partner_index(n, ctx, dev)
        cy = torch.randint(h, (k,), generator=g, device=dev)
        cx = torch.randint(w, (k,), generator=g, device=dev)
        return {"box": self.box(tau, cy, cx, h, w), "index": index}

    def box(self, tau: Tensor, cy: Tensor, cx: Tensor, height: int, width: int) -> Box:
        """Box of side ⌊H·τ⌋ × ⌊W·τ⌋ around (cy, cx), clipped or shifted inside per ``placement``."""
        ch = torch.floor(height * tau).long().clamp(1, height)
        cw = torch.floor(width * tau).long().clamp(1, width)
        y1, x1 = (cy - ch // 2).clamp(0, height), (cx - cw // 2).clamp(0, width)
        if self.placement == "clip":
            return y1, (cy + ch // 2).clamp(0, height), x1, (cx + cw // 2).clamp(0, width)
        y2, x2 = (y1 + ch).clamp_max(height), (x1 + cw).clamp_max(width)
        return y2 - ch, y2, x2 - cw, x2

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, box: Box, index: Tensor,
                 inplace: bool = False) -> MixBatch:
        return paste_resized(inputs, labels, num_classes, index, box, self.interpolation, inplace)
