"""timm-compatible combined Mixup / CutMix (``timm.data.Mixup``), vectorised on the device.

Mixup: Zhang et al., ICLR 2018 (arXiv:1710.09412); CutMix: Yun et al., ICCV 2019 (arXiv:1905.04899).
Reference code: huggingface/pytorch-image-models ``timm/data/mixup.py`` (``Mixup``), used by ``train.py``
(``--mixup --cutmix --cutmix-minmax --mixup-prob --mixup-switch-prob --mixup-mode --smoothing``).

Differences from timm, all deliberate: the ``elem`` and ``pair`` modes are one vectorised op instead of a
Python loop; randomness comes from the torch generator instead of NumPy's global RNG (the distribution is the
same; tests inject timm's own draws to check the op is identical); the input is modified in place only when
the caller owns it (``MixContext.owned``, as in training); odd batch sizes are accepted (``flip`` then leaves
the middle sample unmixed; timm asserts an even batch).
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from mixbench.losses.cross_entropy import smooth_targets
from mixbench.mixups._ops import (
    SampledPolicy,
    blend,
    box_area_fraction,
    box_from_lam,
    box_mask,
    host_boxes,
    host_rows,
    overwrite_rows,
    paste_row,
    rand_box_minmax,
    rand_center,
)
from mixbench.mixups.base import MixBatch, MixContext, non_negative, pair_batch, sample_beta
from mixbench.ranges import NON_NEGATIVE, UNIT
from mixbench.registry import MIXUPS

MODES = ("batch", "pair", "elem")


@MIXUPS.register_module("timm_mix")
class TimmMix(SampledPolicy):
    """timm's Mixup/CutMix switch (DeiT recipe: mixup_alpha 0.8, cutmix_alpha 1.0, switch_prob 0.5).

    Args:
        mixup_alpha: Mixup Beta(α, α); mixup is active if > 0, off if 0 (negative is an error).
        cutmix_alpha: CutMix Beta(α, α); cutmix is active if > 0, off if 0 (forced to 1.0 with ``cutmix_minmax``).
        cutmix_minmax: ``[min, max]`` box side ratios; box drawn inside the image, λ = realised area.
        prob: probability of mixing each batch (``batch``), pair (``pair``) or sample (``elem``).
        switch_prob: probability of CutMix instead of Mixup when both are active.
        mode: ``batch`` (one λ/box for the batch), ``pair`` (sample i and N−1−i share λ and box), ``elem``.
        correct_lam: CutMix label weight = realised (border-clipped) area.
        label_smoothing: timm applies smoothing inside the mixup target; mixbench applies it in the loss
            (``loss.label_smoothing`` of ``soft_ce``, identical for these targets). Set it here only to get
            timm's smoothed targets from the policy itself; then ``targets`` ≠ Σ weight·onehot and the loss
            must not smooth again. Default 0 (timm's default is 0.1).
        partner: ``flip`` (timm); ``perm``/``roll`` are allowed in ``batch``/``elem`` modes.
    """

    writes_inputs = True

    # an α of 0 turns that mode off, as in timm
    ranges = {"mixup_alpha": NON_NEGATIVE, "cutmix_alpha": NON_NEGATIVE, "cutmix_minmax": UNIT}

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 cutmix_minmax: Sequence[float] | None = None, prob: float = 1.0, switch_prob: float = 0.5,
                 mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.0,
                 partner: str = "flip"):
        mixup_alpha = non_negative("mixup_alpha", mixup_alpha)
        cutmix_alpha = non_negative("cutmix_alpha", cutmix_alpha)
        super().__init__(alpha=mixup_alpha, prob=prob, partner=partner, check_alpha=False)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if mode == "pair" and partner != "flip":
            raise ValueError("partner: mode 'pair' mixes sample i with N-1-i; it needs partner 'flip'")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1.0:
                raise ValueError(f"cutmix_minmax: expected [min, max] in [0, 1], got {cutmix_minmax}")
            cutmix_minmax = (float(cutmix_minmax[0]), float(cutmix_minmax[1]))
            cutmix_alpha = 1.0
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("mixup_alpha / cutmix_alpha: at least one must be > 0")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing}")
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.cutmix_minmax = cutmix_minmax
        self.switch_prob = float(switch_prob)
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.label_smoothing = float(label_smoothing)

    def __call__(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        return self.mix(inputs, labels, num_classes, ctx)  # ``prob`` is applied per batch/pair/sample here

    def _draw(self, k: int, g: torch.Generator, dev: torch.device) -> tuple[Tensor, Tensor]:
        """k draws of (λ, use_cutmix), λ = 1 where the coin for ``prob`` fails (timm's ``_params_per_*``)."""
        mix_on = self.mixup_alpha > 0
        cut_on = self.cutmix_alpha > 0
        if mix_on and cut_on:
            use_cut = torch.rand(k, generator=g, device=dev) < self.switch_prob
            lam = torch.where(use_cut, sample_beta(self.cutmix_alpha, k, g, dev), sample_beta(self.mixup_alpha, k, g, dev))
        elif mix_on:
            use_cut = torch.zeros(k, dtype=torch.bool, device=dev)
            lam = sample_beta(self.mixup_alpha, k, g, dev)
        else:
            use_cut = torch.ones(k, dtype=torch.bool, device=dev)
            lam = sample_beta(self.cutmix_alpha, k, g, dev)
        apply = torch.rand(k, generator=g, device=dev) < self.prob
        return torch.where(apply, lam, torch.ones_like(lam)), use_cut

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev, g = labels.shape[0], inputs.shape[-2:], inputs.device, ctx.generator
        k = {"batch": 1, "pair": n // 2, "elem": n}[self.mode]
        lam, use_cut = self._draw(k, g, dev)
        if self.cutmix_minmax is not None:
            box = rand_box_minmax(k, h, w, self.cutmix_minmax, g, dev)
        else:
            cy, cx = rand_center(k, h, w, g, dev)
            box = box_from_lam(lam, cy, cx, h, w, rounding="timm")
        if self.mode == "pair":  # sample N-1-i reuses the parameters of sample i; an odd middle stays unmixed
            lam, use_cut, box = _mirror(lam, use_cut, box, n)
        return {"lam": lam, "use_cutmix": use_cut, "box": box, "index": self.partner_index(n, ctx, dev)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, use_cutmix: Tensor,
                 box: tuple[Tensor, Tensor, Tensor, Tensor], index: Tensor, inplace: bool = False) -> MixBatch:
        """Deterministic op. ``lam``/``use_cutmix``/``box`` are (1,) for the whole batch or (N,) per sample.

        Samples with λ = 1 are left as they are (as timm's ``if lam != 1``); CutMix samples take the partner
        inside their box and get the realised area as label weight (``correct_lam`` or ``cutmix_minmax``).
        ``inplace``: ``inputs`` is an owned batch that the host path may mix in place (as timm does).
        """
        n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
        lam = lam.double()
        cut = use_cutmix & (lam != 1.0)
        area_w = 1.0 - box_area_fraction(box, h, w).double()
        weight = torch.where(cut, area_w if (self.correct_lam or self.cutmix_minmax is not None) else lam, lam)
        if host_rows(inputs, index, lam, cut, *box):  # CutMix rows: copy + box; Mixup rows: lerp with λ
            x, anchor_map = _mix_rows(inputs, index, cut, lam.float(), box, inplace)
        else:
            keep = ~box_mask(box, h, w)  # (k, 1, H, W)
            anchor_map = torch.where(cut.view(-1, 1, 1, 1), keep.float(), lam.float().view(-1, 1, 1, 1))
            x = blend(inputs, index, anchor_map, inplace)
        weight = weight.float().expand(n) if weight.numel() == 1 else weight.float()
        mask = anchor_map.expand(n, 1, h, w) if self.cutmix_alpha > 0 else None
        batch = pair_batch(x, labels, num_classes, index, weight, mask=mask)
        if self.label_smoothing > 0:
            batch.transform = functools.partial(smooth_targets, smoothing=self.label_smoothing)
        return batch


def _mirror(lam: Tensor, use_cut: Tensor, box: tuple[Tensor, ...], n: int) -> tuple[Tensor, Tensor, tuple]:
    """Pair-mode layout: parameters p of the first N//2 samples become [p, (identity if N odd), flip(p)]."""
    def mirrored(t: Tensor, fill: float | bool | int) -> Tensor:
        mid = torch.full((n % 2,), fill, dtype=t.dtype, device=t.device)
        return torch.cat([t, mid, t.flip(0)])
    return (mirrored(lam, 1.0), mirrored(use_cut, False), tuple(mirrored(b, 0) for b in box))


def _mix_rows(inputs: Tensor, index: Tensor, cut: Tensor, lam: Tensor, box: tuple[Tensor, ...],
              inplace: bool = False) -> tuple[Tensor, Tensor]:
    """Host path of :meth:`TimmMix.mix_with` (CPU): per row a box paste or a lerp with the row's float32 λ
    (cast like the mask path's anchor map), so no (N, 1, H, W) weight map is read. Returns the mixed batch
    (``inputs`` itself when ``inplace``) and the (k, 1, H, W) float32 anchor map, filled row by row (no
    full-size boolean box masks)."""
    cuts, boxes = cut.reshape(-1).tolist(), host_boxes(box)
    anchor_map = torch.empty((len(cuts), 1) + tuple(inputs.shape[-2:]), device=inputs.device)
    for k, (is_cut, (y1, y2, x1, x2)) in enumerate(zip(cuts, boxes)):
        anchor_map[k].fill_(1.0 if is_cut else lam[k])
        if is_cut:
            anchor_map[k, :, y1:y2, x1:x2] = 0.0
    weight = lam.to(inputs.dtype)
    row = lambda i: 0 if len(cuts) == 1 else i  # noqa: E731
    if inplace:  # a CutMix row reads its partner's box only, a Mixup row the whole partner
        def region(i: int) -> tuple:
            y1, y2, x1, x2 = boxes[row(i)]
            return (Ellipsis, slice(y1, y2), slice(x1, x2)) if cuts[row(i)] else (Ellipsis,)

        def write(i: int, src: Tensor) -> None:
            if cuts[row(i)]:
                inputs[i][region(i)].copy_(src)
            else:
                torch.lerp(src, inputs[i], weight[row(i)], out=inputs[i])

        if overwrite_rows(inputs, index, region, write):
            return inputs, anchor_map
    out = torch.empty_like(inputs)
    for i, j in enumerate(index.tolist()):
        if cuts[row(i)]:
            paste_row(out, inputs, i, j, boxes[row(i)])
        else:
            torch.lerp(inputs[j], inputs[i], weight[row(i)], out=out[i])
    return out, anchor_map
