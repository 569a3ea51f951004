"""Overhead of mixbench's runner over a bare PyTorch loop that does the same training, each in its own process.

The mixbench side is ``python tools/train.py CONFIG ...``, as a researcher runs it. The bare side
(``--bare``, this script in a fresh process) starts from the same validated config and builds the same loaders
(``build_data``), classifier and policy (``build_classifier``), optimiser wrapper and per-iteration LR schedule
(``optim_wrapper_cfg``, ``scheduler_cfg``), seeds the same way (``set_random_seed``, then ``epoch_seed`` for
the global RNG and the mixing generator at every epoch), runs the same step (``MixClassifier.train_step``)
and validates after every epoch with the task's metrics (``evaluate``: the record needs a validation row per
epoch). It has no run dir, Runner, hooks, checkpoints, metric sinks or record. Both report the last top-1,
which must agree.

    python benchmarks/runner_overhead.py [CONFIG] [OVERRIDES...] [--epochs 10] [--repeats 3] [--out FILE.csv]

Each repeat runs the bare loop, then every mixbench variant, then the bare loop again; a variant's ratio is
its wall time over the mean of the two bare runs around it, and the table gives the median over repeats, so
load changes on a shared machine hit both sides alike. Wall time is the whole process, imports included:
what a user waits for. The variants switch runner features off one at a time (the defaults, then without
wandb, without TensorBoard, then with one checkpoint at the end) to show where the time goes;
``--baseline DIR`` adds the defaults of another checkout (an older version) to the same alternation, and
``--profile`` prints the functions one default run spends its time in.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping

import torch
from _table import print_table, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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

    from mixbench.config.task import build_task
    from mixbench.engine import compat, dist
    from mixbench.engine.builder import build_data, optim_wrapper_cfg, scheduler_cfg
    from mixbench.engine.hooks import epoch_seed
    from mixbench.evaluation.accuracy import evaluate
    from mixbench.models.classifier import build_classifier

    compat.apply()
    rt, seed = cfg["runtime"], cfg["seed"]
    info = dist.detect(rt["launcher"])
    device = dist.select_device(rt["device"], info)
    set_random_seed(seed, deterministic=bool(rt["deterministic"]))
    data = build_data(cfg, device, info)
    model = build_classifier(cfg, num_classes=data.num_outputs, in_chans=data.in_chans, mean=data.mean,
                             std=data.std).to(device)
    optim = build_optim_wrapper(model, optim_wrapper_cfg(cfg))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim)) for s in scheduler_cfg(cfg, len(data.train))]
    metrics_of_task = build_task(cfg).metrics(cfg, data.num_outputs)
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
        metrics = evaluate(model, data.val, metrics_of_task)
    return metrics["top1"]


def run_process(cmd: list[str], threads: int, root: str = ROOT) -> float:
    """Wall seconds of ``cmd`` in a fresh process importing mixbench from ``root`` (its error output is shown
    if it fails)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def last_top1(work_dir: str) -> float:
    """Last validation top-1 of the one run under ``work_dir`` (its record)."""
    (path,) = glob.glob(os.path.join(work_dir, "**", "record.json"), recursive=True)
    with open(path, encoding="utf-8") as f:
        return json.load(f)["metrics"]["top1"]["final"]


def bare_main(config: str, overrides: list[str], out: str) -> None:
    from mixbench.config import load_config

    cfg, _ = load_config(config, overrides)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"top1": bare_loop(cfg)}, f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default="configs/digits/mixup.yaml")
    p.add_argument("overrides", nargs="*", help="extra overrides for both sides")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each run (1: steadier on a shared machine)")
    p.add_argument("--baseline", metavar="DIR", help="another mixbench checkout whose defaults are timed too")
    p.add_argument("--profile", action="store_true", help="profile one default mixbench run (cProfile) first")
    p.add_argument("--out", help="CSV file to write")
    p.add_argument("--bare", metavar="JSON", help=argparse.SUPPRESS)  # internal: run the bare loop, write top-1
    args = p.parse_args(argv)
    if args.bare:
        torch.set_num_threads(args.threads)
        bare_main(args.config, args.overrides, args.bare)
        return 0
    load_start = os.getloadavg()[0]
    train_py = [sys.executable, "tools/train.py", args.config]
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"schedule.epochs={args.epochs}", "runtime.progress=off", *args.overrides]
        variants, extra = [], []
        if args.baseline:
            variants.append((f"mixbench at {os.path.basename(os.path.abspath(args.baseline))}",
                             os.path.abspath(args.baseline), base))
        for name, over in VARIANTS:
            extra += [o.format(epochs=args.epochs) for o in over]
            variants.append((name, ROOT, base + extra))
        work_dirs = {name: os.path.join(tmp, f"v{k}") for k, (name, _, _) in enumerate(variants)}
        bare_json = os.path.join(tmp, "bare.json")
        bare_cmd = [sys.executable, os.path.abspath(__file__), args.config, *base, "--bare", bare_json,
                    "--threads", str(args.threads)]
        if args.profile:
            prof = os.path.join(tmp, "train.prof")
            run_process([sys.executable, "-m", "cProfile", "-o", prof, *train_py[1:], *base,
                         f"work_dir={tmp}/profile", "--force"], args.threads)
            import pstats

            pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(60)
        ratios: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        bare_times, top1 = [], {}
        for _ in range(args.repeats):
            before = run_process(bare_cmd, args.threads)
            runs = [(name, run_process(train_py + over + [f"work_dir={work_dirs[name]}", "--force"], args.threads,
                                       root)) for name, root, over in variants]
            after = run_process(bare_cmd, args.threads)
            bare_times += [before, after]
            for name, t in runs:
                ratios[name].append(t / ((before + after) / 2))
                seconds[name].append(t - (before + after) / 2)
        with open(bare_json, encoding="utf-8") as f:
            top1["bare loop"] = json.load(f)["top1"]
        for name, _, _ in variants:
            top1[name] = last_top1(work_dirs[name])
    load_end = os.getloadavg()[0]
    bare_s = statistics.median(bare_times)
    rows = [{"variant": "bare loop", "s": round(bare_s, 2), "extra_s": 0.0, "ratio": 1.0, "top1": top1["bare loop"]}]
    for name, rs in ratios.items():
        rows.append({"variant": name, "s": round(bare_s * statistics.median(rs), 2),
                     "extra_s": round(statistics.median(seconds[name]), 2), "ratio": round(statistics.median(rs), 3),
                     "top1": top1[name]})
    note = (f"# {args.config} {' '.join(args.overrides)} {args.epochs} epochs, {args.repeats} alternated repeats, "
            f"{args.threads} CPU thread(s) per run, torch {torch.__version__}, whole processes timed, "
            f"load average {load_start:.2f} at start, {load_end:.2f} at end; s = median bare time x median ratio, "
            f"extra_s = median of (run - mean of the bare runs around it)")
    header = ["variant", "s", "extra_s", "ratio", "top1"]
    print_table(rows, header, note, width=26)
    if args.out:
        write_csv(args.out, rows, header, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
