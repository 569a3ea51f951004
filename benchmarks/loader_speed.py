"""Throughput of the two loader paths on CIFAR-shaped synthetic data (images/s, one epoch each).

Usage: ``python benchmarks/loader_speed.py [--device cuda] [--train-size 50000] [--workers 2]``. Prints one
line per path; on CUDA the timing includes a final synchronisation so queued device work is counted.
"""

from __future__ import annotations

import argparse
import time

import torch

from mixbench.datasets import build_loader
from mixbench.datasets.synthetic import synthetic


def time_epoch(loader, device: torch.device) -> float:
    loader.set_epoch(0)
    start = time.perf_counter()
    n = 0
    for batch in loader:
        x = batch["inputs"].to(device, non_blocking=True)
        n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-size", type=int, default=50000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    ds = synthetic("train", num_classes=100, image_size=32, in_chans=3, train_size=args.train_size)
    common = dict(train=True, batch_size=args.batch_size, device=device, crop_padding=4, hflip=True, seed=0)
    for path, workers in (("device", 0), ("dataloader", args.workers)):
        loader = build_loader(ds, resident=path, num_workers=workers, **common)
        time_epoch(loader, device)  # warm-up: workers start, device copy, kernels load
        rate = time_epoch(loader, device)
        print(f"{path:10s} workers={workers} device={device} n={len(ds)} batch={args.batch_size}: "
              f"{rate:,.0f} images/s")


if __name__ == "__main__":
    main()
