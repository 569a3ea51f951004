"""AutoMix (Liu, Li et al., ECCV 2022) and SAMix (Li et al., arXiv 2111.15454): a MixBlock learns the masks.

Following the authors' code (OpenMixup ``classifiers/automix.py::AutoMixup``, ``heads/pmix_block.py``), each
step draws two λ ~ Beta(α, α) (one for the mixer, λ_mb, one for the backbone, λ_bb) and two independent
partner permutations, and, with f the stage-``mask_layer`` features of the momentum encoder on the clean batch:

* ``s_mb = MixBlock(f, λ_mb, π_mb)``, ``x_mb = x·(1 − s_mb) + x[π_mb]·s_mb`` (gradient to the MixBlock);
* ``s_bb`` likewise for (λ_bb, π_bb), **detached**; when λ_bb ≤ ``lam_margin`` or ≥ 1 − ``lam_margin`` it is
  the constant 1 − λ_bb (plain mixup); ``mask_adjust`` is the probability of rescaling s_bb's mean to λ_bb;
* losses, each its own key (so each is a column of ``metrics.jsonl``):
  ``loss_mix_q`` = the model's loss on x_bb with targets λ_bb·y + (1 − λ_bb)·y[π_bb];
  ``loss_one_q`` = the model's loss on the clean batch;
  ``loss_mix_k`` = the frozen momentum encoder's cross-entropy on x_mb with λ_mb targets: its gradient
  reaches only the MixBlock (SAMix: the η-balanced form, ``neg_weight`` = η);
  ``loss_mask`` = w·:func:`~mixbench.mixups.learned.mixblock.mask_loss` (s_mb, λ_mb), w cosine-annealed from
  ``mask_loss`` to ``mask_loss_end`` when that is set (OpenMixup ImageNet: 0.1 → 0);
* after the optimiser step the momentum encoder follows the online backbone and head (EMA, momentum
  ``momentum`` → ``end_momentum``, :func:`~mixbench.mixups.learned.base.ema_momentum`).

Choices where mixbench departs from, or settles, the reference (docs/mixups/README.md lists them too):

* **One head.** The reference trains ``head_one_q`` and ``head_mix_q``, two linear heads on the same
  backbone_q features, and their EMA copies. mixbench's classifier has one head, used for both q losses, and
  the momentum encoder holds its EMA copy (the reference's ``head_mix_k``): test, predict, calibration and
  checkpoints keep working unchanged, and the head that is tested is the one trained.
* **Label weight λ.** Targets use the drawn λ, as the reference does, not the realised mask area; the mask
  loss keeps the area within ``mask_loss_margin`` of λ.
* **mask_adjust** rescales s_bb towards λ_bb, as the reference's comment says; its code uses λ_mb there.
* **η-balanced loss.** The reference's SAMix head multiplies the negative classes of a *softmax* soft CE by
  ``neg_weight``, where their targets are 0, so the loss does not change. mixbench implements the SAMix
  paper's η-balanced loss instead (:func:`eta_balanced_ce`); ``neg_weight: 1`` gives the loss the reference
  computes.
* Mixer learning-rate schedule: per iteration (the reference's additional scheduler steps per epoch).
* λ and partners come from the run's mixing generator (the reference uses NumPy's global RNG).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mixbench.mixups.base import (
    MixBatch,
    MixContext,
    identity_batch,
    in_interval,
    non_negative,
    one_of,
    pair_batch,
    sample_beta,
)
from mixbench.mixups.learned.base import LearnedMixer, ModelContext, MomentumEncoder, cosine_anneal, ema_momentum
from mixbench.mixups.learned.mixblock import MASK_LOSSES, UPSAMPLING, VALUE_NETS, PixelMixBlock, mask_loss
from mixbench.ranges import COUNT, NON_NEGATIVE, UNIT, Range
from mixbench.registry import MIXUPS


def eta_balanced_ce(logits: Tensor, targets: Tensor, eta: float) -> Tensor:
    """Per-sample η-balanced soft cross-entropy (SAMix): local + η·global.

    With P the classes of positive target, the soft CE −Σ_c t_c log softmax(z)_c splits exactly into a
    *local* term −Σ_{c∈P} t_c log(e^{z_c}/Σ_{j∈P} e^{z_j}) (the mixed classes against each other) and a
    *global* term −(Σ_c t_c)·log(Σ_{j∈P} e^{z_j}/Σ_j e^{z_j}) (the mixed classes against the others);
    η = 1 is the plain soft CE.
    """
    z, t = logits.float(), targets.float()
    lse_all = torch.logsumexp(z, dim=-1)
    lse_pos = torch.logsumexp(z.masked_fill(t <= 0, float("-inf")), dim=-1)
    local = -(t * (z - lse_pos.unsqueeze(-1))).sum(-1)
    return local + eta * t.sum(-1) * (lse_all - lse_pos)



@MIXUPS.register_module("automix")
class AutoMix(LearnedMixer):
    """AutoMix (ECCV 2022): a MixBlock over momentum-encoder features learns the masks (OpenMixup CIFAR defaults).

    Args:
        alpha: Beta(α, α) of both λ draws (2).
        partner: partner scheme of both permutations.
        mask_layer: 0-based index of the mix point whose output feeds the MixBlock (OpenMixup's
            ``mask_layer=2``: stage 3 of a ResNet).
        mask_loss: weight of the mask loss (0.1; 0 turns it off).
        mask_loss_end: the weight at the end of training, cosine from ``mask_loss`` (``None``: constant).
        mask_loss_mode: ``L1`` or ``L1+Variance`` (SAMix).
        mask_loss_margin: margin of the mask loss (0.1).
        lam_margin: λ_bb within this distance of 0 or 1 mixes the backbone's batch by plain mixup (0.08).
        mask_adjust: probability of rescaling the backbone mask's mean to λ_bb (0).
        momentum: EMA coefficient of the momentum encoder at the start (0.999).
        end_momentum: the coefficient at the end of training (0.999999).
        momentum_hold: fraction of training at ``momentum`` before the cosine (OpenMixup ``adjust_scope``
            [0.1, 1]).
        reduction, use_scale, upsampling, lam_concat, lam_mul, lam_mul_k, lam_residual, value_net,
            value_hidden, x_qk_concat: the MixBlock's options (:class:`PixelMixBlock`).
        neg_weight: η of the momentum branch's cross-entropy (1: plain soft CE).
        lr, min_lr, weight_decay, group_momentum: the MixBlock's own optimiser group (``None``: the main group).
    """

    ranges = {"mask_layer": Range(0), "reduction": COUNT, "value_hidden": COUNT, "mask_loss": NON_NEGATIVE,
              "mask_loss_end": NON_NEGATIVE, "mask_loss_margin": UNIT, "lam_margin": Range(0, 0.5),
              "mask_adjust": UNIT, "momentum": UNIT, "end_momentum": UNIT, "momentum_hold": UNIT, "neg_weight": UNIT,
              "lam_mul": UNIT, "lam_mul_k": Range(hi=10)}  # lam_mul_k < 0: off

    def __init__(self, alpha: float = 2.0, partner: str = "perm", mask_layer: int = 2, mask_loss: float = 0.1,
                 mask_loss_end: float | None = None, mask_loss_mode: str = "L1", mask_loss_margin: float = 0.1,
                 lam_margin: float = 0.08, mask_adjust: float = 0.0, momentum: float = 0.999,
                 end_momentum: float = 0.999999, momentum_hold: float = 0.1, reduction: int = 2,
                 use_scale: bool = True, upsampling: str = "nearest", lam_concat: bool = False, lam_mul: float = 0.0,
                 lam_mul_k: float = -1.0, lam_residual: bool = False, value_net: str = "conv",
                 value_hidden: int | None = None, x_qk_concat: bool = False, neg_weight: float = 1.0,
                 lr: float | None = None, min_lr: float | None = None, weight_decay: float | None = None,
                 group_momentum: float | None = None):
        super().__init__(alpha, partner, lr=lr, min_lr=min_lr, weight_decay=weight_decay,
                         group_momentum=group_momentum)
        if int(mask_layer) != mask_layer or mask_layer < 0:
            raise ValueError(f"mask_layer: expected a mix-point index ≥ 0, got {mask_layer}")
        if int(reduction) != reduction or reduction < 1:
            raise ValueError(f"reduction: expected an integer ≥ 1, got {reduction}")
        if value_hidden is not None and (int(value_hidden) != value_hidden or value_hidden < 1):
            raise ValueError(f"value_hidden: expected an integer ≥ 1 or null, got {value_hidden}")
        if lam_concat and (lam_mul > 0 or x_qk_concat):
            raise ValueError("lam_concat: cannot be combined with lam_mul or x_qk_concat (both encode λ already)")
        if not (lam_mul_k < 0 or lam_mul_k <= 10):
            raise ValueError(f"lam_mul_k: expected a value ≤ 10 (< 0: off), got {lam_mul_k}")
        self.mask_layer = int(mask_layer)
        self.mask_loss = non_negative("mask_loss", mask_loss)
        self.mask_loss_end = None if mask_loss_end is None else non_negative("mask_loss_end", mask_loss_end)
        self.mask_loss_mode = one_of("mask_loss_mode", mask_loss_mode, MASK_LOSSES)
        self.mask_loss_margin = in_interval("mask_loss_margin", mask_loss_margin)
        self.lam_margin = in_interval("lam_margin", lam_margin, 0.0, 0.5)
        self.mask_adjust = in_interval("mask_adjust", mask_adjust)
        self.momentum = in_interval("momentum", momentum)
        self.end_momentum = in_interval("end_momentum", end_momentum, self.momentum, 1.0)
        self.momentum_hold = in_interval("momentum_hold", momentum_hold)
        self.neg_weight = in_interval("neg_weight", neg_weight)
        self.block_options = dict(reduction=int(reduction), use_scale=bool(use_scale),
                                  upsampling=one_of("upsampling", upsampling, UPSAMPLING),
                                  lam_concat=bool(lam_concat), lam_mul=in_interval("lam_mul", lam_mul),
                                  lam_mul_k=float(lam_mul_k), lam_residual=bool(lam_residual),
                                  value_net=one_of("value_net", value_net, VALUE_NETS),
                                  value_hidden=None if value_hidden is None else int(value_hidden),
                                  x_qk_concat=bool(x_qk_concat))
        self.mask_size: tuple[int, int] = (0, 0)

    # -- set-up ---------------------------------------------------------------------------------------------------
    def build(self, context: ModelContext) -> None:
        width = self.mask_stage_width(context)
        self.mask_size = tuple(context.input_shape[1:])
        self.mixblock = PixelMixBlock(width, **self.block_options)
        self.encoder_k = MomentumEncoder(context.backbone, context.head, context.num_prefix_tokens)

    # -- masks ----------------------------------------------------------------------------------------------------
    def partner_mask(self, feats: Tensor, lam: Tensor, index: Tensor) -> Tensor:
        """The MixBlock's partner weights (N, 1, H, W) for features of the clean batch."""
        return self.mixblock(feats, lam, index, self.mask_size).to(feats.dtype)

    def adjust(self, s: Tensor, lam: Tensor, ctx: MixContext) -> Tensor:
        """With probability ``mask_adjust``, rescale each sample's anchor weights 1 − s so that their mean is
        λ: down when above λ (anchor · λ/mean), the partner's down when below (partner · (1 − λ)/(1 − mean))."""
        if self.mask_adjust <= 0:
            return s
        eps = 1e-8
        anchor = (1 - s).clamp(eps, 1 - eps)
        mean = anchor.mean(dim=(1, 2, 3), keepdim=True)
        lam4 = lam.view(-1, 1, 1, 1).to(s.dtype)
        down = anchor * (lam4 / mean)
        up = 1 - (1 - anchor) * ((1 - lam4) / (1 - mean))
        adjusted = 1 - torch.where(mean > lam4 + eps, down, torch.where(mean < lam4 - eps, up, 1 - s))
        on = torch.rand((), generator=ctx.generator, device=s.device) < self.mask_adjust
        return torch.where(on, adjusted, s)

    def mask_weight(self) -> float:
        if self.mask_loss_end is None:
            return self.mask_loss
        return cosine_anneal(self.mask_loss, self.mask_loss_end, self.progress.fraction)

    def draw(self, n: int, ctx: MixContext, device: torch.device) -> tuple[Tensor, Tensor]:
        """One λ (broadcast to (n,)) and one partner permutation."""
        lam = sample_beta(self.alpha, 1, ctx.generator, device).expand(n).contiguous()
        return lam, self.partner_index(n, ctx, device)

    # -- the contract ------------------------------------------------------------------------------------------------
    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        """The batch the current MixBlock makes (for pictures): x·(1 − s) + x[π]·s, label weight λ."""
        lam, index = self.draw(labels.shape[0], ctx, inputs.device)
        with torch.no_grad():
            s = self.partner_mask(self.encoder_k.stage(inputs, self.mask_layer), lam, index)
        mixed = inputs * (1 - s) + inputs[index] * s
        return pair_batch(mixed, labels, num_classes, index, lam, mask=1 - s)

    def train_losses(self, model: Any, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict[str, Tensor]:
        n, device = labels.shape[0], inputs.device
        lam_mb, index_mb = self.draw(n, ctx, device)
        lam_bb, index_bb = self.draw(n, ctx, device)
        with torch.no_grad():
            feats = self.encoder_k.stage(inputs, self.mask_layer)
        s_mb = self.partner_mask(feats, lam_mb, index_mb)
        with torch.no_grad():
            s_bb = self.adjust(self.partner_mask(feats, lam_bb, index_bb), lam_bb, ctx)
            plain = (lam_bb[0] <= self.lam_margin) | (lam_bb[0] >= 1 - self.lam_margin)
            s_bb = torch.where(plain, (1 - lam_bb).view(-1, 1, 1, 1).to(s_bb.dtype).expand_as(s_bb), s_bb)
        x_mb = inputs * (1 - s_mb) + inputs[index_mb] * s_mb
        x_bb = inputs * (1 - s_bb) + inputs[index_bb] * s_bb
        k_batch = pair_batch(x_mb, labels, model.num_classes, index_mb, lam_mb).bind(model.targets)
        losses = {"loss_mix_k": eta_balanced_ce(self.encoder_k(x_mb), k_batch.targets, self.neg_weight).mean()}
        clean = identity_batch(inputs, labels, model.num_classes).bind(model.targets)
        losses["loss_one_q"] = model.loss_fn(model.logits(model.features(inputs)), clean).mean()
        q_batch = pair_batch(x_bb, labels, model.num_classes, index_bb, lam_bb).bind(model.targets)
        losses["loss_mix_q"] = model.loss_fn(model.logits(model.features(x_bb)), q_batch).mean()
        if self.mask_loss > 0:
            losses["loss_mask"] = self.mask_weight() * mask_loss(s_mb, lam_mb[0], self.mask_loss_margin,
                                                                 self.mask_loss_mode)
        return losses

    def after_step(self, progress: Any, model: nn.Module) -> None:
        m = ema_momentum(progress, self.momentum, self.end_momentum, self.momentum_hold)
        self.encoder_k.update(model.backbone, model.head, m)


@MIXUPS.register_module("samix")
class SAMix(AutoMix):
    """SAMix (arXiv 2111.15454): AutoMix with SAMix's MixBlock and η-balanced loss (OpenMixup CIFAR defaults).

    Defaults differ from :class:`AutoMix` in: ``upsampling=bilinear``, ``lam_mul=1`` with ``lam_residual`` and
    ``lam_mul_k=0.25``, ``value_net=convneck``, ``x_qk_concat``, ``mask_loss_mode=L1+Variance`` and
    ``neg_weight=0.5`` (η).
    """

    def __init__(self, alpha: float = 2.0, partner: str = "perm", mask_layer: int = 2, mask_loss: float = 0.1,
                 mask_loss_end: float | None = None, mask_loss_mode: str = "L1+Variance",
                 mask_loss_margin: float = 0.1, lam_margin: float = 0.08, mask_adjust: float = 0.0,
                 momentum: float = 0.999, end_momentum: float = 0.999999, momentum_hold: float = 0.1,
                 reduction: int = 2, use_scale: bool = True, upsampling: str = "bilinear", lam_concat: bool = False,
                 lam_mul: float = 1.0, lam_mul_k: float = 0.25, lam_residual: bool = True,
                 value_net: str = "convneck", value_hidden: int | None = None, x_qk_concat: bool = True,
                 neg_weight: float = 0.5, lr: float | None = None, min_lr: float | None = None,
                 weight_decay: float | None = None, group_momentum: float | None = None):
        super().__init__(alpha, partner, mask_layer, mask_loss, mask_loss_end, mask_loss_mode, mask_loss_margin,
                         lam_margin, mask_adjust, momentum, end_momentum, momentum_hold, reduction, use_scale,
                         upsampling, lam_concat, lam_mul, lam_mul_k, lam_residual, value_net, value_hidden,
                         x_qk_concat, neg_weight, lr, min_lr, weight_decay, group_momentum)
