"""Throughput of the file-backed ImageNet loader: train (RandomResizedCrop 224 from the decoded file) vs val
(resize 256 → center crop 224), as images/s and a ratio within one run.

The images are random-pixel JPEGs of ImageNet's typical size (500×375, quality 90) written to a temporary
ImageNet tree (``<tmp>/{train,val}/<wnid>/*.JPEG``); both loaders read the same files with the same number of
workers. The decode dominates both; the ratio says what the crop costs on top.

Usage: ``python benchmarks/imagenet_loader_speed.py [--images 256] [--workers 0] [--out CSV]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from _table import print_table, write_csv

from mixbench.datasets import build_loader
from mixbench.datasets.augment import ResizedCrop
from mixbench.registry import DATASETS, import_components


def write_tree(root: Path, n: int, classes: int = 4) -> None:
    """``n`` JPEGs per split, 500×375 random pixels, spread over ``classes`` wnid folders."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for i in range(n):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = torch.randint(0, 256, (375, 500, 3), dtype=torch.uint8, generator=g).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)


def images_per_s(loader, repeats: int) -> float:
    """Best of ``repeats`` epochs (the fastest is the least disturbed by other work on the machine)."""
    best = 0.0
    for epoch in range(repeats):
        loader.set_epoch(epoch)
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch["inputs"].shape[0]
        best = max(best, n / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="CSV file to write")
    args = parser.parse_args(argv)
    import_components()
    torch.set_num_threads(1)  # one decode thread per process, as in a DataLoader worker
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp), args.images)
        factory = DATASETS.get("imagenet")
        common = dict(batch_size=args.batch_size, resident="dataloader", num_workers=args.workers, seed=0)
        train = build_loader(factory("train", root=tmp), train=True, hflip=True,
                             resized_crop=ResizedCrop.from_config({"size": 224}), **common)
        val = build_loader(factory("val", root=tmp), train=False, **common)
        speeds = {"train RandomResizedCrop 224 + flip": images_per_s(train, args.repeats),
                  "val resize 256 + center crop 224": images_per_s(val, args.repeats)}
    load_end = os.getloadavg()[0]
    ratio = list(speeds.values())[0] / list(speeds.values())[1]
    rows = [{"path": k, "images_per_s": f"{v:.1f}", "train_over_val": f"{ratio:.3f}"} for k, v in speeds.items()]
    header = ["path", "images_per_s", "train_over_val"]
    note = (f"# python benchmarks/imagenet_loader_speed.py {' '.join(argv if argv is not None else sys.argv[1:])};"
            f" {args.images} JPEGs 500x375 per split, batch {args.batch_size}, {args.workers} workers, 1 thread,"
            f" best of {args.repeats} epochs; {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__};"
            f" load average {load_start:.2f} at start, {load_end:.2f} at end")
    print_table(rows, header, note, width=36)
    if args.out:
        write_csv(args.out, rows, header, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
