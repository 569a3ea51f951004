"""``mixbench visualize --reliability RUN_DIR|CONFIG [--checkpoint PATH] [--out FILE.png]``: the reliability
diagram of a trained classifier on its validation split.

A run dir gives everything: its ``config.yaml``, its last checkpoint and, when the run held out part of its
training split, the temperature fitted at the end of training (the record's ``fitted``), so the scaled model's
bins are drawn beside the raw ones. A config file needs ``--checkpoint`` and draws the raw model only. The
evaluation is :func:`mixbench.cli.test.evaluate_checkpoint`, the one ``mixbench test`` runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixbench.cli.test import draw_reliability_of, evaluate_checkpoint
from mixbench.errors import ConfigError


def _last_checkpoint(run_dir: Path) -> str:
    pointer = run_dir / "last_checkpoint"
    if not pointer.is_file():
        raise ConfigError(f"--reliability: run dir '{run_dir}' has no checkpoint (no last_checkpoint file)")
    path = Path(pointer.read_text().strip())
    path = path if path.is_absolute() else run_dir / path
    if not path.is_file():  # a run dir moved since training: the pointer names the old place
        path = run_dir / path.name
    return str(path)


def _final_temperature(run_dir: Path) -> float | None:
    """The temperature the run fitted at its last validation (``None``: no record or no held-out split)."""
    from mixbench.results.record import read_record

    if not (run_dir / "record.json").is_file():
        return None
    fitted = read_record(run_dir / "record.json").get("fitted") or {}
    value = (fitted.get("temperature") or {}).get("final")
    return None if value is None else float(value)


def reliability(target: str, checkpoint: str | None = None, out: str | None = None) -> str:
    """Draw the reliability diagram of ``target`` (a run dir, or a config with ``checkpoint``); returns the PNG
    path (default: ``reliability.png`` in the run dir, else next to the checkpoint)."""
    path = Path(target)
    temperature = None
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"--reliability: '{target}' is not a run dir (no config.yaml)")
        config = str(path / "config.yaml")
        if checkpoint is None:
            checkpoint = _last_checkpoint(path)
            temperature = _final_temperature(path)  # fitted for the last checkpoint's weights
    elif path.is_file():
        config = target
        if checkpoint is None:
            raise ConfigError(f"--reliability {target}: a config needs --checkpoint (or give the run dir)")
    else:
        raise ConfigError(f"--reliability: '{target}' is neither a run dir nor a config file")
    cfg, _, metric_objs, images = evaluate_checkpoint(config, [], checkpoint, temperature)
    out = out or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "reliability.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    title = f"{cfg['mixup']['type']} on {cfg['data']['type']} ({images} images)"
    if not draw_reliability_of(metric_objs, out, title):
        raise ConfigError(f"--reliability: task '{cfg['task']['type']}' reports no calibration to draw "
                          "(reliability diagrams are for classifiers)")
    return out
