"""Time every model-free mixup policy on one batch, next to the same op in timm, torchvision v2 and mmpretrain,
and next to a plain clone of the batch (the memory-traffic floor), all in one process.

    python benchmarks/mix_speed.py [--device cpu|cuda] [--batch 128] [--size 224] [--reps 7] [--threads 1] [--out FILE.csv]

Each policy is timed twice: ``mixbench`` is a direct call (the caller's batch is left as it is, a new batch is
returned) and ``mixbench_owned`` the training call, on a batch the policy owns (``MixContext.owned``: mask
policies may write into it, as the in-place references do).

Per row: the op, the implementation, the median time in ms over ``--reps`` rounds (after one warm-up round;
each round runs every row once, so load changes on a shared machine hit all rows alike), the ratio to the
fastest peer implementation of the same op (mixbench rows only) and the ratio to the clone, each the median
over rounds of the ratio measured within the round.
Reference implementations that mix in place, and the owned rows, get a fresh clone before each timed call
(not timed), as training hands the policy a freshly normalised batch. On CUDA
every mixbench call runs under ``torch.cuda.set_sync_debug_mode("error")``, so a host synchronisation inside a
policy aborts the benchmark.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch
from _table import print_table, write_csv

from mixbench.mixups.base import MixContext
from mixbench.registry import MIXUPS, build

# (op, policy config): the ops timed for mixbench, each with its default-ish options.
POLICIES = [
    ("mixup", {"type": "mixup", "alpha": 1.0}),
    ("cutmix", {"type": "cutmix", "alpha": 1.0}),
    ("mixup_cutmix_batch", {"type": "timm_mix", "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "batch"}),
    ("mixup_cutmix_elem", {"type": "timm_mix", "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "elem"}),
    ("manifoldmix_input", {"type": "manifoldmix", "layers": [0]}),
    ("fmix", {"type": "fmix", "alpha": 1.0}),
    ("gridmix", {"type": "gridmix", "alpha": 1.0}),
    ("smoothmix", {"type": "smoothmix"}),
    ("resizemix", {"type": "resizemix", "interpolation": "bilinear"}),
    ("saliencymix", {"type": "saliencymix", "alpha": 1.0}),
    ("maskmix", {"type": "maskmix", "mask_patch_size": 56}),
    ("switch", {"type": "switch", "policies": [{"type": "mixup", "alpha": 0.8}, {"type": "cutmix"}]}),
]


def peers(num_classes: int) -> list[tuple[str, str, Callable, bool]]:
    """(op, name, fn(x, y), mutates_input) for the reference implementations that are installed."""
    out = []
    try:
        from timm.data import Mixup
        for op, kw in (("mixup", dict(mixup_alpha=1.0)), ("cutmix", dict(mixup_alpha=0.0, cutmix_alpha=1.0)),
                       ("mixup_cutmix_batch", dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="batch")),
                       ("mixup_cutmix_elem", dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem"))):
            m = Mixup(num_classes=num_classes, label_smoothing=0.0, **kw)
            out.append((op, "timm", m, True))
    except ImportError:
        pass
    try:
        from torchvision.transforms import v2
        out.append(("mixup", "torchvision", v2.MixUp(alpha=1.0, num_classes=num_classes), False))
        out.append(("cutmix", "torchvision", v2.CutMix(alpha=1.0, num_classes=num_classes), False))
    except ImportError:
        pass
    try:
        from mmpretrain.models.utils.batch_augments import CutMix, ResizeMix
        from mmpretrain.models.utils.batch_augments import Mixup as MMMixup
        oh = lambda f: (lambda x, y: f(x, torch.nn.functional.one_hot(y, num_classes).float()))  # noqa: E731
        out.append(("mixup", "mmpretrain", oh(MMMixup(alpha=1.0)), True))
        out.append(("cutmix", "mmpretrain", oh(CutMix(alpha=1.0)), True))
        out.append(("resizemix", "mmpretrain", oh(ResizeMix(alpha=1.0)), True))
    except ImportError:
        pass
    return out


def once(fn: Callable[[], object], device: torch.device, setup: Callable[[], None] | None = None) -> float:
    """Seconds of one call of ``fn`` (``setup`` runs first, untimed)."""
    if setup is not None:
        setup()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def policy_call(policy, x: Callable[[], torch.Tensor], y: torch.Tensor, num_classes: int, ctx: MixContext,
                device: torch.device) -> Callable[[], object]:
    """One policy call on the batch ``x()``; on CUDA under ``set_sync_debug_mode("error")`` so a host
    synchronisation raises."""
    def call():
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            return policy(x(), y, num_classes, ctx)
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    return call


def run(device: torch.device, batch: int, size: int, reps: int, num_classes: int = 1000) -> list[dict]:
    """Time every row round-robin: each of the ``reps`` rounds calls every implementation once, so load
    changes on a shared machine hit all rows alike. Ratios are medians over rounds of the same-round ratio."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((batch, 3, size, size), generator=g, device=device)
    y = torch.randint(0, num_classes, (batch,), generator=g, device=device)
    ctx, owned = MixContext(generator=g), MixContext(generator=g, owned=True)
    buf = {}

    def fresh() -> None:
        buf["x"] = x.clone()

    jobs = [("clone", "torch", lambda: x.clone(), None)]
    for op, cfg in POLICIES:
        policy = build(MIXUPS, cfg, "mixup")
        jobs.append((op, "mixbench", policy_call(policy, lambda: x, y, num_classes, ctx, device), None))
        jobs.append((op, "mixbench_owned", policy_call(policy, lambda: buf["x"], y, num_classes, owned, device), fresh))
    np.random.seed(0)
    for op, name, fn, mutates in peers(num_classes):
        def setup(mutates=mutates):
            buf["x"] = x.clone() if mutates else x
        jobs.append((op, name, lambda fn=fn: fn(buf["x"], y), setup))
    times = [[] for _ in jobs]
    for r in range(reps + 1):  # round 0 warms up
        for k, (_, _, fn, setup) in enumerate(jobs):
            t = once(fn, device, setup)
            if r:
                times[k].append(t)
    rows = []
    for (op, impl, _, _), ts in zip(jobs, times):
        rows.append({"op": op, "impl": impl, "ms": statistics.median(ts) * 1e3, "_t": ts})
    clone_t = rows[0]["_t"]
    paired = lambda a, b: round(statistics.median(p / q for p, q in zip(a, b)), 3)  # noqa: E731
    for r in rows:
        ours = r["impl"].startswith("mixbench")
        ref = [p for p in rows if p["op"] == r["op"] and not p["impl"].startswith("mixbench") and p["impl"] != "torch"]
        fastest = min(ref, key=lambda p: p["ms"]) if ref else None
        r["peer"] = fastest["impl"] if fastest and ours else ""
        r["vs_fastest_peer"] = paired(r["_t"], fastest["_t"]) if fastest and ours else ""
        r["vs_clone"] = paired(r["_t"], clone_t)
        r["ms"] = round(r["ms"], 2)
        del r["_t"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: on a shared machine multi-threaded timings are dominated by "
                        "threads waiting for each other)")
    p.add_argument("--out", help="CSV file to write")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_start = os.getloadavg()[0]
    rows = run(device, args.batch, args.size, args.reps)
    load_end = os.getloadavg()[0]
    header = ["op", "impl", "ms", "peer", "vs_fastest_peer", "vs_clone"]
    note = (f"# {args.batch}x3x{args.size}x{args.size} float32 on {device.type}"
            f" ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}),"
            f" torch {torch.__version__}, median of {args.reps} interleaved rounds,"
            f" load average {load_start:.2f} at start, {load_end:.2f} at end")
    print_table(rows, header, note)
    if args.out:
        write_csv(args.out, rows, header, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
