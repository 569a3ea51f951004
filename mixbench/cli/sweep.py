"""``mixbench train CONFIG -m a=x,y b=0,1``: a sweep through Hydra's sweeper and launcher plugins.

Every combination is composed and validated first, so a typo in any of them fails before anything trains
(exit 2, one line). Jobs then go through Hydra's configured launcher: the basic one runs them one after the
other in this process; ``hydra/launcher=joblib`` runs them in parallel processes and
``hydra/launcher=submitit_slurm`` submits them to SLURM. Each job is an ordinary run with its own run dir,
so a rerun of the same sweep skips the finished jobs and resumes the unfinished ones.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from mixbench.config.compose import (
    ConfigSource,
    compose,
    find_configs_root,
    resolve_config_path,
    split_overrides,
)
from mixbench.config.validate import check_data, validate
from mixbench.errors import ConfigError


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """Every combination of a sweep (``a=x,y b=0,1`` → 4 override lists), as Hydra's basic sweeper does."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        return BasicSweeper.split_arguments(parsed, None)[0]
    except Exception as exc:  # Hydra's override grammar errors are user input errors
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), str(exc))
        raise ConfigError(f"override: {first}") from None


def sweep_job(cfg: Any, *, force: bool, experiment_file: str) -> dict:
    """Hydra task function of one sweep job: validate, train, never raise (one failure must not stop the sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from mixbench.engine.dist import detect
    from mixbench.engine.run import train

    hc = HydraConfig.get()
    path = Path(experiment_file)
    source = ConfigSource(experiment_file=path, configs_root=find_configs_root(path),
                          config_name=hc.job.config_name or "", overrides=list(hc.overrides.task),
                          choices={k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items()
                                   if v is not None and not k.startswith("hydra")})
    overrides = " ".join(hc.overrides.task)
    try:
        run_cfg = validate(OmegaConf.to_container(cfg, resolve=True), source)
        check_data(run_cfg, source, world_size=detect(run_cfg["runtime"]["launcher"]).world_size)
        result = train(run_cfg, experiment_file, force=force)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return {"overrides": overrides, "status": "config error", "run_dir": "", "top1": None}
    except Exception as exc:  # reported in the sweep summary; the run record says failed when it got that far
        print(f"error: {overrides}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {"overrides": overrides, "status": "failed", "run_dir": "", "top1": None}
    top1 = (result.record.get("metrics", {}).get("top1") or {}).get("final")
    return {"overrides": overrides, "status": result.status, "run_dir": result.run_dir, "top1": top1}


def multirun(config: str | None, overrides: Sequence[str], *, force: bool = False) -> int:
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    from mixbench.engine.dist import detect

    run_overrides, hydra_overrides = split_overrides(overrides)
    path = resolve_config_path(config)
    jobs = expand(run_overrides)
    appended: set[str] = set()
    checked_data: set[str] = set()
    for job in jobs:  # fail fast, before anything trains
        raw, source = compose(path, job)
        cfg = validate(raw, source)
        data_key = json.dumps([cfg["data"], cfg["runtime"]["launcher"]], sort_keys=True, default=str)
        if data_key not in checked_data:  # jobs that differ only in the method read the same data
            checked_data.add(data_key)
            check_data(cfg, source, world_size=detect(cfg["runtime"]["launcher"]).world_size)
        appended |= {o.split("=", 1)[0][1:] for o in source.overrides if o.startswith("+")}
    # keys the experiment file lacks (options of a component) must be added, not overridden, in the sweep too
    run_overrides = [("+" + o) if o.split("=", 1)[0] in appended else o for o in run_overrides]
    root = find_configs_root(path)
    name = str(path.relative_to(root).with_suffix(""))
    task = functools.partial(sweep_job, force=force, experiment_file=str(path))
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="mixbench", config_search_path=create_config_search_path(str(root)))
    settings = ["hydra.mode=MULTIRUN", "hydra.output_subdir=null", "hydra/job_logging=disabled",
                "hydra.sweep.dir=${work_dir}/.sweeps/${experiment}", "hydra.sweep.subdir=${hydra.job.num}"]
    try:
        returns = hydra.multirun(config_name=name, task_function=task,
                                 overrides=settings + list(hydra_overrides) + list(run_overrides))
    except ConfigError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), str(exc))
        raise ConfigError(f"sweep: {first}") from None
    finally:
        GlobalHydra.instance().clear()
    results = [r.return_value for batch in (returns or []) for r in batch]
    print(f"mixbench: sweep of {len(results)} runs")
    for r in results:
        top1 = f"top-1 {r['top1']:.4f}" if isinstance(r.get("top1"), float) else ""
        print(f"  {r['status']:<9} {r['overrides']:<40} {top1}  {r['run_dir']}")
    return 0 if all(r["status"] in ("finished", "skipped") for r in results) else 1
