"""``mixbench test CONFIG --checkpoint PATH [key=value ...] [--out FILE]`` — evaluate a checkpoint.

Builds the model of CONFIG (with the same overrides as the training run; CONFIG may also be the run dir's own
``config.yaml``), loads the weights of PATH (a mixbench checkpoint or a plain state dict, with
``torch.load(weights_only=True)``: a file is never run), evaluates on the validation split and prints the task's
metrics; they are also written as JSON to ``--out`` (default: ``test_metrics.json`` next to the checkpoint). A
classification checkpoint also gets its reliability diagram, ``reliability.png`` next to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
from typing import Sequence

import torch

from mixbench.config import check_data, load_config
from mixbench.errors import ConfigError


def _refused_global(exc: Exception) -> str | None:
    """The global a weights-only load refused (``GLOBAL os.system``, ``got <class ...>``), from torch's message."""
    m = re.search(r"GLOBAL (\S+)|got <class '([^']+)'>", str(exc))
    return (m.group(1) or m.group(2)) if m and isinstance(exc, pickle.UnpicklingError) else None


def checkpoint_state(path: str) -> dict:
    """The model weights of a checkpoint file: ``state_dict`` of an mmengine checkpoint (its EMA weights when
    it has them) or a bare state dict, without the ``module.`` prefix of a DDP wrapper.

    The file is loaded with ``torch.load(weights_only=True)`` (:func:`mixbench.engine.compat.load_checkpoint`):
    a file that would run code, or build anything but tensors, containers and mixbench's own checkpoint
    objects, is refused before any of it is built.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"--checkpoint: file '{path}' not found")
    from mixbench.engine.compat import load_checkpoint

    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except Exception as exc:  # torch.load raises many types for a truncated or foreign file
        refused = _refused_global(exc)
        if refused:
            raise ConfigError(f"--checkpoint: '{path}' refused: it names {refused}, which a weights-only load "
                              "does not build (checkpoints are never fully unpickled: that could run code from "
                              "the file)") from exc
        raise ConfigError(f"--checkpoint: '{path}' is not a readable checkpoint ({type(exc).__name__})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--checkpoint: '{path}' holds no state dict (expected a mixbench checkpoint)")
    ema = {k[len("ema_model.module."):]: v for k, v in state.items() if k.startswith("ema_model.module.")}
    if ema:
        state = ema
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()
            if not k.startswith("ema_model.")}


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_weights(model: torch.nn.Module, path: str, hint: str = "") -> None:
    """Load the weights of ``path`` (see :func:`checkpoint_state`) into ``model``.

    Raises:
        ConfigError: one line naming the file and the first few keys whose shape differs from the model's,
            that the model lacks or that the file lacks (a checkpoint of another architecture or class count);
            ``hint`` is appended to it.
    """
    state, own = checkpoint_state(path), model.state_dict()
    # the preprocessor's mean/std buffers come from the config's dataset; a bare state dict may omit them
    missing = [k for k in own if k not in state and not k.startswith("data_preprocessor.")]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}" for k, v in own.items()
                  if isinstance(state.get(k), torch.Tensor) and state[k].shape != v.shape]
    problems = [f"{what} {len(keys)} keys: {_first(keys)}" for what, keys in
                (("shape differs for", mismatched), ("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise ConfigError(f"--checkpoint: '{path}' does not fit the model of this config "
                          f"({model_summary(model)}): {'; '.join(problems)}{hint}")
    model.load_state_dict(state, strict=False)


def model_summary(model: torch.nn.Module) -> str:
    """``<N> parameter tensors, <M> parameters``: what the config's model expects, for error messages."""
    params = list(model.parameters())
    return f"{len(params)} parameter tensors, {sum(p.numel() for p in params):,} parameters"


def evaluate_checkpoint(config: str, overrides: Sequence[str], checkpoint: str,
                        temperature: float | None = None) -> tuple[dict, dict, list, int]:
    """Evaluate the weights of ``checkpoint`` with the model and validation split of ``config``.

    Args:
        config / overrides: the experiment file (or a run dir's ``config.yaml``) and its overrides.
        checkpoint: weights file (:func:`load_weights`).
        temperature: a temperature fitted when the run trained (its record's ``fitted``), given to the
            calibration metrics so that they also report and draw the scaled model.

    Returns:
        ``(cfg, metrics, metric objects, number of images)``; the metric objects keep their outputs (a
        classifier's calibration metric draws its reliability diagram from them).
    """
    cfg, source = load_config(config, overrides)
    check_data(cfg, source, train=False)

    from mixbench.config.task import build_task
    from mixbench.engine import compat
    from mixbench.engine.builder import build_data
    from mixbench.engine.dist import DistInfo, select_device
    from mixbench.evaluation.accuracy import evaluate
    from mixbench.models.classifier import build_classifier

    compat.apply()
    device = select_device(cfg["runtime"]["device"], DistInfo())
    data = build_data(cfg, device, DistInfo(), train=False)
    model = build_classifier(cfg, num_classes=data.num_outputs, in_chans=data.in_chans, mean=data.mean,
                             std=data.std, source=str(source.experiment_file), input_shape=data.input_shape)
    load_weights(model, checkpoint)
    model.to(device)
    metric_objs = build_task(cfg).metrics(cfg, data.num_outputs)
    for m in metric_objs:
        if temperature is not None and hasattr(m, "temperature"):
            m.temperature = temperature
    return cfg, evaluate(model, data.val, metric_objs), metric_objs, len(data.val.dataset)


def draw_reliability_of(metric_objs: list, path: str, title: str) -> bool:
    """Draw the reliability diagram of the evaluated metric that draws one; ``False`` when none does (a
    regression task)."""
    drawn = False
    for m in metric_objs:
        if hasattr(m, "draw"):
            m.draw(path, title)
            drawn = True
    return drawn


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="mixbench test", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="experiment file the checkpoint was trained with, or its run dir's config.yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pth)")
    p.add_argument("--out", default=None, help="JSON file for the metrics")
    args = p.parse_intermixed_args(list(argv))
    cfg, metrics, metric_objs, images = evaluate_checkpoint(args.config, args.overrides, args.checkpoint)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "test_metrics.json")
    payload = {"checkpoint": os.path.abspath(args.checkpoint), "dataset": cfg["data"]["type"], "split": "val",
               "images": images, "metrics": metrics}
    from mixbench.results.record import atomic_write_text

    atomic_write_text(out, json.dumps(payload, indent=2))
    draw_reliability_of(metric_objs, os.path.join(os.path.dirname(os.path.abspath(out)), "reliability.png"),
                        f"{cfg['mixup']['type']} on {cfg['data']['type']}")
    print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({payload['images']} images)  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
