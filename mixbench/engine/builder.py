"""Build an mmengine Runner from a validated mixbench config (docs/architecture.md, "Flow").

Everything the Runner needs is built here from registry keys: datasets and loaders (interface A), the
classifier (interface C), the optimiser wrapper (SGD/AdamW, gradient clipping, AMP through
:class:`~mixbench.engine.compat.MixAmpOptimWrapper`), warmup + cosine/step schedules, checkpoints
(interval + last, written crash-safe by :class:`~mixbench.engine.compat.MixCheckpointHook`), EMA, and the
mixbench hooks.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from mmengine.evaluator import Evaluator
from mmengine.runner import Runner, set_random_seed

from mixbench.config.task import build_task
from mixbench.datasets.augment import ResizedCrop
from mixbench.datasets.loaders import build_loader
from mixbench.datasets.noise import add_label_noise
from mixbench.datasets.splits import heldout_split, relabelled, subset
from mixbench.engine import compat
from mixbench.engine.dist import DistInfo
from mixbench.engine.heldout import FitOnSplitHook
from mixbench.engine.hooks import EpochSeedHook, LearnedMixerHook, MetricsHook, ProgressHook
from mixbench.errors import ConfigError
from mixbench.evaluation.noise import Memorisation
from mixbench.mixups.learned.base import LearnedMixer
from mixbench.models.classifier import build_classifier
from mixbench.registry import DATASETS, lookup
from mixbench.results.record import atomic_write_text

_NAMES = itertools.count()


class MixRunner(Runner):
    """mmengine's Runner; the resolved config is saved by mixbench as ``config.yaml``, not as ``<time>.py``."""

    def dump_config(self) -> None:
        return None

    def _log_env(self, env_cfg: dict) -> None:
        """mmengine logs the environment at INFO; collecting it imports torchvision and asks the compilers for
        their versions, seconds per run, so it is skipped when INFO is not shown (``runtime.log_level``
        defaults to WARNING; ``record.json`` keeps mixbench's own environment either way)."""
        if self.logger.isEnabledFor(logging.INFO):
            super()._log_env(env_cfg)


@dataclass
class Data:
    """Loaders of a run and what the model needs to know about the data.

    ``num_outputs`` is the task's output size (classes or targets); ``heldout`` loads the held-out split and
    ``flipped`` the training samples whose label noise flipped (``None`` when not configured); ``info`` goes
    into the record (``heldout``, ``label_noise``), ``flipped_indices`` into ``label_noise.json``.
    """

    train: Any
    val: Any
    num_outputs: int
    in_chans: int
    mean: tuple
    std: tuple
    heldout: Any = None
    flipped: Any = None
    info: dict = field(default_factory=dict)
    input_shape: tuple = ()
    noisy_labels: Any = None
    flipped_indices: Any = None


def split_training(cfg: Mapping[str, Any], factory: Any, train_set: Any) -> tuple[Any, Any, Any, dict, Any]:
    """Apply ``data.label_noise`` and ``data.holdout`` to the training split.

    Returns ``(train, heldout, flipped, info, noise)``: the noise is drawn on the whole training split first
    (held-out labels are as noisy as the rest, as a user's would be); ``flipped`` holds the flipped samples that
    remain in training.
    """
    d = cfg["data"]
    if (d["holdout"] is not None or d["label_noise"] is not None) and d["params"].get("repeat", 1) > 1:
        raise ConfigError("data.params.repeat: must be 1 with data.holdout or data.label_noise (a repeated image "
                          "would be both held out and trained on, or flipped differently per copy)")
    info: dict[str, Any] = {}
    noise = None
    if d["label_noise"] is not None:
        _, labels = train_set.tensors() or (None, None)
        if labels is None:
            raise ConfigError(f"data.label_noise: needs an in-memory dataset; '{d['type']}' reads files")
        try:
            noise = add_label_noise(labels, train_set.num_classes, d["label_noise"], dataset=d["type"])
        except ValueError as exc:
            raise ConfigError(f"data.label_noise.{exc}") from None
        train_set = relabelled(train_set, noise.labels)
        info["label_noise"] = noise.summary()
    keep = torch.arange(len(train_set))
    heldout = None
    if d["holdout"] == "dataset":
        heldout = factory("heldout", root=d["root"], **d["params"])
        info["heldout"] = {"source": "dataset", "n": len(heldout)}
    elif d["holdout"] is not None:
        keep, held = heldout_split(len(train_set), float(d["holdout"]), cfg["seed"])
        heldout = subset(train_set, held)
        train_set = subset(train_set, keep)
        info["heldout"] = {"source": "training split", "fraction": float(d["holdout"]), "seed": cfg["seed"],
                           "n": int(held.numel()), "n_train": int(keep.numel())}
    flipped = None
    if noise is not None:
        positions = torch.nonzero(torch.isin(keep, noise.flipped)).flatten()
        flipped = subset(train_set, positions, "data.label_noise") if positions.numel() else None
        info["label_noise"]["n_flipped_trained"] = int(positions.numel())
    return train_set, heldout, flipped, info, noise


def build_data(cfg: Mapping[str, Any], device: torch.device, info: DistInfo, *, train: bool = True) -> Data:
    """Datasets and loaders of the config (train, held-out and flipped-sample loaders only when ``train``)."""
    d = cfg["data"]
    factory = lookup(DATASETS, d["type"], "data.type")
    val_set = factory("val", root=d["root"], **d["params"])
    train_set = factory("train", root=d["root"], **d["params"]) if train else None
    ref = train_set if train_set is not None else val_set
    num_outputs = build_task(cfg).num_outputs(ref)
    common = dict(device=device, resident=d["resident"], num_workers=d["num_workers"], seed=cfg["seed"],
                  rank=info.rank, world_size=info.world_size, resize=d.get("resize"))
    eval_bs = d["val_batch_size"] or d["batch_size"]
    out = Data(None, None, num_outputs, ref.in_chans, tuple(ref.mean), tuple(ref.std))
    side = d.get("resize")
    out.input_shape = (ref.in_chans, *((side, side) if side else ref.image_size))
    if train_set is not None:
        train_set, heldout, flipped, out.info, noise = split_training(cfg, factory, train_set)
        if noise is not None:
            out.noisy_labels, out.flipped_indices = noise.labels, noise.flipped
        # every rank measures the whole extra split (no sharding): the fitted values agree across ranks
        whole = dict(common, rank=0, world_size=1)
        out.heldout = None if heldout is None else build_loader(heldout, train=False, batch_size=eval_bs, **whole)
        out.flipped = None if flipped is None else build_loader(flipped, train=False, batch_size=eval_bs, **whole)
        out.train = build_loader(train_set, train=True, batch_size=d["batch_size"], crop_padding=d["crop_padding"],
                                 hflip=d["hflip"], randaugment=d.get("randaugment"),
                                 resized_crop=ResizedCrop.from_config(d.get("random_resized_crop")), **common)
    out.val = build_loader(val_set, train=False, batch_size=eval_bs, **common)
    return out


NO_DECAY_KEYS = ("cls_token", "dist_token", "reg_token", "pos_embed", "relative_position_bias_table")


def optim_wrapper_cfg(cfg: Mapping[str, Any], policy: Any = None) -> dict:
    """mmengine optimiser-wrapper config; a learned ``policy`` with an own group gets a custom key on its
    parameter prefix (its lr and weight decay are then set every iteration by :class:`LearnedMixerHook`)."""
    s, rt = cfg["schedule"], cfg["runtime"]
    if s["optimizer"] == "sgd":
        opt = dict(type="SGD", lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"],
                   nesterov=s["nesterov"])
    else:
        opt = dict(type="AdamW", lr=s["lr"], betas=tuple(s["betas"]), weight_decay=s["weight_decay"])
    wrapper: dict[str, Any] = dict(type="OptimWrapper", optimizer=opt)
    if rt["amp"] != "off":
        wrapper.update(type="MixAmpOptimWrapper", dtype=rt["amp"])
    if s["clip_grad"]:
        wrapper["clip_grad"] = dict(max_norm=float(s["clip_grad"]))
    if s["no_decay_norm_bias"]:
        # also the ViT/Swin embeddings (DeiT / OpenMixup ViT recipes); names match as substrings
        wrapper["paramwise_cfg"] = dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                        custom_keys={k: dict(decay_mult=0.0) for k in NO_DECAY_KEYS})
    if isinstance(policy, LearnedMixer) and policy.has_own_group:
        # a custom key puts each matching parameter in a group of its own, which the hook can then address
        paramwise = wrapper.setdefault("paramwise_cfg", {})
        paramwise["custom_keys"] = {**paramwise.get("custom_keys", {}), policy.group_prefix(): dict(lr_mult=1.0)}
    return wrapper


def scheduler_cfg(cfg: Mapping[str, Any], iters_per_epoch: int) -> list[dict]:
    """Linear warmup then cosine (to ``min_lr``), multi-step or constant; updated every iteration."""
    s = cfg["schedule"]
    total = s["epochs"] * iters_per_epoch
    warm = min(int(round(s["warmup_epochs"] * iters_per_epoch)), total)
    out: list[dict] = []
    if warm > 0:
        out.append(dict(type="LinearLR", start_factor=s["warmup_start_factor"], end_factor=1.0, begin=0, end=warm,
                        by_epoch=False))
    if s["lr_schedule"] == "cosine" and total > warm:
        out.append(dict(type="CosineAnnealingLR", T_max=total - warm, eta_min=s["min_lr"], begin=warm, end=total,
                        by_epoch=False))
    elif s["lr_schedule"] == "step" and s["milestones"]:
        out.append(dict(type="MultiStepLR", milestones=[m * iters_per_epoch for m in s["milestones"]],
                        gamma=s["gamma"], begin=warm, end=total, by_epoch=False))
    if not out:
        out.append(dict(type="ConstantLR", factor=1.0, begin=0, end=max(total, 1), by_epoch=False))
    return out


def build_runner(cfg: Mapping[str, Any], run_dir: str, *, device: torch.device, info: DistInfo,
                 resume_from: str | None = None, wandb_run: Any = None, source: str = "") -> Runner:
    """The mmengine Runner of one run, writing into ``run_dir``.

    Args:
        resume_from: checkpoint to resume from, a file in ``run_dir`` (given explicitly so that mmengine does
            not follow the absolute path in ``last_checkpoint``, which is stale once the run dir has moved).
    """
    compat.apply()
    rt, s = cfg["runtime"], cfg["schedule"]
    # the model's initial weights come from the global RNG: seed it before anything is built
    set_random_seed(cfg["seed"], deterministic=bool(rt["deterministic"]))
    data = build_data(cfg, device, info)
    if info.is_main and data.flipped_indices is not None:
        write_label_noise(run_dir, data)
    task = build_task(cfg)
    model = build_classifier(cfg, num_classes=data.num_outputs, in_chans=data.in_chans, mean=data.mean,
                             std=data.std, source=source, input_shape=data.input_shape).to(device)
    if hasattr(model.policy, "attach"):  # a policy that draws partners from the training split (cmixup)
        model.policy.attach(*data.train.dataset.tensors())
    metrics = task.metrics(cfg, data.num_outputs)
    progress = rt["progress"] == "on" or (rt["progress"] == "auto" and sys_isatty())
    hooks: list[Any] = [
        EpochSeedHook(cfg["seed"], info.rank),
        MetricsHook(run_dir, rt["log_interval"], info.world_size, info.is_main, rt["tensorboard"], wandb_run),
        ProgressHook(enabled=progress and info.is_main),
    ]
    if data.heldout is not None:
        hooks += [FitOnSplitHook(data.heldout, m) for m in metrics if hasattr(m, "fit")]
    if data.flipped is not None:
        memorisation = Memorisation()
        metrics.append(memorisation)
        hooks.append(FitOnSplitHook(data.flipped, memorisation))
    if isinstance(model.policy, LearnedMixer):
        hooks.append(LearnedMixerHook())
    if rt["ema"]:
        hooks.append(dict(type="EMAHook", momentum=rt["ema_momentum"], update_buffers=True, priority="NORMAL"))
    extra_cfg: dict[str, Any] = {"compile": bool(rt["compile"])}
    if info.distributed:
        extra_cfg["model_wrapper_cfg"] = compat.ddp_wrapper_cfg(device)
    deterministic = bool(rt["deterministic"])
    runner = MixRunner(
        model=model,
        work_dir=run_dir,
        experiment_name=f"mixbench-{os.getpid()}-{next(_NAMES)}",
        train_dataloader=data.train,
        val_dataloader=data.val,
        train_cfg=dict(by_epoch=True, max_epochs=s["epochs"], val_interval=s["val_interval"]),
        val_cfg=dict(),
        val_evaluator=Evaluator(metrics),
        optim_wrapper=optim_wrapper_cfg(cfg, model.policy),
        param_scheduler=scheduler_cfg(cfg, len(data.train)),
        default_hooks=dict(
            runtime_info=dict(type="RuntimeInfoHook"),
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=rt["log_interval"], log_metric_by_epoch=True),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(type="MixCheckpointHook", interval=rt["checkpoint_interval"], by_epoch=True,
                            max_keep_ckpts=rt["max_keep_ckpts"], save_last=True),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=hooks,
        launcher="pytorch" if info.distributed else "none",
        env_cfg=dict(cudnn_benchmark=device.type == "cuda" and not deterministic,
                     mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
                     dist_cfg=dict(backend="nccl" if device.type == "cuda" else "gloo")),
        randomness=dict(seed=cfg["seed"], deterministic=deterministic),
        visualizer=dict(type="Visualizer", vis_backends=None, name=f"mixbench-vis-{os.getpid()}-{next(_NAMES)}"),
        load_from=resume_from,
        resume=resume_from is not None,
        log_level=rt["log_level"],
        cfg=dict(**extra_cfg),
    )
    compat.quiet_logger()
    runner.mixbench_data = data  # what the record says about the splits (heldout, label_noise)
    return runner


def write_label_noise(run_dir: str, data: Data) -> None:
    """``label_noise.json``: which training samples were flipped (indices into the training split) and to what."""
    flipped = data.flipped_indices
    payload = dict(data.info["label_noise"], flipped=flipped.tolist(),
                   noisy_labels=data.noisy_labels[flipped].tolist())
    atomic_write_text(os.path.join(run_dir, "label_noise.json"), json.dumps(payload))


def sys_isatty() -> bool:
    import sys

    return sys.stderr.isatty()
