"""Synthetic run records for the results tests (schema of mixbench/results/record.py)."""

from __future__ import annotations

import json
from pathlib import Path

from mixbench.results.record import SCHEMA_VERSION, write_record


def make_record(method="mixup", seed=0, value=70.0, *, status="finished", dataset="digits", backbone="lenet",
                epochs=10, params=None, best=None, final=None, k=10, error=None, experiment=None,
                config_hash=None):
    """A valid record whose ``top1`` metrics are all ``value`` unless ``best``/``final`` are given.

    Values are given in percent and stored as fractions, as the evaluator writes them.
    """
    value, best, final = (None if v is None else v / 100.0 for v in (value, best, final))
    experiment = experiment or f"{dataset}_{backbone}_{method}"
    config_hash = config_hash or f"h{abs(hash((method, dataset, backbone, epochs, str(params)))) % 10**8:08d}"
    return {
        "schema": SCHEMA_VERSION,
        "run_id": f"{experiment}/{config_hash}-s{seed}",
        "status": status,
        "experiment": experiment,
        "config_hash": config_hash,
        "method": method,
        "method_params": dict(params or {}),
        "backbone": backbone,
        "dataset": dataset,
        "epochs": epochs,
        "seed": seed,
        "metrics": {"top1": {"final": value if final is None else final, "best": value if best is None else best,
                             "median_last_k": value, "k": k}},
        "time": {"wall_s": 12.5, "train_images_per_s": 1000.0},
        "memory": {"peak_bytes": 1 << 20},
        "env": {"mixbench": "0.1.0", "torch": "2.x", "device": "cpu", "world_size": 1},
        "started": "2025-01-01T00:00:00",
        "finished": None if status == "running" else "2025-01-01T00:10:00",
        "error": error if error is not None else ("RuntimeError: boom\ntraceback..." if status == "failed" else None),
    }


def write_run(root, rec, curve=None):
    """Write ``rec`` as ``root/<experiment>/<hash>-s<seed>/record.json`` (+ a metrics.jsonl curve)."""
    run_dir = Path(root) / rec["experiment"] / f"{rec['config_hash']}-s{rec['seed']}"
    write_record(run_dir / "record.json", rec)
    if curve is not None:
        with open(run_dir / "metrics.jsonl", "w") as f:
            for epoch, v in enumerate(curve, 1):
                f.write(json.dumps({"epoch": epoch, "iter": epoch * 10, "loss": 1.0 / epoch}) + "\n")
                f.write(json.dumps({"epoch": epoch, "kind": "val", "top1": v / 100.0}) + "\n")
    return run_dir
