"""The contract of stateful policies (docs/architecture.md, "Policy contract" and "Training step: stateful
policies").

A :class:`LearnedMixer` is a policy and an ``nn.Module``. As a submodule of the classifier (``model.policy``)
its parameters and buffers reach the optimiser, the checkpoints (``state_dict``), ``.to(device)``,
channels_last and DDP like any other module's. Its life in a run:

1. built by the registry from the ``mixup`` config, cheaply (no sub-network yet: configs are validated by
   building their policy);
2. :meth:`LearnedMixer.setup` with a :class:`ModelContext` once the backbone and head exist
   (``build_classifier``): the mixer builds its sub-networks from the stage widths and copies the momentum
   encoder;
3. every iteration, :class:`~mixbench.engine.hooks.LearnedMixerHook` calls :meth:`~LearnedMixer.before_iter`
   (annealed loss weights; the mixer group's lr and weight decay), the classifier's training step delegates
   to :meth:`~LearnedMixer.train_losses`, and after the optimiser step the hook calls
   :meth:`~LearnedMixer.after_step` (the EMA update). Every schedule is a function of the iteration only, so a
   resumed run repeats an uninterrupted one exactly.

``policy(inputs, labels, num_classes, ctx)`` still returns a :class:`~mixbench.mixups.base.MixBatch` (the
batch the current mixer makes), so pictures and galleries work with learned mixers too.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from mixbench.errors import ConfigError
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, in_interval, non_negative, positive
from mixbench.models.signals import module_mode, tokens_to_map
from mixbench.ranges import NON_NEGATIVE, POSITIVE, UNIT_OPEN_TOP


@dataclass(frozen=True)
class ModelContext:
    """What a learned mixer may know about the model it is built for.

    Attributes:
        num_classes: the model's output size.
        backbone: the online backbone (exposes ``mix_points()``).
        head: the online head.
        input_shape: (C, H, W) of the training inputs.
        stage_channels: channels of each mix point's output, probed once by a no-grad forward.
        stage_sizes: (h, w) of each mix point's output.
        num_prefix_tokens: class/register tokens of a ViT backbone (0 for CNNs).
        new_backbone: builds another backbone from the same config, with fresh weights (for a mixer with a trunk
            of its own); ``None`` where the builder gave none.
    """

    num_classes: int
    backbone: nn.Module
    head: nn.Module
    input_shape: tuple[int, int, int]
    stage_channels: tuple[int, ...]
    stage_sizes: tuple[tuple[int, int], ...]
    num_prefix_tokens: int = 0
    new_backbone: Callable[[], nn.Module] | None = None


@dataclass(frozen=True)
class Progress:
    """Where training is: the global iteration (0-based), the iterations of the whole run, the epoch."""

    iter: int = 0
    max_iters: int = 1
    epoch: int = 0

    @property
    def fraction(self) -> float:
        return self.iter / max(self.max_iters, 1)


class _Reached(Exception):
    """Raised by a stage hook to stop a forward once the wanted stage output exists."""

    def __init__(self, output: Any):
        super().__init__()
        self.output = output


def stage_output(backbone: nn.Module, x: Tensor, layer: int, prefix: int = 0) -> Tensor:
    """Output (N, C, h, w) of ``backbone.mix_points()[layer]`` on ``x``; the later stages are not run.

    ViT tokens are reshaped to their patch grid. Gradients flow as the caller's grad mode allows.
    """
    point = backbone.mix_points()[layer]

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        raise _Reached(output)

    handle = point.register_forward_hook(hook)
    try:
        backbone(x)
    except _Reached as reached:
        out = reached.output[0] if isinstance(reached.output, (tuple, list)) else reached.output
        return tokens_to_map(out, prefix)
    finally:
        handle.remove()
    raise RuntimeError(f"mix point {layer} was not reached by the backbone's forward")


def probe_stages(backbone: nn.Module, input_shape: Sequence[int],
                 prefix: int = 0) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """(channels, (h, w)) of every mix point, from one eval-mode, no-grad forward of a zero batch of 2."""
    points = backbone.mix_points()
    found: dict[int, Tensor] = {}
    handles = [p.register_forward_hook(lambda _m, _i, out, k=k: found.__setitem__(k, out))
               for k, p in enumerate(points)]
    param = next(backbone.parameters())
    x = torch.zeros((2, *input_shape), device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad(), module_mode(backbone, False):
            backbone(x)
    finally:
        for h in handles:
            h.remove()
    channels, sizes = [], []
    for k in range(len(points)):
        out = found[k][0] if isinstance(found[k], (tuple, list)) else found[k]
        if out.dim() not in (3, 4):
            raise ConfigError(f"mixup: mix point {k} of the backbone gives shape {tuple(out.shape)}; a learned "
                              "mixer needs feature maps (a CNN or ViT backbone)")
        fmap = tokens_to_map(out, prefix)
        channels.append(int(fmap.shape[1]))
        sizes.append((int(fmap.shape[2]), int(fmap.shape[3])))
    return tuple(channels), tuple(sizes)


def model_context(backbone: nn.Module, head: nn.Module, num_classes: int, input_shape: Sequence[int],
                  new_backbone: Callable[[], nn.Module] | None = None) -> ModelContext:
    """The :class:`ModelContext` of a backbone and head, with the stage shapes probed once."""
    if not callable(getattr(backbone, "mix_points", None)) or not backbone.mix_points():
        raise ConfigError(f"mixup.type: a learned mixer reads stage features; backbone {type(backbone).__name__} "
                          "has no mix points")
    prefix = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
    shape = tuple(int(v) for v in input_shape)
    channels, sizes = probe_stages(backbone, shape, prefix)
    return ModelContext(num_classes=int(num_classes), backbone=backbone, head=head, input_shape=shape,
                        stage_channels=channels, stage_sizes=sizes, num_prefix_tokens=prefix,
                        new_backbone=new_backbone)


def cosine_anneal(start: float, end: float, fraction: float) -> float:
    """Cosine from ``start`` (fraction 0) to ``end`` (fraction 1), as mmcv's ``annealing_cos``."""
    return end + (start - end) * (math.cos(math.pi * min(max(fraction, 0.0), 1.0)) + 1.0) / 2.0


def ema_momentum(progress: Progress, base: float, end: float, hold: float) -> float:
    """The momentum-encoder coefficient at ``progress`` (OpenMixup's ``CosineScheduleHook`` with
    ``adjust_scope=[hold, 1]``, ``warming_up="constant"``).

    ``base`` for the first ``int(hold · max_iters)`` iterations, then ``end − (end − base)·(cos(π·t/T) + 1)/2``
    with t the iteration and T the run's iterations: the cosine is not restarted at the end of the hold, so
    it continues from where it would be at t.
    """
    start = int(progress.max_iters * hold)
    if progress.iter < start:
        return base
    return end - (end - base) * (math.cos(math.pi * progress.iter / max(progress.max_iters, 1)) + 1.0) / 2.0


class MomentumEncoder(nn.Module):
    """Frozen copies of the online backbone and head, updated as their EMA after every optimiser step.

    ``requires_grad`` is off on every parameter: no loss term reaches them, the optimiser skips them and DDP
    leaves them out of gradient synchronisation. They start equal to the online modules and, since the online
    weights are equal on every rank, stay equal on every rank. They are part of the ``state_dict``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, num_prefix_tokens: int = 0):
        super().__init__()
        self.backbone = copy.deepcopy(backbone)
        self.head = copy.deepcopy(head)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x), num_prefix_tokens=self.num_prefix_tokens)

    def stage(self, x: Tensor, layer: int) -> Tensor:
        """The ``layer``-th mix point's output (N, C, h, w)."""
        return stage_output(self.backbone, x, layer, self.num_prefix_tokens)

    @torch.no_grad()
    def update(self, backbone: nn.Module, head: nn.Module, momentum: float) -> None:
        """θ_k ← m·θ_k + (1 − m)·θ_q for every parameter (buffers keep their own running statistics)."""
        online = [*backbone.parameters(), *head.parameters()]
        mine = list(self.parameters())
        if len(online) != len(mine):
            raise RuntimeError("momentum encoder and online model have different parameters")
        for p_k, p_q in zip(mine, online):
            p_k.mul_(momentum).add_(p_q.detach(), alpha=1.0 - momentum)


class LearnedMixer(MixPolicy, nn.Module):
    """Base class of the policies with parameters of their own (see the module docstring).

    Args:
        alpha: Beta(α, α) concentration of λ.
        partner: partner scheme (``perm``, ``flip``, ``roll``).
        lr: learning rate of the mixer's own optimiser group (the parameters of :attr:`group_module`);
            ``None`` puts them in the main group, with the main schedule.
        min_lr: the group's lr at the end of training (cosine from ``lr``); ``None``: constant ``lr``.
        weight_decay: the group's weight decay; ``None``: the main one.
        group_momentum: the group's SGD momentum; ``None``: the main one (OpenMixup's WRN-28-8 recipes give
            the MixBlock 0).

    Subclasses implement :meth:`build`, :meth:`mix` and :meth:`train_losses`, and may override
    :meth:`before_iter` / :meth:`after_step`. Learned mixers are classification-only.
    """

    group_module: str = "mixblock"
    ranges = {"alpha": POSITIVE, "lr": POSITIVE, "min_lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
              "group_momentum": UNIT_OPEN_TOP}

    def __init__(self, alpha: float = 1.0, partner: str = "perm", *, lr: float | None = None,
                 min_lr: float | None = None, weight_decay: float | None = None,
                 group_momentum: float | None = None):
        nn.Module.__init__(self)
        MixPolicy.__init__(self, alpha, 1.0, partner)
        if min_lr is not None and lr is None:
            raise ValueError("min_lr: set lr too (min_lr is the end of the mixer group's own schedule)")
        self.lr = None if lr is None else positive("lr", lr)
        self.min_lr = None if min_lr is None else non_negative("min_lr", min_lr)
        self.weight_decay = None if weight_decay is None else non_negative("weight_decay", weight_decay)
        self.group_momentum = None if group_momentum is None else in_interval("group_momentum", group_momentum)
        self.progress = Progress()
        self.input_shape: tuple[int, int, int] | None = None

    # -- life cycle ----------------------------------------------------------------------------------------------
    def setup(self, context: ModelContext) -> None:
        """Build the sub-networks for the model described by ``context`` (once, before training)."""
        self.input_shape = context.input_shape
        self.build(context)

    def build(self, context: ModelContext) -> None:
        raise NotImplementedError

    def check_mix_points(self, count: int) -> None:
        """Raise ``ValueError("<option>: ...")`` unless a backbone with ``count`` mix points can serve (and has
        the ``mask_layer`` stage, for a mixer that reads one)."""
        if count < 1:
            raise ValueError("type: a learned mixer reads stage features; the backbone has no mix points")
        layer = getattr(self, "mask_layer", None)
        if layer is not None and not layer < count:
            raise ValueError(f"mask_layer: {layer} is not a mix point of the backbone (it has {count}: "
                             f"0..{count - 1})")

    def mask_stage_width(self, context: ModelContext) -> int:
        """Channels of the ``mask_layer`` stage the mixer reads; a one-line config error when the backbone
        lacks it."""
        try:
            self.check_mix_points(len(context.stage_channels))
        except ValueError as exc:
            raise ConfigError(f"mixup.{exc}") from None
        return context.stage_channels[self.mask_layer]

    def before_iter(self, progress: Progress) -> None:
        """Called before every training iteration; the default keeps ``progress`` for the step."""
        self.progress = progress

    def after_step(self, progress: Progress, model: nn.Module) -> None:
        """Called after every optimiser step with the (unwrapped) classifier; default: nothing."""

    def train_losses(self, model: nn.Module, inputs: Tensor, labels: Tensor,
                     ctx: MixContext) -> dict[str, Tensor] | None:
        raise NotImplementedError

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        raise NotImplementedError

    # -- the own optimiser group -----------------------------------------------------------------------------------
    @property
    def has_own_group(self) -> bool:
        return self.lr is not None or self.weight_decay is not None or self.group_momentum is not None

    def group_prefix(self) -> str:
        """The parameter-name prefix of the group inside the classifier (``policy.<group_module>``)."""
        return f"policy.{self.group_module}"

    def group_parameters(self) -> list[nn.Parameter]:
        module = getattr(self, self.group_module, None)
        return [] if module is None else [p for p in module.parameters() if p.requires_grad]

    def group_options(self, progress: Progress) -> dict[str, float]:
        """The group's ``lr``, ``weight_decay`` and ``momentum`` at ``progress`` (only those configured)."""
        out: dict[str, float] = {}
        if self.lr is not None:
            end = self.lr if self.min_lr is None else self.min_lr
            out["lr"] = cosine_anneal(self.lr, end, progress.fraction)
        if self.weight_decay is not None:
            out["weight_decay"] = self.weight_decay
        if self.group_momentum is not None:
            out["momentum"] = self.group_momentum
        return out

    def __repr__(self) -> str:
        return nn.Module.__repr__(self)
