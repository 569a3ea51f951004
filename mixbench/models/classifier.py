"""The model that owns the mixup training step (docs/architecture.md, "Training step").

:class:`MixDataPreprocessor` moves the batch to the device, normalises it with the dataset's mean/std, casts
the labels to the task's label type and optionally converts the inputs to channels_last; in training it marks
the result ``owned`` (a fresh tensor, made for this step), so that the policy may mix it in place. :class:`MixClassifier`
(an mmengine ``BaseModel``; a classifier or, with a regression task, a regressor) then, in ``mode="loss"``: asks
the policy for a :class:`~mixbench.mixups.base.MixBatch` (computing only the model signals the policy declares
in ``needs``), binds the task's target builder to it, runs the forward inside ``policy.capture``, mixes features
at ``batch.layer`` through a forward hook when the policy asks for it (ManifoldMix), lets the policy relabel,
and returns the mean per-sample loss plus any extra loss terms. ``mode="predict"`` never mixes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import Tensor, nn

from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, OneHotTargets, TargetBuilder
from mixbench.mixups.learned.base import LearnedMixer, model_context
from mixbench.registry import BACKBONES, HEADS, LOSSES, MIXUPS, MODELS, build


class MixDataPreprocessor(BaseDataPreprocessor):
    """N×C×H×W → float, normalised with per-channel mean/std given in 0..255 units; labels to ``label_dtype``.

    Args:
        mean: per-channel mean (0..255 units).
        std: per-channel standard deviation (0..255 units).
        channels_last: return inputs in ``torch.channels_last`` memory format (faster convs on GPUs).
        label_dtype: the task's label type (int64 class indices, float32 regression targets).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False,
                 label_dtype: torch.dtype = torch.int64):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.channels_last = channels_last
        self.label_dtype = label_dtype

    def forward(self, data: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        """``{"inputs", "labels"}``, plus ``owned: True`` in training: the normalisation always makes a new
        tensor, which nothing but this step holds, so the policy may write the mixed batch into it."""
        data = self.cast_data(dict(data))
        x = data["inputs"]
        x = (x.float() - self.mean) / self.std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out = {"inputs": x, "labels": data["labels"].to(self.label_dtype)}
        if "groups" in data:
            out["groups"] = data["groups"]
        if training:
            out["owned"] = True
        return out


@MODELS.register_module("classifier")
class MixClassifier(BaseModel):
    """Backbone + head classifier trained with a mixup policy and a per-sample loss.

    Args:
        backbone: backbone module (``BACKBONES`` entry; exposes ``num_features`` and ``mix_points()``).
        head: head module (``HEADS`` entry).
        policy: mixup policy applied during training (``MIXUPS`` entry); a learned mixer (an ``nn.Module``) is
            a registered submodule, so the optimiser, checkpoints, device moves and DDP handle it.
        loss: per-sample loss (``LOSSES`` entry).
        num_classes: number of outputs: classes, or regression targets.
        data_preprocessor: normalisation module (see :class:`MixDataPreprocessor`).
        seed: seed of the mixing generator (reseeded per epoch by the runner for exact resume).
        targets: the task's target builder bound to every mixed batch (default: soft one-hot over
            ``num_classes``, the classification task's).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, policy: MixPolicy, loss: Any, num_classes: int,
                 data_preprocessor: MixDataPreprocessor, seed: int = 0, targets: TargetBuilder | None = None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.backbone = backbone
        self.head = head
        self.policy = policy
        self.loss_fn = loss
        self.num_classes = num_classes
        self.targets = OneHotTargets(num_classes) if targets is None else targets
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 0) or 0)
        self.seed = seed
        self._generator: torch.Generator | None = None
        # training progress, set by the runner's hook before each iteration
        self.progress = {"epoch": 0, "iter": 0, "progress": 0.0}

    # -- randomness -------------------------------------------------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator:
        """The mixing generator, on the batch's device (created on first use)."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    def reseed(self, seed: int, device: torch.device) -> None:
        self.generator(device).manual_seed(seed)

    # -- forward ----------------------------------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def logits(self, feats: Tensor) -> Tensor:
        return self.head(feats, num_prefix_tokens=self.num_prefix_tokens)

    def forward(self, inputs: Tensor, labels: Tensor | None = None, mode: str = "tensor",
                groups: Tensor | None = None, owned: bool = False) -> Any:
        """``owned``: ``inputs`` belongs to this call (see :class:`MixDataPreprocessor`); only ``loss`` uses it."""
        if mode == "loss":
            return self.loss(inputs, labels, owned)
        feats = self.features(inputs)
        logits = self.logits(feats)
        if mode == "predict":
            # one element per batch: the metric accumulates counts per batch, not per sample; ``logits`` are
            # the head's outputs (class scores, or predicted targets for regression)
            out = {"logits": logits.detach(), "labels": labels}
            if groups is not None:
                out["groups"] = groups
            return [out]
        return logits

    def loss(self, inputs: Tensor, labels: Tensor, owned: bool = False) -> dict[str, Tensor]:
        """Mixed-batch loss; ``owned=True`` lets the policy mix ``inputs`` in place (``MixContext.owned``)."""
        policy = self.policy
        signals = {}
        if policy.needs:
            from mixbench.models.signals import build_signals  # model-reading policies only

            signals = build_signals(self, inputs, labels, policy.needs)
        ctx = MixContext(generator=self.generator(inputs.device), epoch=self.progress["epoch"],
                         iter=self.progress["iter"], progress=self.progress["progress"], signals=signals, model=self,
                         owned=owned)
        owned_step = policy.train_losses(self, inputs, labels, ctx)
        if owned_step is not None:  # a learned mixer computes the whole step itself
            return owned_step
        batch = policy(inputs, labels, self.num_classes, ctx).bind(self.targets)
        with policy.capture(self) as captured, self._mix_at_layer(batch):
            x = batch.mix_features(batch.inputs) if batch.layer == 0 else batch.inputs
            feats = self.features(x)
            logits = self.logits(feats)
        batch = policy.relabel(batch, {"logits": logits, "features": feats, **captured}, ctx)
        losses = {"loss": self.loss_fn(logits, batch).mean()}
        for name, value in batch.extras.get("losses", {}).items():
            losses[f"loss_{name}" if not name.startswith("loss") else name] = value
        return losses

    @contextlib.contextmanager
    def _mix_at_layer(self, batch: MixBatch) -> Iterator[None]:
        """Mix the output of ``mix_points()[layer-1]`` with ``batch.mix_features`` (ManifoldMix)."""
        if not batch.layer:
            yield
            return
        points = self.backbone.mix_points()
        if not 1 <= batch.layer <= len(points):
            raise ValueError(f"mixup layer {batch.layer} out of range: the backbone has {len(points)} mix points")
        handle = points[batch.layer - 1].register_forward_hook(lambda _m, _i, out: batch.mix_features(out))
        try:
            yield
        finally:
            handle.remove()


def build_classifier(cfg: Mapping[str, Any], *, num_classes: int, in_chans: int, mean: Sequence[float],
                     std: Sequence[float], source: str = "", input_shape: Sequence[int] | None = None) -> BaseModel:
    """Build the model of a validated config for a dataset with the given shape and statistics.

    ``num_classes`` is the task's output size (classes, or regression targets). ``input_shape`` (C, H, W) of
    the training inputs is needed by learned mixers, which are set up here with the model's context
    (:class:`~mixbench.mixups.learned.base.ModelContext`) once the backbone and head exist.
    """
    from mixbench.config.task import build_task

    task = build_task(cfg)
    model_cfg = cfg["model"]
    backbone = build(BACKBONES, model_cfg["backbone"], "model.backbone", source, in_chans=in_chans)
    head = build(HEADS, model_cfg["head"], "model.head", source, in_features=backbone.num_features,
                 num_classes=num_classes)
    policy = build(MIXUPS, cfg["mixup"], "mixup", source)
    if isinstance(policy, LearnedMixer):
        if input_shape is None:
            raise ValueError("build_classifier: a learned mixer needs the input_shape (C, H, W)")
        policy.setup(model_context(backbone, head, num_classes, input_shape, new_backbone=lambda: build(
            BACKBONES, model_cfg["backbone"], "model.backbone", source, in_chans=in_chans)))
    loss = build(LOSSES, cfg["loss"], "loss", source, num_classes=num_classes)
    pre = MixDataPreprocessor(mean, std, channels_last=cfg["runtime"]["channels_last"],
                              label_dtype=task.label_dtype)
    cls = MODELS.get(model_cfg["type"])
    model = cls(backbone=backbone, head=head, policy=policy, loss=loss, num_classes=num_classes,
                data_preprocessor=pre, seed=cfg["seed"], targets=task.target_builder(num_classes))
    if cfg["runtime"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model
