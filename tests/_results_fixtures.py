"""Synthetic run records for the results tests (schema of mixbench/results/record.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mixbench.config.validate import config_hash as hash_of
from mixbench.results.record import SCHEMA_VERSION, write_record


def make_config(method="mixup", seed=0, *, dataset="digits", backbone="lenet", epochs=10, params=None,
                experiment=None, overrides=None):
    """A small resolved config (the keys a record is built from); ``overrides`` sets dotted keys."""
    cfg = {"experiment": experiment or f"{dataset}_{backbone}_{method}", "work_dir": "work_dirs", "seed": seed,
           "data": {"type": dataset, "batch_size": 32}, "model": {"backbone": {"type": backbone}},
           "schedule": {"epochs": epochs, "lr": 0.1}, "mixup": {"type": method, **(params or {})},
           "runtime": {"progress": False}}
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def make_record(method="mixup", seed=0, value=70.0, *, status="finished", dataset="digits", backbone="lenet",
                epochs=10, params=None, best=None, final=None, k=10, error=None, experiment=None,
                config_hash=None, config=None):
    """A valid record whose ``top1`` metrics are all ``value`` unless ``best``/``final`` are given.

    Values are given in percent and stored as fractions, as the evaluator writes them. The record carries
    its resolved config (``config`` sets dotted keys of :func:`make_config`) and, unless ``config_hash``
    is given, that config's real hash.
    """
    value, best, final = (None if v is None else v / 100.0 for v in (value, best, final))
    cfg = make_config(method, seed, dataset=dataset, backbone=backbone, epochs=epochs, params=params,
                      experiment=experiment, overrides=config)
    experiment = cfg["experiment"]
    config_hash = config_hash or hash_of(cfg)
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
        "config": cfg,
    }


def write_run(root, rec, curve=None):
    """Write ``rec`` as ``root/<experiment>/<hash>-s<seed>/record.json`` with the run's ``config.yaml``
    (+ a metrics.jsonl curve)."""
    run_dir = Path(root) / rec["experiment"] / f"{rec['config_hash']}-s{rec['seed']}"
    write_record(run_dir / "record.json", rec)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(rec["config"], sort_keys=False))
    if curve is not None:
        with open(run_dir / "metrics.jsonl", "w") as f:
            for epoch, v in enumerate(curve, 1):
                f.write(json.dumps({"epoch": epoch, "iter": epoch * 10, "loss": 1.0 / epoch}) + "\n")
                f.write(json.dumps({"epoch": epoch, "kind": "val", "top1": v / 100.0}) + "\n")
    return run_dir
