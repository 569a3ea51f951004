"""Typed schema of a mixbench config (docs/architecture.md, "Configs").

The fixed groups (``data``, ``schedule``, ``runtime``, ``eval``) are OmegaConf structured configs, so an
unknown key or a value of the wrong type is an error; every numeric key also has a range (``RANGES``). The
component groups (``model.backbone``, ``model.head``, ``mixup``, ``loss``) are open mappings with a ``type``
key: their options are checked against the signature of the registered component
(:func:`mixbench.registry.check_options`) and against the ranges the component declares or the option's name
fixes (:mod:`mixbench.ranges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mixbench.ranges import COUNT, NON_NEGATIVE, POSITIVE, UNIT_OPEN_TOP, Range

# Keys whose value only changes how a run is logged or stored, never what it computes: they are left out
# of the config hash so that turning wandb off does not start a new run.
NON_SEMANTIC_KEYS = (
    "experiment",
    "work_dir",
    "seed",
    "runtime.progress",
    "runtime.log_interval",
    "runtime.log_level",
    "runtime.tensorboard",
    "runtime.wandb",
    "runtime.wandb_project",
    "runtime.checkpoint_interval",
    "runtime.max_keep_ckpts",
    "runtime.launcher",
    "runtime.dist_backend",
    "data.num_workers",
)

# The task of a config that names none; left out of the config hash (configs from before tasks keep theirs).
DEFAULT_TASK = {"type": "classification"}

# Closed vocabularies of string options: key -> allowed values.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.resident": ("auto", "device", "dataloader"),
    "schedule.optimizer": ("sgd", "adamw"),
    "schedule.lr_schedule": ("cosine", "step", "constant"),
    "runtime.amp": ("off", "bf16", "fp16"),
    "runtime.progress": ("auto", "on", "off"),
    "runtime.wandb": ("auto", "offline", "online", "off"),
    "runtime.launcher": ("auto", "none", "pytorch", "slurm"),
    "runtime.dist_backend": ("auto", "gloo", "nccl"),
    "runtime.log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}



# Every numeric key of the fixed groups; ``None`` is always allowed where the schema makes a key optional.
RANGES: dict[str, Range] = {
    # numpy's and mmengine's seeding take an unsigned 32-bit seed
    "seed": Range(0, 2**32 - 1),
    "data.batch_size": COUNT,
    "data.val_batch_size": COUNT,
    "data.num_workers": NON_NEGATIVE,
    "data.crop_padding": NON_NEGATIVE,
    "data.resize": COUNT,
    # torchvision's RandAugment has 31 magnitude bins, 0..30
    "data.randaugment": Range(0, 30),
    "schedule.epochs": COUNT,
    "schedule.lr": POSITIVE,
    "schedule.momentum": UNIT_OPEN_TOP,
    "schedule.betas": UNIT_OPEN_TOP,
    "schedule.weight_decay": NON_NEGATIVE,
    "schedule.min_lr": NON_NEGATIVE,
    "schedule.milestones": COUNT,
    "schedule.gamma": Range(0, 1, lo_open=True),
    "schedule.warmup_epochs": NON_NEGATIVE,
    # torch's LinearLR needs 0 < start_factor ≤ 1
    "schedule.warmup_start_factor": Range(0, 1, lo_open=True),
    "schedule.clip_grad": POSITIVE,
    "schedule.val_interval": COUNT,
    # mmengine's EMA momentum is the weight of the new parameters, strictly between 0 and 1
    "runtime.ema_momentum": Range(0, 1, lo_open=True, hi_open=True),
    "runtime.checkpoint_interval": COUNT,
    # -1 keeps every checkpoint; mmengine does the same for 0, which reads as "keep none", so 0 is refused
    "runtime.max_keep_ckpts": Range(1, also=(-1,)),
    "runtime.log_interval": COUNT,
    "eval.topk": COUNT,
    "eval.median_last_k": COUNT,
}

@dataclass
class DataCfg:
    """Dataset and loader. ``params`` go to the registered dataset (e.g. ``size`` for digits)."""

    type: str = "digits"
    root: Optional[str] = None
    batch_size: int = 128
    val_batch_size: Optional[int] = None
    num_workers: int = 0
    resident: str = "auto"
    crop_padding: int = 0
    hflip: bool = False
    resize: Optional[int] = None  # bilinear resize (train and val) in the loader, e.g. 224 for ViTs on CIFAR
    randaugment: Optional[int] = None  # RandAugment magnitude (2 ops, train only), e.g. 7 for the CIFAR ViT recipe
    # RandomResizedCrop (train only) in place of the padded crop: {size, scale, ratio, interpolation}, e.g.
    # {size: 224} for the ImageNet recipe (scale [0.08, 1], ratio [3/4, 4/3], bicubic by default)
    random_resized_crop: Optional[Dict[str, Any]] = None
    params: Dict[str, Any] = field(default_factory=dict)
    # fraction of the training split kept apart (seeded by the run seed): temperature scaling for
    # classification, model selection for regression; the string "dataset" takes the dataset's own split
    holdout: Optional[Any] = None
    label_noise: Optional[Dict[str, Any]] = None  # {type: symmetric|pairflip|asymmetric|overlap, rate, seed}


@dataclass
class ModelCfg:
    """Classifier (``type`` in MODELS), its backbone (BACKBONES) and head (HEADS)."""

    type: str = "classifier"
    backbone: Dict[str, Any] = field(default_factory=lambda: {"type": "digits_cnn"})
    head: Dict[str, Any] = field(default_factory=lambda: {"type": "linear"})


@dataclass
class ScheduleCfg:
    """Optimiser and learning-rate schedule; epochs-based."""

    epochs: int = 10
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    no_decay_norm_bias: bool = False
    lr_schedule: str = "cosine"
    min_lr: float = 0.0
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    clip_grad: Optional[float] = None
    val_interval: int = 1


@dataclass
class RuntimeCfg:
    """Device, precision, checkpoints, logging sinks, distributed launch."""

    device: str = "auto"
    amp: str = "off"
    channels_last: bool = False
    deterministic: bool = False
    compile: bool = False
    ema: bool = False
    ema_momentum: float = 0.0002
    checkpoint_interval: int = 1
    max_keep_ckpts: int = 2
    progress: str = "auto"
    log_interval: int = 50
    log_level: str = "WARNING"
    tensorboard: bool = True
    wandb: str = "auto"
    wandb_project: str = "mixbench"
    launcher: str = "auto"
    dist_backend: str = "auto"


@dataclass
class EvalCfg:
    """Which accuracies are reported and over how many final evaluations the median is taken."""

    topk: List[int] = field(default_factory=lambda: [1, 5])
    median_last_k: int = 10


@dataclass
class TrainCfg:
    """The whole config of one run."""

    experiment: str = "default"
    work_dir: str = "work_dirs"
    seed: int = 0
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    task: Dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TASK))
    mixup: Dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    loss: Dict[str, Any] = field(default_factory=dict)  # empty: the task's default loss
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)
    runtime: RuntimeCfg = field(default_factory=RuntimeCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
