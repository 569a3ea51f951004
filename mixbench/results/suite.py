"""Benchmark suites: experiments × seeds (× overrides) with optional published reference numbers.

A suite file (``benchmarks/<suite>.yaml``)::

    name: digits                      # default: the file stem
    title: Digits, every policy       # board title
    work_dir: work_dirs/bench/digits  # where the runs live (relative to the current directory)
    out: results/digits               # where ``report`` writes the board
    seeds: [0, 1, 2]
    metric: top1
    definition: median_last_k         # final | best | median_last_k
    by: [dataset, backbone, epochs, method]
    overrides: [schedule.epochs=10]   # for every run
    reference_source: OpenMixup docs/en/mixup_benchmarks/Mixup_cifar.md
    claim: mixup is more robust than ERM at 60% label noise   # optional, stated on the board
    slurm: {timeout_min: 600, gpus_per_node: 1}   # submitit parameters for --launcher submitit
    runs:
      - config: configs/digits/mixup.yaml
        label: mixup                  # default: config stem (+ overrides)
        overrides: [mixup.alpha=0.2]
        seeds: [0]                    # optional, else the suite's
        reference: 78.52              # optional published number

Each run of a suite entry lives in ``<work_dir>/<label>-<digest>/``, where the digest covers the config
file's text and the overrides, so editing an entry starts fresh runs instead of mixing old and new ones.
A run is *finished* when a record with its seed and status ``finished`` is there; everything else is run
(the train command itself resumes an unfinished run), so a suite interrupted at any point and run again
loses nothing and duplicates nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import yaml

from mixbench.config.schema import RANGES
from mixbench.errors import ConfigError
from mixbench.results.aggregate import DEFAULT_BY, Board, aggregate
from mixbench.results.claims import Claim, evaluate, parse_claim
from mixbench.results.columns import Column, add_columns, parse_columns
from mixbench.results.record import METRIC_DEFS, OPTIONAL_METRIC_DEFS
from mixbench.results.store import Store, scan

log = logging.getLogger("mixbench.results")

TRAIN_CMD = (sys.executable, "-m", "mixbench.cli.main", "train")
_SUITE_KEYS = {"name", "title", "description", "work_dir", "out", "seeds", "metric", "definition", "by",
               "overrides", "reference_source", "slurm", "runs", "higher_is_better", "claim", "columns"}
_RUN_KEYS = {"config", "label", "overrides", "seeds", "reference"}


@dataclass
class SuiteRun:
    """One entry of a suite: a config plus overrides, run once per seed."""

    config: str
    label: str
    overrides: list[str]
    seeds: list[int]
    reference: float | None
    digest: str

    @property
    def dirname(self) -> str:
        return f"{_slug(self.label)}-{self.digest}"


@dataclass
class Suite:
    path: Path
    name: str
    title: str
    work_dir: Path
    out: Path
    seeds: list[int]
    metric: str
    definition: str
    by: list[str]
    overrides: list[str]
    runs: list[SuiteRun]
    reference_source: str | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool | None = None  # None: the direction the records store
    claim: Claim | None = None  # the published claim the suite tests, stated and checked on its board
    columns: list[Column] = field(default_factory=list)  # extra metric columns of the same runs

    def run_dir(self, run: SuiteRun) -> Path:
        return self.work_dir / run.dirname

    def command(self, run: SuiteRun, seed: int, train_cmd: Sequence[str] = TRAIN_CMD) -> list[str]:
        """The training command of one (entry, seed): config, overrides, seed and the entry's work dir."""
        return [*train_cmd, run.config, *self.overrides, *run.overrides, f"seed={seed}",
                f"work_dir={self.run_dir(run)}"]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", s).strip("_") or "run"


def _as_list(value, what: str, path: Path) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(f"{path}: '{what}' must be a list, got {type(value).__name__}")
    return value


def _seeds(value, what: str, path: Path) -> list[int]:
    seeds = _as_list(value, what, path)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: '{what}' must be a non-empty list of ints, got {value!r}")
    RANGES["seed"].check(what, seeds, str(path))  # the range of a run's seed
    return seeds


def _digest(config: Path, overrides: Sequence[str]) -> str:
    h = hashlib.sha1()
    h.update(config.read_bytes() if config.is_file() else str(config).encode())
    h.update("\0".join(overrides).encode())
    return h.hexdigest()[:6]


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and check a suite file; every mistake is a one-line :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite '{path}': no such file (suites live in benchmarks/*.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'; valid: {', '.join(sorted(_SUITE_KEYS))}")
    definition = data.get("definition", "median_last_k")
    if definition not in METRIC_DEFS + OPTIONAL_METRIC_DEFS:
        raise ConfigError(f"{path}: definition '{definition}' unknown; valid: "
                          f"{', '.join(METRIC_DEFS + OPTIONAL_METRIC_DEFS)}")
    seeds = _seeds(data.get("seeds", [0]), "seeds", path)
    common = [str(o) for o in _as_list(data.get("overrides"), "overrides", path)]
    raw_runs = data.get("runs")
    if not isinstance(raw_runs, list) or not raw_runs:
        raise ConfigError(f"{path}: 'runs' must be a non-empty list of {{config: ..., ...}}")
    runs, labels = [], set()
    for i, r in enumerate(raw_runs):
        if isinstance(r, str):
            r = {"config": r}
        if not isinstance(r, dict) or "config" not in r:
            raise ConfigError(f"{path}: runs[{i}] needs a 'config' (an experiment file)")
        bad = sorted(set(r) - _RUN_KEYS)
        if bad:
            raise ConfigError(f"{path}: runs[{i}] unknown key '{bad[0]}'; valid: {', '.join(sorted(_RUN_KEYS))}")
        overrides = [str(o) for o in _as_list(r.get("overrides"), f"runs[{i}].overrides", path)]
        label = str(r.get("label") or " ".join([Path(r["config"]).stem, *overrides]))
        if label in labels:
            raise ConfigError(f"{path}: runs[{i}] label '{label}' used twice; give each run a unique label")
        labels.add(label)
        ref = r.get("reference")
        if ref is not None and (not isinstance(ref, (int, float)) or isinstance(ref, bool)):
            raise ConfigError(f"{path}: runs[{i}].reference must be a number, got {ref!r}")
        config = str(r["config"])
        runs.append(SuiteRun(config=config, label=label, overrides=overrides,
                             seeds=_seeds(r.get("seeds", seeds), f"runs[{i}].seeds", path),
                             reference=None if ref is None else float(ref),
                             digest=_digest(Path(config), [*common, *overrides])))
    name = str(data.get("name") or path.stem)
    slurm = data.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"{path}: 'slurm' must be a mapping of submitit parameters")
    return Suite(path=path, name=name, title=str(data.get("title") or name),
                 work_dir=Path(data.get("work_dir") or f"work_dirs/bench/{name}"),
                 out=Path(data.get("out") or f"results/{name}"), seeds=seeds,
                 metric=str(data.get("metric", "top1")), definition=definition,
                 by=[str(b) for b in _as_list(data.get("by", list(DEFAULT_BY)), "by", path)],
                 overrides=common, runs=runs, reference_source=data.get("reference_source"), slurm=slurm,
                 higher_is_better=None if data.get("higher_is_better") is None else bool(data["higher_is_better"]),
                 claim=parse_claim(data.get("claim"), path, [r.label for r in runs]),
                 columns=parse_columns(data.get("columns"), path))


# ---------------------------------------------------------------------------------------------------- state


def suite_store(suite: Suite, warn: bool = True) -> Store:
    """Records of the suite's runs, each tagged with its entry ``label`` and ``reference``.

    Records of seeds the entry does not list are ignored; if a seed has several records (``--force``
    reruns), the finished one written last counts, so each (entry, seed) appears at most once.
    """
    frames, skipped = [], []
    for run in suite.runs:
        d = suite.run_dir(run)
        if not d.is_dir():
            continue
        st = scan(d, warn=warn)
        skipped += st.skipped
        if st.runs.empty:
            continue
        df = st.runs[st.runs["seed"].isin(run.seeds)].copy()
        df["label"] = run.label
        df["reference"] = run.reference
        frames.append(df)
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["seed", "status", "label", "path", "finished"])
    if not runs.empty:
        runs["_done"] = runs["status"] == "finished"
        runs = (runs.sort_values(["_done", "finished"], na_position="first", kind="stable")
                .drop_duplicates(["label", "seed"], keep="last").drop(columns="_done").reset_index(drop=True))
    return Store(runs=runs, skipped=skipped, roots=[str(suite.work_dir)])


def status_table(suite: Suite) -> pd.DataFrame:
    """One row per (entry, seed): ``label``, ``seed``, ``status`` (missing / running / failed / finished)."""
    runs = suite_store(suite, warn=False).runs
    have = {(r.label, r.seed): r.status for r in runs.itertuples()} if not runs.empty else {}
    rows = [{"label": run.label, "seed": s, "status": have.get((run.label, s), "missing"), "config": run.config}
            for run in suite.runs for s in run.seeds]
    return pd.DataFrame(rows)


def pending(suite: Suite) -> list[tuple[SuiteRun, int]]:
    """(entry, seed) pairs without a finished record, in suite order."""
    st = status_table(suite)
    todo = set(zip(st.loc[st["status"] != "finished", "label"], st.loc[st["status"] != "finished", "seed"]))
    return [(run, s) for run in suite.runs for s in run.seeds if (run.label, s) in todo]


# ------------------------------------------------------------------------------------------------- running


def check_configs(suite: Suite, todo: list[tuple[SuiteRun, int]], validate: bool = True) -> None:
    """Every entry to run exists and, with ``validate``, composes and validates with its overrides and its
    data checks pass, so that a typo in any entry stops the suite before anything trains."""
    missing = sorted({run.config for run, _ in todo if not Path(run.config).is_file()})
    if missing:
        raise ConfigError(f"{suite.path}: config '{missing[0]}' does not exist"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not validate:
        return
    from mixbench.config import check_data, load_config

    seen_data: set[str] = set()
    for run in {run.label: run for run, _ in todo}.values():  # each entry once: load_suite checked the seeds
        i = suite.runs.index(run)
        # the entry's own training command without its train_cmd prefix: config, overrides, seed, work_dir
        config, *overrides = suite.command(run, run.seeds[0], train_cmd=())
        try:
            cfg, source = load_config(config, overrides)
            data_key = json.dumps(cfg["data"], sort_keys=True, default=str)
            if data_key not in seen_data:  # entries that differ only in the method read the same data
                seen_data.add(data_key)
                check_data(cfg, source)
        except ConfigError as exc:
            raise ConfigError(f"{suite.path}: runs[{i}] ({run.label}): {exc}") from None


def run_local(cmd: Sequence[str], log_path: Path) -> int:
    """Run one training command, output to ``log_path``; the child and its own children die with us.

    The child leads a process group of its own, so that ending it reaches everything it started (torchrun's
    workers, data-loader workers): any exception here (SIGINT, or SIGTERM/SIGHUP turned into SystemExit by
    :func:`run_suite`) ends the group. On Linux the child also gets SIGTERM when this process dies by a
    signal it cannot catch (SIGKILL). Otherwise a rerun would start the same run beside the orphan.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        logf.write(f"\n$ {shlex.join(cmd)}\n".encode())
        logf.flush()
        proc = subprocess.Popen(list(cmd), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            return proc.wait()
        except BaseException:
            _end_group(proc)
            raise


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the suite runner dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _end_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left after ``grace_s`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group has already gone
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _raise_on_signal(signum, frame):  # SIGTERM/SIGHUP become an exception, so that run_local ends the child
    raise SystemExit(128 + signum)


def run_suite(suite: Suite, *, launcher: str = "local", train_cmd: Sequence[str] = TRAIN_CMD,
              dry_run: bool = False, recheck: bool = False, only: Sequence[str] = (), validate: bool = True,
              echo: Callable[[str], None] = print) -> int:
    """Run every missing (entry, seed) of ``suite``; returns the number of runs that failed.

    Args:
        launcher: ``local`` (one after the other, here) or ``submitit`` (SLURM when available, else local
            processes; parameters from the suite's ``slurm`` mapping).
        train_cmd: the command prefix that trains one run (``python -m mixbench.cli.main train``).
        dry_run: only print the commands.
        recheck: also invoke the trainer for finished runs (it is a no-op for them unless the composed
            config changed, e.g. after editing a group file the suite digest does not cover).
        only: restrict to these entry labels.
        validate: compose and validate every entry to run before the first one starts (see
            :func:`check_configs`); off only for a ``train_cmd`` that does not take mixbench configs.
    """
    missing = pending(suite)
    todo = [(r, s) for r in suite.runs for s in r.seeds] if recheck else missing
    if only:
        unknown = sorted(set(only) - {r.label for r in suite.runs})
        if unknown:
            raise ConfigError(f"--only: no run labelled '{unknown[0]}' in {suite.path}")
        todo = [(r, s) for r, s in todo if r.label in only]
    total = sum(len(r.seeds) for r in suite.runs)
    echo(f"suite {suite.name}: {total - len(missing)}/{total} runs finished, {len(todo)} to run ({launcher})")
    if not todo:
        return 0
    check_configs(suite, todo, validate)
    cmds = [(run, seed, suite.command(run, seed, train_cmd)) for run, seed in todo]
    if dry_run:
        for _, _, cmd in cmds:
            echo(shlex.join(cmd))
        return 0
    if launcher == "submitit":
        return _run_submitit(suite, cmds, echo)
    if launcher != "local":
        raise ConfigError(f"--launcher: unknown '{launcher}'; valid: local, submitit")
    # (a signal ignored on purpose, as under nohup, stays ignored)
    old = {sig: signal.signal(sig, _raise_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)
           if signal.getsignal(sig) is not signal.SIG_IGN}
    failures = 0
    try:
        for i, (run, seed, cmd) in enumerate(cmds, 1):
            log_path = suite.run_dir(run) / "logs" / f"s{seed}.log"
            t0 = time.monotonic()
            rc = run_local(cmd, log_path)
            took = time.monotonic() - t0
            state = "ok" if rc == 0 else f"FAILED (exit {rc}, log {log_path})"
            failures += rc != 0
            echo(f"[{i}/{len(cmds)}] {run.label} seed {seed}: {state} in {took:.0f}s")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return failures


def _submitit_call(cmd: list[str], log_path: str) -> int:
    """Job body (pickled by submitit): run the training command, fail the job when it fails."""
    rc = run_local(cmd, Path(log_path))
    if rc != 0:
        raise RuntimeError(f"exit {rc}: {shlex.join(cmd)} (log {log_path})")
    return rc


def _run_submitit(suite: Suite, cmds, echo: Callable[[str], None], cluster: str | None = None) -> int:
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher submitit needs the 'submitit' package: pip install mixbench[slurm]") from None
    cluster = cluster or os.environ.get("MIXBENCH_SUBMITIT_CLUSTER") or None
    executor = submitit.AutoExecutor(folder=str(suite.work_dir / ".submitit" / "%j"), cluster=cluster)
    params = {"timeout_min": 60 * 24, "name": f"mixbench-{suite.name}", **suite.slurm}
    executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for run, seed, cmd in cmds:
            log_path = suite.run_dir(run) / "logs" / f"s{seed}.log"
            jobs.append((run, seed, executor.submit(_submitit_call, cmd, str(log_path))))
    echo(f"submitted {len(jobs)} jobs to {executor.cluster}")
    failures = 0
    for run, seed, job in jobs:
        try:
            job.result()
            echo(f"{run.label} seed {seed}: ok (job {job.job_id})")
        except Exception as e:  # a failed job must not hide the others' results
            failures += 1
            echo(f"{run.label} seed {seed}: FAILED (job {job.job_id}): {str(e).splitlines()[0] if str(e) else e}")
    return failures


# ------------------------------------------------------------------------------------------------ reporting


def suite_board(suite: Suite) -> Board:
    """The suite's board; rows carry the published reference and the difference when the suite has them."""
    store = suite_store(suite)
    runs = store.runs
    by = list(suite.by)
    reference = None
    if not runs.empty:
        # Group by entry label too when entries share a (dataset, backbone, epochs, method) group.
        keys = [k for k in by if k in runs.columns]
        if keys and runs.groupby(keys, dropna=False)["label"].nunique().max() > 1 and "label" not in by:
            by.append("label")
        if runs["reference"].notna().any():
            reference = runs[[k for k in by if k in runs.columns] + ["reference"]].dropna(subset=["reference"])
        store = Store(runs=runs.drop(columns=["reference"]), skipped=store.skipped, roots=store.roots)
    board = aggregate(store, metric=suite.metric, definition=suite.definition, by=by, reference=reference,
                      higher_is_better=suite.higher_is_better, title=suite.title,
                      reference_source=suite.reference_source)
    if board.has_runs:
        add_columns(board, store, suite.columns, by)
    if board.has_runs and suite.claim:
        board.claim = evaluate(suite.claim, store, metric=suite.metric, definition=suite.definition, by=by)
    st = status_table(suite)
    missing = st[st["status"].isin(["missing"])]
    if len(missing):
        board.notes.append(f"{len(missing)} of {len(st)} suite runs have no record yet "
                           f"(python tools/bench.py run {suite.path}).")
    return board
