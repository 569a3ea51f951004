"""The classifier side of ``mixbench visualize`` for policies that read the model.

A policy that declares model signals (``needs``), relabels after the forward, or picks its feature-mixing
layer from the backbone cannot be drawn without a classifier. This module builds one through the normal
config path (an experiment file: by default ``configs/digits/vit/NAME.yaml`` or ``configs/digits/NAME.yaml``),
loads ``--checkpoint`` weights or trains it briefly in-process on the config's dataset (seeded, clean labels),
and runs one training step of :class:`~mixbench.models.classifier.MixClassifier` on a small batch with the
policy wrapped in a recorder, so that the signals, the capture, the feature hook and the relabel step are the
classifier's own. The recorder keeps the mixed batch before and after :meth:`relabel`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.config.compose import DEFAULT_CONFIGS
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy
from mixbench.mixups.learned.base import LearnedMixer


def reads_model(policy: MixPolicy) -> bool:
    """True when drawing ``policy`` needs a classifier: declared signals, a relabel step, a feature-mixing
    layer chosen from the backbone (AlignMix's ``mix_layer(model)``), or a learned mixer."""
    return (bool(policy.needs) or bool(policy.relabels) or callable(getattr(policy, "mix_layer", None))
            or isinstance(policy, LearnedMixer))


def default_experiment(name: str, policy: MixPolicy) -> Path:
    """The digits experiment file of ``name`` (ViT one first), else the vanilla CNN or ViT digits file."""
    for cand in (DEFAULT_CONFIGS / "digits" / "vit" / f"{name}.yaml", DEFAULT_CONFIGS / "digits" / f"{name}.yaml"):
        if cand.is_file():
            return cand
    vit = "attention" in policy.needs or policy.relabels
    return DEFAULT_CONFIGS / "digits" / ("vit" if vit else "") / "vanilla.yaml"


class RecordingPolicy(MixPolicy):
    """Delegates to a policy and keeps the batch it returns and the relabelled batch."""

    def __init__(self, inner: MixPolicy):
        self.inner = inner
        self.needs, self.relabels = inner.needs, inner.relabels
        self.mixed: MixBatch | None = None
        self.final: MixBatch | None = None

    def __call__(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        self.mixed = self.inner(inputs, labels, num_classes, ctx)
        return self.mixed

    def capture(self, model: Any) -> contextlib.AbstractContextManager[dict]:
        return self.inner.capture(model)

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        self.final = self.inner.relabel(batch, outputs, ctx)
        return self.final


@dataclass
class ModelStep:
    """What one classifier step produced, plus what the figure needs to say about the model."""

    inputs: Tensor  # normalised float batch given to the policy
    labels: Tensor
    mixed: MixBatch  # the policy's batch (before relabel)
    final: MixBatch  # after relabel (the same object when the policy does not relabel)
    mean: Tensor  # (1, C, 1, 1) in 0..1 units, to show images
    std: Tensor
    classes: list[str]
    about: str  # e.g. "digits CNN, trained in-process 200 steps (seed 0), val top-1 93.1 %"


def load_experiment(path: str | Path, overrides: list[str]) -> tuple[dict, str]:
    """A validated config from an experiment file or a run's ``config.yaml``."""
    from mixbench.config import load_config

    cfg, source = load_config(str(path), overrides)
    return cfg, str(source.experiment_file)


def _datasets(cfg: Mapping[str, Any]) -> tuple[Any, Any]:
    from mixbench.registry import DATASETS, lookup

    d = cfg["data"]
    factory = lookup(DATASETS, d["type"], "data.type")
    return factory("train", root=d["root"], **d["params"]), factory("val", root=d["root"], **d["params"])


def _optimizer(model: torch.nn.Module, s: Mapping[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=s["lr"], betas=tuple(s["betas"]), weight_decay=s["weight_decay"])
    return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])


def train_briefly(model: Any, cfg: Mapping[str, Any], train_set: Any, steps: int, seed: int) -> None:
    """``steps`` plain cross-entropy steps (no mixing, constant lr of the config's optimiser): enough for the
    saliency, CAM and attention maps to follow the digits, in seconds on a CPU."""
    from mixbench.datasets.loaders import build_loader

    d = cfg["data"]
    loader = build_loader(train_set, train=True, batch_size=d["batch_size"], resident="device",
                          crop_padding=d["crop_padding"], hflip=d["hflip"], seed=seed, resize=d.get("resize"))
    opt = _optimizer(model, cfg["schedule"])
    model.train()
    done, epoch = 0, 0
    while done < steps:
        loader.set_epoch(epoch)
        for data in loader:
            batch = model.data_preprocessor(data, True)
            loss = F.cross_entropy(model(batch["inputs"]), batch["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
        epoch += 1


@torch.no_grad()
def val_accuracy(model: Any, cfg: Mapping[str, Any], val_set: Any) -> float:
    from mixbench.datasets.loaders import build_loader

    loader = build_loader(val_set, train=False, batch_size=256, resident="device", resize=cfg["data"].get("resize"))
    model.eval()
    hit = total = 0
    for data in loader:
        batch = model.data_preprocessor(data, False)
        hit += int((model(batch["inputs"]).argmax(1) == batch["labels"]).sum())
        total += int(batch["labels"].numel())
    return hit / max(total, 1)


def pick_samples(val_set: Any, n: int, cfg: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """The first validation image of each of the first ``n`` classes (uint8 batch, labels)."""
    from mixbench.datasets.loaders import resize_images

    tensors = val_set.tensors()
    labels = tensors[1] if tensors is not None else torch.tensor([int(val_set[i][1]) for i in range(len(val_set))])
    picks = []
    for c in range(val_set.num_classes):
        hits = torch.nonzero(labels == c).flatten()
        if len(hits):
            picks.append(int(hits[0]))
        if len(picks) == n:
            break
    images = torch.stack([val_set[i][0] for i in picks])
    return resize_images(images, cfg["data"].get("resize")), labels[picks]


def load_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Load ``--checkpoint`` weights into the figure's classifier (weights-only, see
    :func:`mixbench.cli.test.load_weights`)."""
    from mixbench.cli.test import load_weights

    load_weights(model, path, hint="; pass the run's config.yaml with --model")


def run_model_step(name: str, policy_cfg: Mapping[str, Any], *, experiment: str | None, checkpoint: str | None,
                   train_steps: int, n: int, seed: int) -> ModelStep:
    """Build the classifier, load or train it, and run one recorded training step on ``n`` samples."""
    from mixbench.models.classifier import build_classifier
    from mixbench.registry import MIXUPS, build

    probe = build(MIXUPS, dict(policy_cfg), "mixup")
    if experiment is None and checkpoint is not None:
        beside = Path(checkpoint).resolve().parent / "config.yaml"
        experiment = str(beside) if beside.is_file() else None
    path = experiment or str(default_experiment(name, probe))
    cfg, where = load_experiment(path, [])
    cfg = dict(cfg)
    # the experiment's own mixup options (e.g. digits-sized tokens) unless the policy differs; then ours
    base = dict(cfg["mixup"]) if cfg["mixup"].get("type") == name else {}
    cfg["mixup"] = {**base, **policy_cfg}
    cfg["runtime"] = dict(cfg["runtime"], channels_last=False)
    train_set, val_set = _datasets(cfg)
    torch.manual_seed(seed)  # initial weights, as the runner seeds them
    side = cfg["data"].get("resize")
    model = build_classifier(cfg, num_classes=val_set.num_classes, in_chans=val_set.in_chans, mean=val_set.mean,
                             std=val_set.std, source=where,
                             input_shape=(val_set.in_chans, *((side, side) if side else val_set.image_size)))
    kind = f"{cfg['data']['type']} {cfg['model']['backbone'].get('name', cfg['model']['backbone']['type'])}"
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        how = f"weights {Path(checkpoint).name}"
    else:
        t0 = time.perf_counter()
        train_briefly(model, cfg, train_set, train_steps, seed)
        how = f"trained in-process {train_steps} clean steps in {time.perf_counter() - t0:.0f} s (seed {seed})"
    acc = val_accuracy(model, cfg, val_set)
    images, labels = pick_samples(val_set, n, cfg)
    model.train()  # a training step, as the runner calls it
    recorder = RecordingPolicy(model.policy)
    del model.policy  # a module policy is a registered submodule, which only a module may replace
    model.policy = recorder
    model.reseed(seed, torch.device("cpu"))
    data = model.data_preprocessor({"inputs": images, "labels": labels}, True)
    model.loss(data["inputs"], data["labels"])
    del model.policy
    model.policy = recorder.inner
    pre = model.data_preprocessor
    classes = list(getattr(val_set, "classes", None) or [str(c) for c in range(val_set.num_classes)])
    return ModelStep(inputs=data["inputs"].detach(), labels=labels, mixed=recorder.mixed,
                     final=recorder.final if recorder.final is not None else recorder.mixed,
                     mean=pre.mean / 255.0, std=pre.std / 255.0, classes=classes,
                     about=f"{kind}, {how}, val top-1 {100 * acc:.1f} %")
