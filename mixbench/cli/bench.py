"""``mixbench bench {run,report,status} SUITE``: benchmark suites (benchmarks/*.yaml).

``run`` trains every (entry, seed) of the suite that has no finished record and skips the rest, so an
interrupted suite is resumed by running it again; ``report`` prints the board (with reference and
difference columns when the suite has published numbers) and writes it to the suite's ``out`` directory
(with no record yet it warns, writes nothing and exits with status 1);
``status`` lists each run's state.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from mixbench.errors import ConfigError
from mixbench.results.render import parse_formats, to_markdown, write_board
from mixbench.results.suite import TRAIN_CMD, load_suite, run_suite, status_table, suite_board


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mixbench bench", description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run what is missing, skip what is finished")
    r.add_argument("suite", help="suite file, e.g. benchmarks/digits.yaml")
    r.add_argument("--launcher", default="local", choices=("local", "submitit"),
                   help="local: one run after the other here; submitit: SLURM jobs (local processes "
                        "without SLURM), parameters from the suite's 'slurm' mapping")
    r.add_argument("--only", nargs="+", default=(), metavar="LABEL", help="run only these entries")
    r.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    r.add_argument("--recheck", action="store_true",
                   help="invoke the trainer for finished runs too (a no-op unless their config changed)")
    r.add_argument("--train-cmd", default=shlex.join(TRAIN_CMD),
                   help="command that trains one run, before CONFIG and overrides (default: %(default)s)")
    r.add_argument("--no-validate", dest="validate", action="store_false",
                   help="do not compose and validate every entry before the first run (only for a --train-cmd "
                        "that does not take mixbench configs)")
    r.add_argument("--report", action="store_true", help="write the report when all runs are done")
    r.add_argument("--work-dir", help="keep the runs here instead of the suite's work_dir (scratch storage)")
    rep = sub.add_parser("report", help="print and write the suite's board")
    rep.add_argument("suite")
    rep.add_argument("--out", help="output directory (default: the suite's 'out')")
    rep.add_argument("--format", default="md,csv,latex,html,png", help="formats to write (default: %(default)s)")
    rep.add_argument("--no-write", action="store_true", help="print only")
    rep.add_argument("--wandb", action="store_true", help="also log the board as a wandb Table (offline default)")
    rep.add_argument("--work-dir", help="read the runs from here instead of the suite's work_dir")
    st = sub.add_parser("status", help="state of every run of the suite")
    st.add_argument("suite")
    st.add_argument("--work-dir", help="read the runs from here instead of the suite's work_dir")
    return p


def _report(suite, out=None, formats="md,csv,latex,html,png", write=True, wandb=False) -> int:
    board = suite_board(suite)
    if not board.has_runs:  # an empty board must not replace the published one
        print(f"warning: no run records of suite {suite.name} under {suite.work_dir}; no board written "
              f"(python tools/bench.py run {suite.path})", file=sys.stderr)
        return 1
    sys.stdout.write(to_markdown(board))
    if write:
        for path in write_board(board, out or suite.out, parse_formats(formats), stem="leaderboard"):
            print(f"wrote {path}", file=sys.stderr)
    if wandb:
        from mixbench.results.wandb_table import log_board

        log_board(board, project="mixbench", name=f"bench-{suite.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        suite = load_suite(args.suite)
        if args.work_dir:
            suite.work_dir = Path(args.work_dir)
        if args.verb == "run":
            failures = run_suite(suite, launcher=args.launcher, train_cmd=shlex.split(args.train_cmd),
                                 dry_run=args.dry_run, recheck=args.recheck, only=args.only,
                                 validate=args.validate)
            if failures:
                print(f"{failures} run(s) failed; rerun the same command to retry them", file=sys.stderr)
                return 1
            if args.report and not args.dry_run:
                return _report(suite)
            return 0
        if args.verb == "report":
            return _report(suite, args.out, args.format, not args.no_write, args.wandb)
        table = status_table(suite)
        print(table.to_string(index=False))
        counts = table["status"].value_counts().to_dict()
        print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        return 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
