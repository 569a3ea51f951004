"""AdaMixup: a policy generator that learns the per-sample mixing range, kept off the data manifold by an
intrusion discriminator.

Guo, Mao & Zhang, "MixUp as Locally Linear Out-of-Manifold Regularization", AAAI 2019 (arXiv:1809.02499).
Reference code: SITE5039/AdaMixUp ``GitHub.AdaMixup.AAAI.MNIST.Cifar.py`` (TF/tensorpack).

One training step on a batch ``x`` (N samples, labels ``y``), as the reference's ``build_graph``:

* partners ``π`` over the whole batch; ``h = ⌈N/2⌉`` anchors ``x[:h]`` are mixed with ``x[π[:h]]``; the other
  ``N − h`` samples are the discriminator's "unseen" positives;
* the policy generator (PG) reads ``g = (m₁⊙x[:h] + m₂⊙x[π[:h]]) / 2`` (per-pixel ``m ~ N(0, 1)`` truncated at
  ±2, TF's ``truncated_normal``) with a trunk of the classifier's architecture and weights of its own, then
  FC(hidden) → FC(3) → softmax = (a, b, c); ``λ = a + u·b``, ``u ~ U(0, 1)``: λ ∈ [a, a + b] ⊂ (0, 1);
* the classifier batch is the mixed ``x̃ = λ·x[:h] + (1 − λ)·x[π[:h]]`` followed by the clean anchors
  ``x[:N−h]``, with targets λ·y + (1 − λ)·y_π and y; ``loss_cls`` is the configured loss on it;
* the intrusion discriminator (the classifier's trunk, heads of its own: FC(K) → FC(2)) sees all N real images
  (label 1: the unseen half and the anchors) and the h mixed ones (label 0) in one more trunk forward;
  ``loss_intrusion`` is its 2-way cross-entropy;
* everything minimises ``loss_cls + loss_intrusion`` (there is no min-max). The PG is reached only through
  ``x̃``: targets are built from the detached λ, as TF1's ``softmax_cross_entropy_with_logits`` stops the
  gradient into its labels.

Departures (all without effect on the expected loss): the reference shuffles the classifier batch and the
discriminator batch before their forwards; the mean losses and BatchNorm's batch statistics do not depend on
the order, so mixbench keeps it. For an odd N the reference has no rule (it splits even batches in two);
mixbench mixes the larger half, so the classifier batch keeps N rows. The PG sees the normalised inputs that
every mixbench policy receives (the reference's CIFAR PG reads raw 0-255 pixels). The trunk's BatchNorm
running statistics are updated by both of its forwards, as PyTorch does in training mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.mixups.base import MixBatch, MixContext, OneHotTargets, expand_as, positive
from mixbench.mixups.learned.base import LearnedMixer, ModelContext
from mixbench.models.heads import pool_features
from mixbench.ranges import COUNT, POSITIVE
from mixbench.registry import MIXUPS


def _linear(cin: int, cout: int, std: float) -> nn.Linear:
    """tensorpack's ``FullyConnected`` as the reference builds it: normal(0, std) weights, zero bias, no
    activation."""
    fc = nn.Linear(cin, cout)
    nn.init.normal_(fc.weight, 0.0, std)
    nn.init.zeros_(fc.bias)
    return fc


class PolicyGenerator(nn.Module):
    """The PG: its own trunk → pooled features → FC(hidden) → FC(3) → softmax over (a, b, c).

    Args:
        trunk: a backbone of the classifier's architecture with weights of its own.
        num_features: the trunk's output width.
        hidden: width of the first FC layer (100 in the reference).
        init_std: standard deviation of the FC weights at initialisation (1e-3 in the reference).
        num_prefix_tokens: class tokens of a ViT trunk, for pooling.
    """

    def __init__(self, trunk: nn.Module, num_features: int, hidden: int, init_std: float,
                 num_prefix_tokens: int = 0):
        super().__init__()
        self.trunk = trunk
        self.fc1 = _linear(num_features, hidden, init_std)
        self.fc2 = _linear(hidden, 3, init_std)
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, g: Tensor) -> Tensor:
        """(n, 3) softmax probabilities (a, b, c) of the gated images ``g``."""
        feats = pool_features(self.trunk(g), self.num_prefix_tokens)
        return torch.softmax(self.fc2(self.fc1(feats)).float(), dim=1)


class IntrusionDiscriminator(nn.Module):
    """The discriminator's own heads on the classifier trunk's features: FC(K) → FC(2) (2-way logits)."""

    def __init__(self, num_features: int, num_classes: int, init_std: float, num_prefix_tokens: int = 0):
        super().__init__()
        self.fc1 = _linear(num_features, num_classes, init_std)
        self.fc2 = _linear(num_classes, 2, init_std)
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, feats: Tensor) -> Tensor:
        return self.fc2(self.fc1(pool_features(feats, self.num_prefix_tokens)))


def mixed_count(n: int) -> int:
    """How many of a batch of ``n`` are mixed: half (the larger half for an odd ``n``)."""
    if n < 2:
        raise ValueError(f"adamixup needs at least 2 samples per batch, got {n}")
    return n - n // 2


def intrusion_targets(num_real: int, num_mixed: int, device: torch.device) -> Tensor:
    """Class 1 for the real images (first), class 0 for the mixed ones, as the reference's one-hot labels."""
    return torch.cat([torch.ones(num_real, dtype=torch.long, device=device),
                      torch.zeros(num_mixed, dtype=torch.long, device=device)])


def intrusion_loss(logits: Tensor, num_real: int) -> Tensor:
    """Mean 2-way cross-entropy of the discriminator's ``logits`` (real rows first, then mixed)."""
    targets = intrusion_targets(num_real, logits.shape[0] - num_real, logits.device)
    return F.cross_entropy(logits.float(), targets)


def classifier_batch(inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor) -> MixBatch:
    """The classifier's batch for mixing weights ``lam`` (h,) and partners ``index`` (h,) of the first h anchors.

    Rows ``[0, h)``: ``λ·x[i] + (1 − λ)·x[index[i]]`` (differentiable in ``lam``), label weights the detached λ
    and 1 − λ; rows ``[h, N)``: the clean anchors ``x[:N − h]`` (weights 1 and 0). Source 0 is the anchor of
    each row, which for the clean rows is not the row's own sample.
    """
    n, h = labels.shape[0], lam.shape[0]
    clean = torch.arange(n - h, device=labels.device)
    anchors = torch.arange(h, device=labels.device)
    w = expand_as(lam.to(inputs.dtype), inputs[:h])
    mixed = w * inputs[:h] + (1.0 - w) * inputs[index]
    lam = lam.detach().float()
    ones = torch.ones(n - h, device=labels.device)
    return MixBatch(inputs=torch.cat([mixed, inputs[: n - h]]), labels=labels,
                    indices=[torch.cat([anchors, clean]), torch.cat([index, clean])],
                    weights=[torch.cat([lam, ones]), torch.cat([1.0 - lam, torch.zeros_like(ones)])],
                    builder=OneHotTargets(num_classes))


@MIXUPS.register_module("adamixup")
class AdaMixup(LearnedMixer):
    """AdaMixup (Guo et al., AAAI 2019): a learned per-sample λ range and an intrusion discriminator.

    Args:
        hidden: width of the policy generator's first FC layer (reference: 100).
        init_std: weight std of the generator's and discriminator's FC layers at initialisation (reference:
            1e-3, so the generator starts near a = b = c = 1/3).
        partner: partner scheme over the whole batch (reference: a random permutation, ``perm``).
        lr, min_lr, weight_decay: an optimiser group of the policy generator's own (reference: none, one
            optimiser for everything); see :class:`~mixbench.mixups.learned.base.LearnedMixer`.
    """

    group_module = "generator"
    ranges = {"hidden": COUNT, "init_std": POSITIVE}

    def __init__(self, hidden: int = 100, init_std: float = 1e-3, partner: str = "perm", *,
                 lr: float | None = None, min_lr: float | None = None, weight_decay: float | None = None,
                 group_momentum: float | None = None):
        super().__init__(partner=partner, lr=lr, min_lr=min_lr, weight_decay=weight_decay,
                         group_momentum=group_momentum)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden: expected a positive integer, got {hidden!r}")
        self.hidden = hidden
        self.init_std = positive("init_std", init_std)
        self.generator: PolicyGenerator | None = None
        self.discriminator: IntrusionDiscriminator | None = None

    def build(self, context: ModelContext) -> None:
        if context.new_backbone is None:
            raise ValueError("adamixup: the model context has no new_backbone to build the generator's trunk")
        width = int(context.backbone.num_features)
        prefix = context.num_prefix_tokens
        self.generator = PolicyGenerator(context.new_backbone(), width, self.hidden, self.init_std, prefix)
        self.discriminator = IntrusionDiscriminator(width, context.num_classes, self.init_std, prefix)

    def sample(self, inputs: Tensor, ctx: MixContext) -> dict[str, Tensor]:
        """Partners over the batch, then the gates m₁, m₂ of the h anchors and their partners, then u."""
        n = inputs.shape[0]
        h = mixed_count(n)
        index = self.partner_index(n, ctx, inputs.device)[:h]
        gates = torch.empty((2, h, *inputs.shape[1:]), device=inputs.device, dtype=torch.float32)
        nn.init.trunc_normal_(gates, 0.0, 1.0, -2.0, 2.0, generator=ctx.generator)
        u = torch.rand(h, generator=ctx.generator, device=inputs.device)
        return {"index": index, "gates": gates, "u": u}

    def interval(self, inputs: Tensor, index: Tensor, gates: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) per anchor from the generator on ``g = (m₁⊙x[:h] + m₂⊙x[index]) / 2``."""
        if self.generator is None:
            raise RuntimeError("adamixup: the policy has no generator yet; build_classifier sets it up")
        h = index.shape[0]
        g = (gates[0].to(inputs.dtype) * inputs[:h] + gates[1].to(inputs.dtype) * inputs[index]) / 2.0
        abc = self.generator(g)
        return abc[:, 0], abc[:, 1]

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        """The classifier batch (:func:`classifier_batch`) of the generated λ; ``extras`` holds ``lam``,
        ``lam_low`` (a) and ``lam_high`` (a + b) of the mixed rows, detached."""
        s = self.sample(inputs, ctx)
        a, b = self.interval(inputs, s["index"], s["gates"])
        lam = a + s["u"] * b
        batch = classifier_batch(inputs, labels, num_classes, lam, s["index"])
        batch.extras = {"lam": lam.detach(), "lam_low": a.detach(), "lam_high": (a + b).detach()}
        return batch

    def train_losses(self, model: nn.Module, inputs: Tensor, labels: Tensor,
                     ctx: MixContext) -> dict[str, Tensor]:
        """``loss_cls`` on the classifier batch, ``loss_intrusion`` on real + mixed images; ``lam_low`` /
        ``lam_high``: the batch means of a and a + b (logged, not summed)."""
        batch = self.mix(inputs, labels, model.num_classes, ctx).bind(model.targets)
        return self.losses(model, inputs, batch)

    def losses(self, model: nn.Module, inputs: Tensor, batch: MixBatch) -> dict[str, Tensor]:
        """The loss terms of a classifier ``batch`` made from ``inputs`` (its first h rows are the mixed ones)."""
        logits = model.logits(model.features(batch.inputs))
        loss_cls = model.loss_fn(logits, batch).mean()
        h = batch.extras["lam"].shape[0]
        feats = model.features(torch.cat([inputs, batch.inputs[:h]]))
        loss_intrusion = intrusion_loss(self.discriminator(feats), inputs.shape[0])
        return {"loss_cls": loss_cls, "loss_intrusion": loss_intrusion,
                "lam_low": batch.extras["lam_low"].mean(), "lam_high": batch.extras["lam_high"].mean()}
