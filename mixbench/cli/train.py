"""``mixbench train [CONFIG] [key=value ...] [-m] [--force] [--cfg]`` — train one run or a Hydra sweep.

* ``CONFIG``: an experiment file (default ``configs/digits/mixup.yaml``).
* ``key=value``: Hydra overrides (``mixup=cutmix``, ``schedule.epochs=5``, ``+model.head.dropout=0.1``).
* ``-m``/``--multirun``: expand comma lists (``mixup=none,cutmix seed=0,1``) with Hydra's sweeper and launch
  every combination with Hydra's launcher (``hydra/launcher=joblib``, ``submitit_slurm``... work as usual).
* ``--force``: retrain a run that already finished (otherwise rerunning is a no-op; an unfinished run resumes).
* ``--cfg``: print the resolved config and its run dir, then exit (with ``-m``: those of every job of the sweep).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import yaml

from mixbench.config import check_data, load_config, run_dir_of
from mixbench.errors import ConfigError


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mixbench train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default=None, help="experiment file (default: configs/digits/mixup.yaml)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    p.add_argument("-m", "--multirun", action="store_true", help="sweep over comma-separated values")
    p.add_argument("--force", action="store_true", help="retrain even if the run already finished")
    p.add_argument("--cfg", action="store_true", help="print the resolved config (of every sweep job with -m) and exit")
    args = p.parse_intermixed_args(list(argv))
    if args.config is not None and "=" in args.config:  # no config file given, only overrides
        args.overrides.insert(0, args.config)
        args.config = None
    return args


def format_summary(result: Any) -> str:
    """The one-screen summary printed at the end of a run."""
    rec = result.record
    head = {"finished": "finished", "skipped": "already finished (nothing to do; --force retrains)",
            "failed": "FAILED"}[result.status]
    lines = [f"mixbench: {rec.get('run_id', '?')} {head}",
             f"  method {rec.get('method')} {rec.get('method_params')}  backbone {rec.get('backbone')}  "
             f"dataset {rec.get('dataset')}  epochs {rec.get('epochs')}  seed {rec.get('seed')}"]
    metrics = rec.get("metrics", {})
    # full lines for the headline metrics (top-k, the task's selection metric); the rest as final values
    select = (rec.get("config", {}).get("task") or {}).get("select")
    headline = [n for n in sorted(metrics) if n.startswith("top") or n == select] or sorted(metrics)[:1]
    for name in headline:
        m = metrics[name]
        selected = f"  selected (epoch {m['selected_epoch']}) {m['selected']:.4f}" if "selected" in m else ""
        lines.append(f"  {name:<5}  final {m['final']:.4f}  best {m['best']:.4f}  "
                     f"median(last {m.get('k', '?')}) {m['median_last_k']:.4f}{selected}")
    rest = [n for n in sorted(metrics) if n not in headline]
    if rest:
        lines.append("  final  " + "  ".join(f"{n} {metrics[n]['final']:.4f}" for n in rest))
    t = rec.get("time") or {}
    if t:
        lines.append(f"  time   {t.get('wall_s', 0):.1f} s train+val  ({t.get('train_images_per_s', 0):.0f} "
                     f"train images/s)  peak memory {(rec.get('memory') or {}).get('peak_bytes', 0) / 2**20:.0f} MiB")
    if rec.get("error"):
        lines.append(f"  error  {rec['error']}")
    lines.append(f"  run dir {result.run_dir}")
    return "\n".join(lines)


def run_one(config: str | None, overrides: Sequence[str], force: bool) -> int:
    from mixbench.engine.dist import detect
    from mixbench.engine.run import train

    cfg, source = load_config(config, overrides)
    info = detect(cfg["runtime"]["launcher"])
    check_data(cfg, source, world_size=info.world_size)
    result = train(cfg, str(source.experiment_file), force=force)
    if info.is_main:
        print(format_summary(result), flush=True)
    return 0 if result.status in ("finished", "skipped") else 1


def print_configs(config: str | None, overrides: Sequence[str], multirun: bool) -> None:
    """``--cfg``: the resolved config and run dir of the run, or of every job of a sweep (``-m``)."""
    from mixbench.cli.sweep import expand
    from mixbench.config.compose import split_overrides

    run_overrides, hydra_overrides = split_overrides(overrides)  # launcher settings do not change a job's config
    if hydra_overrides and not multirun:
        raise ConfigError(f"{hydra_overrides[0]}: Hydra settings only apply to sweeps; add -m")
    jobs = expand(run_overrides) if multirun else [list(run_overrides)]
    from mixbench.engine.dist import detect
    for i, job in enumerate(jobs):
        cfg, _ = load_config(config, job)
        world_size = detect(cfg["runtime"]["launcher"]).world_size
        if multirun:
            print(f"# job {i}: {' '.join(job)}")
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
        print(f"# run dir: {run_dir_of(cfg, world_size)}")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.cfg:
        print_configs(args.config, args.overrides, args.multirun)
        return 0
    if args.multirun:
        from mixbench.cli.sweep import multirun

        return multirun(args.config, args.overrides, force=args.force)
    from mixbench.config.compose import split_overrides

    run_overrides, hydra_overrides = split_overrides(args.overrides)
    if hydra_overrides:
        raise ConfigError(f"{hydra_overrides[0]}: Hydra settings only apply to sweeps; add -m")
    return run_one(args.config, run_overrides, args.force)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
