"""Epoch time and training throughput of a config on synthetic CIFAR-shaped data (GPU speed check).

Trains CONFIG for N epochs with the data swapped for the seeded ``synthetic`` set (3×32×32, 100 classes by
default, 50,000 train images like CIFAR-100), device-resident by default, and appends one CSV row per epoch:
epoch seconds, train images/s, peak memory. Nothing is written to the results store.

    python benchmarks/epoch_speed.py configs/cifar100/r18/mixup.yaml --epochs 2 --amp bf16 --channels-last \
        --csv benchmarks/results/epoch_speed.csv

The first epoch includes warm-up (cudnn autotuning, allocator growth); compare the later ones.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from mixbench.config import load_config
from mixbench.engine.report import read_metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default="configs/cifar100/r18/mixup.yaml")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-size", type=int, default=50_000, help="synthetic training images")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--amp", default="bf16", choices=["off", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--resident", default="device", choices=["auto", "device", "dataloader"])
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers (dataloader path only)")
    p.add_argument("--csv", default="benchmarks/results/epoch_speed.csv")
    args = p.parse_args(argv)

    from mixbench.engine.run import train

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "data=synthetic_cifar100", f"+data.params.train_size={args.train_size}",
            f"data.params.num_classes={args.num_classes}", f"data.resident={args.resident}",
            f"data.num_workers={args.num_workers}", f"schedule.epochs={args.epochs}",
            f"runtime.amp={args.amp}", f"runtime.channels_last={str(args.channels_last).lower()}",
            "runtime.wandb=off", "runtime.tensorboard=false", "runtime.progress=off",
            f"runtime.checkpoint_interval={args.epochs}", f"work_dir={tmp}", *args.overrides]
        cfg, source = load_config(args.config, overrides)
        t0 = time.perf_counter()
        result = train(cfg, str(source.experiment_file), force=True)
        wall = time.perf_counter() - t0
        rows = read_metrics(os.path.join(result.run_dir, "metrics.jsonl"))
    env = result.record.get("env", {})
    out = []
    for r in rows:
        if r["kind"] != "epoch":
            continue
        out.append({"config": args.config, "method": cfg["mixup"]["type"], "backbone": cfg["model"]["backbone"]["type"],
                    "device": env.get("device"), "torch": env.get("torch"), "amp": args.amp,
                    "channels_last": args.channels_last, "compile": bool(cfg["runtime"]["compile"]),
                    "resident": args.resident,
                    "batch_size": cfg["data"]["batch_size"], "epoch": r["epoch"], "epoch_s": round(r["train_s"], 3),
                    "images_per_s": round(r["images_per_s"], 1),
                    "peak_mem_mib": round(result.record.get("memory", {}).get("peak_bytes", 0) / 2**20),
                    "status": result.status})
    for row in out:
        print(f"epoch {row['epoch']}: {row['epoch_s']:.2f} s, {row['images_per_s']:.0f} images/s "
              f"({row['device']}, amp {row['amp']}, channels_last {row['channels_last']}, {row['resident']})")
    print(f"total wall {wall:.1f} s, status {result.status}")
    if args.csv and out:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0]))
            if new:
                w.writeheader()
            w.writerows(out)
        print(f"wrote {path}")
    return 0 if result.status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
