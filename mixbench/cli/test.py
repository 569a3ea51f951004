"""``mixbench test CONFIG --checkpoint PATH [key=value ...] [--out FILE]`` — evaluate a checkpoint.

Builds the model of CONFIG (with the same overrides as the training run), loads the weights of PATH (a
mixbench checkpoint or a plain state dict), evaluates on the validation split and prints the task's metrics; they
are also written as JSON to ``--out`` (default: ``test_metrics.json`` next to the checkpoint). A classification
checkpoint also gets its reliability diagram, ``reliability.png`` next to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import torch

from mixbench.config import load_config
from mixbench.errors import ConfigError


def checkpoint_state(path: str) -> dict:
    """The model weights of a checkpoint file: ``state_dict`` of an mmengine checkpoint (its EMA weights when
    it has them) or a bare state dict, without the ``module.`` prefix of a DDP wrapper."""
    if not os.path.isfile(path):
        raise ConfigError(f"--checkpoint: file '{path}' not found")
    from mixbench.engine.compat import load_trusted_checkpoint

    try:
        ckpt = load_trusted_checkpoint(path, map_location="cpu")
    except Exception as exc:  # torch.load raises many types for a truncated or foreign file
        raise ConfigError(f"--checkpoint: '{path}' is not a readable checkpoint ({type(exc).__name__})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--checkpoint: '{path}' holds no state dict (expected a mixbench checkpoint)")
    ema = {k[len("ema_model.module."):]: v for k, v in state.items() if k.startswith("ema_model.module.")}
    if ema:
        state = ema
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()
            if not k.startswith("ema_model.")}


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load the weights of ``path`` (see :func:`checkpoint_state`) into ``model``."""
    missing, unexpected = model.load_state_dict(checkpoint_state(path), strict=False)
    if missing:
        raise ConfigError(f"--checkpoint: '{path}' does not fit this config (missing {missing[0]}, ...)")


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="mixbench test", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="experiment file the checkpoint was trained with")
    p.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pth)")
    p.add_argument("--out", default=None, help="JSON file for the metrics")
    args = p.parse_intermixed_args(list(argv))
    cfg, source = load_config(args.config, args.overrides)

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
                             std=data.std, source=str(source.experiment_file))
    load_weights(model, args.checkpoint)
    model.to(device)
    metric_objs = build_task(cfg).metrics(cfg, data.num_outputs)
    metrics = evaluate(model, data.val, metric_objs)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "test_metrics.json")
    payload = {"checkpoint": os.path.abspath(args.checkpoint), "dataset": cfg["data"]["type"], "split": "val",
               "images": len(data.val.dataset), "metrics": metrics}
    from mixbench.results.record import atomic_write_text

    atomic_write_text(out, json.dumps(payload, indent=2))
    for m in metric_objs:
        if hasattr(m, "draw"):  # the reliability diagram of a classifier
            m.draw(os.path.join(os.path.dirname(os.path.abspath(out)), "reliability.png"),
                   f"{cfg['mixup']['type']} on {cfg['data']['type']}")
    print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({payload['images']} images)  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
