"""Build an mmengine Runner from a validated mixbench config (docs/architecture.md).

Everything the Runner needs is built here from registry keys: datasets and loaders (interface A), the
classifier (interface C), the optimiser wrapper (SGD/AdamW, gradient clipping, AMP through
:class:`~mixbench.engine.compat.MixAmpOptimWrapper`), warmup + cosine/step schedules, checkpoints
(interval + last, written crash-safe by :class:`~mixbench.engine.compat.MixCheckpointHook`), EMA, and the
mixbench hooks.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from mmengine.evaluator import Evaluator
from mmengine.runner import Runner, set_random_seed

from mixbench.datasets.loaders import build_loader
from mixbench.engine import compat
from mixbench.engine.dist import DistInfo
from mixbench.engine.hooks import EpochSeedHook, MetricsHook, ProgressHook
from mixbench.evaluation.accuracy import Accuracy
from mixbench.models.classifier import build_classifier
from mixbench.registry import DATASETS, lookup

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
    train: Any
    val: Any
    num_classes: int
    in_chans: int
    mean: tuple
    std: tuple


def build_data(cfg: Mapping[str, Any], device: torch.device, info: DistInfo, *, train: bool = True) -> Data:
    """Datasets and loaders of the config (train loader only when ``train``)."""
    d = cfg["data"]
    factory = lookup(DATASETS, d["type"], "data.type")
    val_set = factory("val", root=d["root"], **d["params"])
    train_set = factory("train", root=d["root"], **d["params"]) if train else None
    ref = train_set if train_set is not None else val_set
    common = dict(device=device, resident=d["resident"], num_workers=d["num_workers"], seed=cfg["seed"],
                  rank=info.rank, world_size=info.world_size, resize=d.get("resize"))
    train_loader = None
    if train_set is not None:
        train_loader = build_loader(train_set, train=True, batch_size=d["batch_size"], crop_padding=d["crop_padding"],
                                    hflip=d["hflip"], randaugment=d.get("randaugment"), **common)
    val_loader = build_loader(val_set, train=False, batch_size=d["val_batch_size"] or d["batch_size"], **common)
    return Data(train_loader, val_loader, ref.num_classes, ref.in_chans, tuple(ref.mean), tuple(ref.std))


NO_DECAY_KEYS = ("cls_token", "dist_token", "reg_token", "pos_embed", "relative_position_bias_table")


def optim_wrapper_cfg(cfg: Mapping[str, Any]) -> dict:
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
    model = build_classifier(cfg, num_classes=data.num_classes, in_chans=data.in_chans, mean=data.mean,
                             std=data.std, source=source).to(device)
    progress = rt["progress"] == "on" or (rt["progress"] == "auto" and sys_isatty())
    hooks: list[Any] = [
        EpochSeedHook(cfg["seed"], info.rank),
        MetricsHook(run_dir, rt["log_interval"], info.world_size, info.is_main, rt["tensorboard"], wandb_run),
        ProgressHook(enabled=progress and info.is_main),
    ]
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
        val_evaluator=Evaluator([Accuracy(topk=cfg["eval"]["topk"], num_classes=data.num_classes)]),
        optim_wrapper=optim_wrapper_cfg(cfg),
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
    return runner


def sys_isatty() -> bool:
    import sys

    return sys.stderr.isatty()
