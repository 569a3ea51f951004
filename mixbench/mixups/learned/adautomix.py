"""AdAutoMix (Qin, Jin et al., "Adversarial AutoMixup", ICLR 2024): an n-source mask generator trained
adversarially through the momentum encoder.

Following the authors' code (JinXins/Adversarial-AutoMixup ``openmixup/models/classifiers/AdAutoMix.py``;
OpenMixup's port ``classifiers/adautomix.py``), each step, with n = ``mix_samples`` sources (``is_random``: n
drawn uniformly from 2..``mix_samples``) and f the stage-``mask_layer`` features of the momentum encoder on the
clean batch:

* λ ~ Beta(α, α)ⁿ. For n > 2 both branches share the co-λ weights w = λ / Σλ; for n = 2 the mixer uses
  (λ₀, 1 − λ₀) and the backbone (λ₁, 1 − λ₁) (two independent draws, as AutoMix).
* Two sets of source indices, ``mb`` (the generator's) and ``bb`` (the backbone's): the anchor and n − 1
  independent partner permutations each.
* Masks M = :class:`~mixbench.mixups.learned.adaptive_mask.AdaptiveMask` over the n sources' features (softmax
  over the sources: Σ_j M_j = 1 per pixel); x_mb = Σ_j M_j ⊙ x[mb_j] with gradient to the generator; x_bb
  likewise with the masks **detached**. When w₀ ≤ ``lam_margin`` or 1 − w₀ < ``lam_margin`` (n = 2: ≤ on both
  sides) the backbone's masks are the constants w_j (plain n-way mixup).
* Classifier losses (backbone and head; one key each, so each is a column of ``metrics.jsonl``):
  ``loss_mix_q`` = the model's loss on x_bb with targets Σ_j w_j·onehot(y[bb_j]);
  L_re_q = (1 − r)·CE(clean) + r·CE(Σ_j w_j x[bb_j]) with r = ``mixup_radio``, reported as its two terms
  ``loss_one_q`` = (1 − r)·CE(clean) and ``loss_lin_q`` = r·CE(linear mix); for n = 2, L_re_q is CE(clean) alone
  (``loss_lin_q`` = 0), as in the reference.
* Generator losses, through the frozen momentum encoder (their gradient reaches only the generator):
  with L_k = CE of the encoder on x_mb with the mixer's targets, on *adversarial* iterations
  (global iteration t with t mod ``adv_interval`` = 0) ``loss_mix_k`` = −β·L_k and ``loss_cos_k`` = (1 − β)·C,
  β = ``beta_radio``; on the other (*cooperative*) iterations ``loss_mix_k`` = L_k and ``loss_cos_k`` = 0.
  C is the cosine term between the encoder's predictions on x_mb and on each source x[mb_j]
  (:func:`cosine_term`).
* After the optimiser step the momentum encoder follows the online backbone and head (EMA, as AutoMix:
  :func:`~mixbench.mixups.learned.base.ema_momentum`, 0.999 → 0.999999 after a 10 % hold).

Choices where mixbench departs from, or settles, the reference (docs/mixups/README.md lists them too):

* **The sign of the cosine term.** The paper introduces the cosine term, with the EMA teacher, "to prevent the
  collapse of the inherent meanings of images": the generator, while it maximises the classifier's loss, keeps
  the prediction on the mixed image close to its sources' predictions, i.e. it minimises the cosine
  *distance* Σ_j w_j·(1 − cos). The released code adds the raw cosine *similarity* Σ_j w_j·cos to the loss it
  minimises, which pushes the mixed image's prediction away from its sources, the opposite direction.
  ``cosine: distance`` (the default) is the paper's term; ``cosine: similarity`` is the released code's (the
  runs behind the published numbers); the two differ in the sign of their gradient only (Σ_j w_j = 1).
* **lam_margin** follows the authors' code (``w₀ ≤ m or 1 − w₀ < m``). OpenMixup's port reads
  ``m < 1 − w₀``, which holds on almost every step, so its backbone is trained on constant-weight linear
  mixes instead of generated masks.
* **Sources.** Source 0 is the anchor (identity) in both branches; the reference draws n independent
  permutations for n > 2, which differs only in the order of the batch rows (the same joint distribution of
  the mixed tuples) and is the same for n = 2.
* **One head.** The reference trains ``head_one_q`` and ``head_mix_q`` on the same features (and their EMA
  copies); mixbench's classifier has one head for all q losses, and the momentum encoder holds its EMA copy.
  The reference's ``head_weights`` are all 1 in every released config and are not options here.
* **Alternation by the global iteration.** The reference counts iterations in an attribute that is not saved,
  so after a resume it restarts at 0; here the schedule is a function of the global iteration, so a resumed
  run repeats an uninterrupted one.
* **Source predictions only when used.** The n momentum-encoder forwards on the sources feed the cosine term
  only, so they run on adversarial iterations only. The reference also runs them on cooperative ones, where
  they change nothing but the momentum encoder's BatchNorm running statistics, which training never reads
  (the encoder runs in training mode).
* The attention runs in float32 (the reference's casts), without its NaN/overflow patching; λ, n and the
  partners come from the run's mixing generator (the reference uses NumPy's and Python's global RNGs).
  ``is_random`` reads n on the host (one synchronisation per step; off in every released config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixups.base import (
    MixBatch,
    MixContext,
    OneHotTargets,
    count,
    identity_batch,
    in_interval,
    one_of,
    sample_beta,
)
from mixbench.mixups.learned.adaptive_mask import UPSAMPLING, AdaptiveMask
from mixbench.mixups.learned.base import LearnedMixer, ModelContext, MomentumEncoder, ema_momentum
from mixbench.ranges import COUNT, UNIT, Range
from mixbench.registry import MIXUPS

COSINE = ("distance", "similarity")



def co_weights(lam: Tensor) -> Tensor:
    """The co-λ weights λ / Σλ of an n-source mix (n > 2)."""
    return lam / lam.sum().clamp_min(1e-12)


def plain_mixup(anchor_weight: Tensor, margin: float, sources: int) -> Tensor:
    """Whether the backbone's masks become the constant weights (the authors' condition, a 0-dim bool tensor):
    w₀ ≤ m or 1 − w₀ < m for n > 2 sources, w₀ ≤ m or 1 − w₀ ≤ m for two."""
    near_one = (1 - anchor_weight <= margin) if sources == 2 else (1 - anchor_weight < margin)
    return (anchor_weight <= margin) | near_one


def is_adversarial(iteration: int, interval: int) -> bool:
    """Adversarial generator step at global iteration ``iteration`` (``interval`` 0: never)."""
    return interval > 0 and iteration % interval == 0


def cosine_term(mixed: Tensor, sources: Sequence[Tensor], weights: Tensor, mode: str) -> Tensor:
    """Batch mean of Σ_j w_j·(1 − cos(p_mix, p_j)) (``distance``, the paper's) or Σ_j w_j·cos(p_mix, p_j)
    (``similarity``, the released code's), with p the prediction vectors (N, K)."""
    sim = sum(w * F.cosine_similarity(mixed, p, dim=-1) for w, p in zip(weights, sources))
    if mode == "similarity":
        return sim.mean()
    return (weights.sum() - sim).mean()


def mix_images(inputs: Tensor, masks: Tensor, indices: Sequence[Tensor]) -> Tensor:
    """Σ_j masks[:, j] ⊙ inputs[indices[j]] with masks (N, n, H, W)."""
    masks = masks.to(inputs.dtype)
    return sum(masks[:, j:j + 1] * inputs[idx] for j, idx in enumerate(indices))


def linear_mix(inputs: Tensor, weights: Tensor, indices: Sequence[Tensor]) -> Tensor:
    """Σ_j w_j · inputs[indices[j]] (one weight per source, the same for every sample)."""
    w = weights.to(inputs.dtype)
    return sum(w[j] * inputs[idx] for j, idx in enumerate(indices))


@dataclass
class Draw:
    """The random choices of one step: per-source weights (n,) and indices of both branches."""

    weights_mb: Tensor
    weights_bb: Tensor
    index_mb: list[Tensor]
    index_bb: list[Tensor]

    @property
    def sources(self) -> int:
        return len(self.index_mb)


def source_batch(inputs: Tensor, labels: Tensor, indices: Sequence[Tensor], weights: Tensor,
                 num_classes: int) -> MixBatch:
    """A MixBatch of ``inputs`` made from the n sources ``indices`` with label weights ``weights`` (n,)."""
    n = labels.shape[0]
    return MixBatch(inputs=inputs, labels=labels, indices=list(indices),
                    weights=[w.expand(n).contiguous() for w in weights.float()], builder=OneHotTargets(num_classes))


@MIXUPS.register_module("adautomix")
class AdAutoMix(LearnedMixer):
    """AdAutoMix (ICLR 2024): an adversarially trained n-source mask generator (authors' CIFAR defaults).

    Args:
        alpha: Beta(α, α) of the λ draws (1).
        partner: partner scheme; ``perm`` only when ``mix_samples`` > 2 (each partner its own permutation).
        mix_samples: n, the sources of a mix (3).
        is_random: draw n uniformly from 2..``mix_samples`` every step.
        mask_layer: 0-based index of the mix point whose output feeds the generator (2: stage 3 of a ResNet).
        lam_margin: anchor weight within this of 0 or 1 gives the backbone plain n-way mixup (0.03).
        mixup_radio: r, the share of the linear n-way mixup term in L_re_q (0.5).
        beta_radio: β, the weight of the adversarial CE against the cosine term (0.3).
        adv_interval: every ``adv_interval``-th iteration is adversarial (2; 0: never).
        cosine: ``distance`` (the paper's term, default) or ``similarity`` (the released code's).
        momentum, end_momentum, momentum_hold: the momentum encoder's EMA schedule (0.999 → 0.999999, hold 0.1).
        reduction, use_scale, upsampling, lam_concat: the generator's options (:class:`AdaptiveMask`).
        lr, min_lr, weight_decay, group_momentum: the generator's own optimiser group (``None``: the main group).
    """

    group_module = "generator"
    ranges = {"mix_samples": Range(2), "mask_layer": Range(0), "lam_margin": Range(0, 0.5), "mixup_radio": UNIT,
              "beta_radio": UNIT, "adv_interval": Range(0), "momentum": UNIT, "end_momentum": UNIT,
              "momentum_hold": UNIT, "reduction": COUNT}

    def __init__(self, alpha: float = 1.0, partner: str = "perm", mix_samples: int = 3, is_random: bool = False,
                 mask_layer: int = 2, lam_margin: float = 0.03, mixup_radio: float = 0.5, beta_radio: float = 0.3,
                 adv_interval: int = 2, cosine: str = "distance", momentum: float = 0.999,
                 end_momentum: float = 0.999999, momentum_hold: float = 0.1, reduction: int = 2,
                 use_scale: bool = True, upsampling: str = "bilinear", lam_concat: bool = False,
                 lr: float | None = None, min_lr: float | None = None, weight_decay: float | None = None,
                 group_momentum: float | None = None):
        super().__init__(alpha, partner, lr=lr, min_lr=min_lr, weight_decay=weight_decay,
                         group_momentum=group_momentum)
        self.mix_samples = count("mix_samples", mix_samples, 2)
        if self.mix_samples > 2 and partner != "perm":
            raise ValueError(f"partner: {partner!r} gives every source the same partner; with mix_samples > 2 "
                             "expected perm")
        self.is_random = bool(is_random)
        self.mask_layer = count("mask_layer", mask_layer, 0)
        self.lam_margin = in_interval("lam_margin", lam_margin, 0.0, 0.5)
        self.mixup_radio = in_interval("mixup_radio", mixup_radio, 0.0, 1.0)
        self.beta_radio = in_interval("beta_radio", beta_radio, 0.0, 1.0)
        self.adv_interval = count("adv_interval", adv_interval, 0)
        self.cosine = one_of("cosine", cosine, COSINE)
        self.momentum = in_interval("momentum", momentum, 0.0, 1.0)
        self.end_momentum = in_interval("end_momentum", end_momentum, self.momentum, 1.0)
        self.momentum_hold = in_interval("momentum_hold", momentum_hold, 0.0, 1.0)
        self.generator_options = dict(reduction=count("reduction", reduction, 1), use_scale=bool(use_scale),
                                      upsampling=one_of("upsampling", upsampling, UPSAMPLING),
                                      lam_concat=bool(lam_concat))
        self.mask_size: tuple[int, int] = (0, 0)

    # -- set-up ---------------------------------------------------------------------------------------------------
    def build(self, context: ModelContext) -> None:
        width = self.mask_stage_width(context)
        self.mask_size = tuple(context.input_shape[1:])
        self.generator = AdaptiveMask(width, **self.generator_options)
        self.encoder_k = MomentumEncoder(context.backbone, context.head, context.num_prefix_tokens)

    # -- randomness -----------------------------------------------------------------------------------------------
    def num_sources(self, ctx: MixContext, device: torch.device) -> int:
        if not self.is_random or self.mix_samples == 2:
            return self.mix_samples
        return int(torch.randint(2, self.mix_samples + 1, (1,), generator=ctx.generator, device=device))

    def draw(self, n: int, ctx: MixContext, device: torch.device) -> Draw:
        """n sources, λ, then the mixer's partners, then the backbone's."""
        sources = self.num_sources(ctx, device)
        lam = sample_beta(self.alpha, sources, ctx.generator, device)
        if sources == 2:
            w_mb, w_bb = torch.stack([lam[0], 1 - lam[0]]), torch.stack([lam[1], 1 - lam[1]])
        else:
            w_mb = w_bb = co_weights(lam)
        anchor = torch.arange(n, device=device)
        index_mb = [anchor] + [self.partner_index(n, ctx, device) for _ in range(sources - 1)]
        index_bb = [anchor] + [self.partner_index(n, ctx, device) for _ in range(sources - 1)]
        return Draw(w_mb, w_bb, index_mb, index_bb)

    # -- masks ----------------------------------------------------------------------------------------------------
    def masks(self, feats: Tensor, indices: Sequence[Tensor], weights: Tensor) -> Tensor:
        """Generator masks (N, n, H, W) for the sources ``indices`` of the clean batch's features."""
        return self.generator([feats[idx] for idx in indices], weights, self.mask_size)

    def backbone_masks(self, feats: Tensor, draw: Draw) -> Tensor:
        """The backbone's detached masks: the generator's, or the constant weights within ``lam_margin``."""
        with torch.no_grad():
            masks = self.masks(feats, draw.index_bb, draw.weights_bb)
            plain = plain_mixup(draw.weights_bb[0], self.lam_margin, draw.sources)
            constant = draw.weights_bb.view(1, -1, 1, 1).to(masks.dtype).expand_as(masks)
            return torch.where(plain, constant, masks)

    # -- the contract ---------------------------------------------------------------------------------------------
    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        """The batch the current generator makes (for pictures): Σ_j M_j ⊙ x[mb_j], label weights w."""
        draw = self.draw(labels.shape[0], ctx, inputs.device)
        with torch.no_grad():
            masks = self.masks(self.encoder_k.stage(inputs, self.mask_layer), draw.index_mb, draw.weights_mb)
        batch = source_batch(mix_images(inputs, masks, draw.index_mb), labels, draw.index_mb, draw.weights_mb,
                             num_classes)
        batch.mask = masks[:, :1].to(inputs.dtype)
        return batch

    def train_losses(self, model: Any, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict[str, Tensor]:
        draw = self.draw(labels.shape[0], ctx, inputs.device)
        with torch.no_grad():
            feats = self.encoder_k.stage(inputs, self.mask_layer)
        x_mb = mix_images(inputs, self.masks(feats, draw.index_mb, draw.weights_mb), draw.index_mb)
        x_bb = mix_images(inputs, self.backbone_masks(feats, draw), draw.index_bb)
        losses = self.generator_losses(model, inputs, x_mb, labels, draw, ctx.iter)
        losses.update(self.classifier_losses(model, inputs, x_bb, labels, draw))
        return losses

    def generator_losses(self, model: Any, inputs: Tensor, x_mb: Tensor, labels: Tensor, draw: Draw,
                         iteration: int) -> dict[str, Tensor]:
        """``loss_mix_k`` and ``loss_cos_k``: the generator's terms through the frozen momentum encoder."""
        batch = source_batch(x_mb, labels, draw.index_mb, draw.weights_mb, model.num_classes).bind(model.targets)
        logits = self.encoder_k(x_mb)
        ce = model.loss_fn(logits, batch).mean()
        if not is_adversarial(iteration, self.adv_interval):
            return {"loss_mix_k": ce, "loss_cos_k": ce.new_zeros(())}
        with torch.no_grad():
            preds = [self.encoder_k(inputs[idx]).float() for idx in draw.index_mb]
        cos = cosine_term(logits.float(), preds, draw.weights_mb.float(), self.cosine)
        return {"loss_mix_k": -self.beta_radio * ce, "loss_cos_k": (1 - self.beta_radio) * cos}

    def classifier_losses(self, model: Any, inputs: Tensor, x_bb: Tensor, labels: Tensor,
                          draw: Draw) -> dict[str, Tensor]:
        """``loss_one_q`` and ``loss_lin_q`` (the two terms of L_re_q) and ``loss_mix_q``, in the reference's
        forward order (clean, linear mix, generated mix)."""
        def loss_on(x: Tensor, batch: MixBatch) -> Tensor:
            return model.loss_fn(model.logits(model.features(x)), batch.bind(model.targets)).mean()

        one = loss_on(inputs, identity_batch(inputs, labels, model.num_classes))
        if draw.sources > 2:
            x_lin = linear_mix(inputs, draw.weights_bb, draw.index_bb)
            lin = loss_on(x_lin, source_batch(x_lin, labels, draw.index_bb, draw.weights_bb, model.num_classes))
            out = {"loss_one_q": (1 - self.mixup_radio) * one, "loss_lin_q": self.mixup_radio * lin}
        else:
            out = {"loss_one_q": one, "loss_lin_q": one.new_zeros(())}
        out["loss_mix_q"] = loss_on(x_bb, source_batch(x_bb, labels, draw.index_bb, draw.weights_bb,
                                                       model.num_classes))
        return out

    def after_step(self, progress: Any, model: nn.Module) -> None:
        m = ema_momentum(progress, self.momentum, self.end_momentum, self.momentum_hold)
        self.encoder_k.update(model.backbone, model.head, m)
