"""Config checks that depend on the task: its default loss, and which losses, policies and data options fit it.

Each failure is a one-line :class:`ConfigError` naming the key and what was expected, raised during
validation, before a run dir exists.
"""

from __future__ import annotations

from typing import Any, Mapping

from mixbench.config.compose import ConfigSource
from mixbench.errors import ConfigError
from mixbench.registry import LOSSES, MIXUPS, TASKS, build, lookup


def build_task(cfg: Mapping[str, Any], source: ConfigSource | None = None) -> Any:
    """The :class:`~mixbench.tasks.base.Task` of a config (``task`` group)."""
    file = source.file_for("task") if source is not None else ""
    return build(TASKS, cfg["task"], "task", str(file) if file else "")


def fill_task_defaults(cfg: dict, source: ConfigSource) -> None:
    """Give a config without a loss its task's default loss (classification: ``soft_ce``, as before tasks)."""
    task = build_task(cfg, source)
    if not cfg["loss"]:
        cfg["loss"] = {"type": task.default_loss}


def _fits(registry: Any, kind: str, where: str, obj: Any, type_name: str, task: Any, file: Any) -> None:
    from mixbench.tasks.base import supports

    if supports(obj, task.name):
        return
    fitting = sorted(k for k, v in registry.module_dict.items() if supports(v, task.name))
    declared = "/".join(getattr(obj, "tasks", ("classification",)))
    raise ConfigError(f"{where}.type: '{type_name}' is a {declared} {kind}, but task '{task.name}' has "
                      f"{_label_kind(task)} labels (in {file}); expected one of {', '.join(fitting)}")


def _label_kind(task: Any) -> str:
    return "float" if task.label_dtype.is_floating_point else "class-index"


def check_task(cfg: Mapping[str, Any], source: ConfigSource) -> None:
    """The loss and the policy support the task; ``data.holdout`` and ``data.label_noise`` are well formed."""
    task = build_task(cfg, source)
    loss_type = cfg["loss"]["type"]
    _fits(LOSSES, "loss", "loss", lookup(LOSSES, loss_type, "loss.type"), loss_type, task,
          source.file_for("loss.type"))
    policy = build(MIXUPS, cfg["mixup"], "mixup", str(source.file_for("mixup")))
    _fits(MIXUPS, "policy", "mixup", policy, cfg["mixup"]["type"], task, source.file_for("mixup.type"))
    check_learned_mixer(cfg, policy, source)
    holdout = cfg["data"]["holdout"]
    if holdout is not None and holdout != "dataset" and not (
            isinstance(holdout, (int, float)) and not isinstance(holdout, bool) and 0 < holdout < 1):
        raise ConfigError(f"data.holdout={holdout!r}: expected null, 'dataset' or a fraction in (0, 1) "
                          f"(in {source.file_for('data.holdout')})")
    noise = cfg["data"]["label_noise"]
    if noise is not None:
        from mixbench.datasets.noise import check_noise

        if task.label_dtype.is_floating_point:
            raise ConfigError(f"data.label_noise: flips class labels; task '{task.name}' has float labels "
                              f"(in {source.file_for('data.label_noise')})")
        try:
            check_noise(noise)
        except ValueError as exc:
            key = str(exc).split(":", 1)[0]
            raise ConfigError(f"data.label_noise.{exc} (in {source.file_for(f'data.label_noise.{key}')})") from None


def check_learned_mixer(cfg: Mapping[str, Any], policy: Any, source: ConfigSource) -> None:
    """A learned mixer reads the features of a backbone stage: the backbone must have the mix points it uses;
    and its group's SGD momentum needs the SGD optimiser.

    The backbone is built once here (on the CPU, with 3 input channels: the mix points do not depend on them).
    """
    from mixbench.mixups.learned.base import LearnedMixer
    from mixbench.registry import BACKBONES

    if not isinstance(policy, LearnedMixer):
        return
    if policy.group_momentum is not None and cfg["schedule"]["optimizer"] != "sgd":
        raise ConfigError(f"mixup.group_momentum: an SGD momentum, needs schedule.optimizer=sgd "
                          f"(got {cfg['schedule']['optimizer']}; in {source.file_for('mixup.group_momentum')})")
    backbone = build(BACKBONES, cfg["model"]["backbone"], "model.backbone",
                     str(source.file_for("model.backbone")), in_chans=3)
    points = backbone.mix_points() if callable(getattr(backbone, "mix_points", None)) else []
    try:
        policy.check_mix_points(len(points))
    except ValueError as exc:
        raise ConfigError(f"mixup.{exc} with model.backbone.type '{cfg['model']['backbone']['type']}' "
                          f"(in {source.file_for('mixup')})") from None
