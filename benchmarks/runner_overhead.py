"""Overhead of mixbench's runner over a bare PyTorch loop that does the same training, in one process.

Both sides start from the same validated config and build the same loaders (``build_data``), classifier and
policy (``build_classifier``), optimiser wrapper and per-iteration LR schedule (``optim_wrapper_cfg``,
``scheduler_cfg``), seed the same way (``set_random_seed``, then ``epoch_seed`` for the global RNG and the
mixing generator at every epoch), run the same step (``MixClassifier.train_step``) and validate after every
epoch (``evaluate``: the record needs a validation row per epoch). The bare loop has no run dir, Runner,
hooks, checkpoints, metric sinks or record. Both report the last top-1, which must agree.

    python benchmarks/runner_overhead.py [CONFIG] [--epochs 10] [--repeats 5] [--out FILE.csv]

Each repeat runs the bare loop, then every mixbench variant, then the bare loop again; a variant's ratio is
its wall time over the mean of the two bare runs around it, and the table gives the median over repeats, so
load changes on a shared machine hit both sides alike. The variants switch runner features off one at a
time (the defaults, then without wandb, without TensorBoard, with one checkpoint at the end) to show where
the time goes; ``--profile`` also prints the functions a default run spends most of its time in.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import os
import pstats
import statistics
import sys
import tempfile
import time
from typing import Any, Mapping

import torch

from mixbench.config import load_config
from mixbench.engine import compat, dist
from mixbench.engine.hooks import epoch_seed

# (name, overrides on top of the config): each variant also keeps the overrides of the one before it
VARIANTS = [
    ("mixbench", []),
    ("no wandb", ["runtime.wandb=off"]),
    ("no wandb, no tb", ["runtime.tensorboard=false"]),
    ("+ checkpoint at end only", ["runtime.checkpoint_interval={epochs}"]),
]


def bare_loop(cfg: Mapping[str, Any]) -> float:
    """Train and validate like the runner, with nothing else; returns the last validation top-1."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    from mmengine.runner import set_random_seed

    from mixbench.engine.builder import build_data, optim_wrapper_cfg, scheduler_cfg
    from mixbench.evaluation.accuracy import Accuracy, evaluate
    from mixbench.models.classifier import build_classifier

    compat.apply()
    rt, seed = cfg["runtime"], cfg["seed"]
    info = dist.detect(rt["launcher"])
    device = dist.select_device(rt["device"], info)
    set_random_seed(seed, deterministic=bool(rt["deterministic"]))
    data = build_data(cfg, device, info)
    model = build_classifier(cfg, num_classes=data.num_classes, in_chans=data.in_chans, mean=data.mean,
                             std=data.std).to(device)
    optim = build_optim_wrapper(model, optim_wrapper_cfg(cfg))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim)) for s in scheduler_cfg(cfg, len(data.train))]
    metric = Accuracy(topk=cfg["eval"]["topk"], num_classes=data.num_classes)
    epochs, step = cfg["schedule"]["epochs"], 0
    total = epochs * len(data.train)
    metrics: dict[str, float] = {}
    for epoch in range(epochs):
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch)
        torch.manual_seed(epoch_seed(seed, epoch, 0, 0))
        model.reseed(epoch_seed(seed, epoch, 0, 1), device)
        model.train()
        for batch in data.train:
            model.progress = {"epoch": epoch, "iter": step, "progress": step / max(total, 1)}
            model.train_step(batch, optim)
            for s in schedulers:
                s.step()
            step += 1
        metrics = evaluate(model, data.val, metric)
    return metrics["top1"]


def mixbench_run(cfg: Mapping[str, Any], source: str, profile: bool = False) -> float:
    """``mixbench.engine.run.train`` into a temporary work dir; returns the last validation top-1."""
    from mixbench.engine.run import train

    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    result = train(cfg, source, force=True)
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
    if result.status != "finished":
        raise RuntimeError(f"the mixbench run did not finish: {result.record.get('error')}")
    return result.record["metrics"]["top1"]["final"]


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default="configs/digits/mixup.yaml")
    p.add_argument("overrides", nargs="*", help="extra overrides for both sides")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    p.add_argument("--profile", action="store_true", help="profile one default mixbench run first")
    p.add_argument("--out", help="CSV file to write")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"schedule.epochs={args.epochs}", "runtime.progress=off", f"work_dir={tmp}", *args.overrides]
        cfgs, extra = [], []
        for name, over in VARIANTS:
            extra += [o.format(epochs=args.epochs) for o in over]
            cfg, source = load_config(args.config, base + extra)
            cfgs.append((name, cfg, str(source.experiment_file)))
        bare_cfg = cfgs[0][1]
        if args.profile:
            mixbench_run(cfgs[0][1], cfgs[0][2], profile=True)
        times: dict[str, list[float]] = {name: [] for name, _, _ in cfgs}
        bare_times, top1 = [], {}
        for _ in range(args.repeats):
            before, top1["bare loop"] = timed(bare_loop, bare_cfg)
            runs = [(name, *timed(mixbench_run, cfg, source)) for name, cfg, source in cfgs]
            after, _ = timed(bare_loop, bare_cfg)
            bare_times += [before, after]
            for name, seconds, acc in runs:
                times[name].append(seconds / ((before + after) / 2))
                top1[name] = acc
    load_end = os.getloadavg()[0]
    rows = [{"variant": "bare loop", "s": round(statistics.median(bare_times), 2), "ratio": 1.0,
             "top1": top1["bare loop"]}]
    for name, ratios in times.items():
        rows.append({"variant": name, "s": round(statistics.median(bare_times) * statistics.median(ratios), 2),
                     "ratio": round(statistics.median(ratios), 3), "top1": top1[name]})
    note = (f"# {args.config} {' '.join(args.overrides)} {args.epochs} epochs, {args.repeats} alternated repeats, "
            f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, "
            f"load average {load_start:.2f} at start, {load_end:.2f} at end; s = median bare time x median ratio")
    print(note)
    header = ["variant", "s", "ratio", "top1"]
    print(" ".join(f"{h:>26}" for h in header))
    for r in rows:
        print(" ".join(f"{str(r[h]):>26}" for h in header))
    if args.out:
        with open(args.out, "w", newline="") as f:
            f.write(note + "\n")
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
