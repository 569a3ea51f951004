"""``mixbench leaderboard WORK_DIR... [--by ...] [--metric ...] [--format md,csv,latex,html] [--out DIR]``.

Scans work dirs for run records, aggregates them and prints the Markdown board; ``--out`` also writes the
chosen formats there. Failed / NaN / unfinished runs are listed under the board, never on it. Work dirs
without any run record give a warning and exit status 1, and no file is written (an empty board must not
replace a published one).
"""

from __future__ import annotations

import argparse
import logging
import sys

from mixbench.errors import ConfigError
from mixbench.results.aggregate import DEFAULT_BY, aggregate
from mixbench.results.record import METRIC_DEFS, OPTIONAL_METRIC_DEFS
from mixbench.results.render import parse_formats, to_markdown, write_board
from mixbench.results.store import scan


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mixbench leaderboard", description=__doc__.split("\n\n")[1])
    p.add_argument("work_dirs", nargs="+", metavar="WORK_DIR", help="directories holding run dirs (searched recursively)")
    p.add_argument("--by", default=",".join(DEFAULT_BY),
                   help="grouping keys, comma separated; method params by name (e.g. ...,method,alpha) "
                        "or 'params' for all of them (default: %(default)s); a group whose runs differ in "
                        "any other key of the config hash is split, one row per config (column Variant)")
    p.add_argument("--metric", default="top1", help="metric name in the records (default: %(default)s)")
    p.add_argument("--definition", default="median_last_k", choices=METRIC_DEFS + OPTIONAL_METRIC_DEFS,
                   help="which value of the metric per run (default: %(default)s)")
    p.add_argument("--lower-is-better", action="store_true",
                   help="rank ascending; by default the direction the records store for the metric")
    p.add_argument("--format", default="md,csv,latex,html,png",
                   help="formats written to --out: md,csv,latex,html,png or all (default: %(default)s)")
    p.add_argument("--out", help="directory to write the board files into (default: print Markdown only)")
    p.add_argument("--stem", default="leaderboard", help="file name stem in --out (default: %(default)s)")
    p.add_argument("--title", default="mixbench leaderboard")
    p.add_argument("--no-curves", action="store_true", help="skip reading metrics.jsonl for training curves")
    p.add_argument("--wandb", action="store_true",
                   help="also log the board as a wandb Table (offline unless WANDB_MODE says otherwise)")
    p.add_argument("--wandb-project", default="mixbench")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        formats = parse_formats(args.format)
        board = aggregate(scan(args.work_dirs), metric=args.metric, definition=args.definition,
                          by=args.by.split(","), higher_is_better=False if args.lower_is_better else None,
                          title=args.title)
        if not board.has_runs:
            print(f"warning: no run records under {', '.join(args.work_dirs)}; no board written", file=sys.stderr)
            return 1
        sys.stdout.write(to_markdown(board))
        if args.out:
            for path in write_board(board, args.out, formats, stem=args.stem, with_curves=not args.no_curves):
                print(f"wrote {path}", file=sys.stderr)
        if args.wandb:
            from mixbench.results.wandb_table import log_board

            log_board(board, project=args.wandb_project)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
