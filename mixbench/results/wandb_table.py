"""Log a board as a wandb Table (docs/architecture.md, "Run directory and record": wandb is an extra sink, offline unless the user opts in)."""

from __future__ import annotations

import os

from mixbench.results.aggregate import Board


def board_frame(board: Board):
    """The board as a flat table: grouping keys, the metric definition, n, mean, std, CI (as shown,
    see :meth:`Board.clip`), rank, reference."""
    cols = [*board.by, "n", "mean", "std", "ci_low", "ci_high", "rank"]
    if board.has_reference:
        cols += ["reference", "diff"]
    frame = board.table[cols].copy()
    frame[["ci_low", "ci_high"]] = board.shown_ci()
    frame.insert(len(board.by), "metric", board.header)
    return frame.astype({c: str for c in board.by})


def log_board(board: Board, project: str = "mixbench", name: str | None = None, dir: str | None = None):
    """Log ``board`` as a ``leaderboard`` Table in a new wandb run and return the run's directory.

    The mode defaults to ``offline`` (no account needed; ``wandb sync`` uploads later); set
    ``WANDB_MODE=online`` to upload directly or ``disabled`` to skip.
    """
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")
    run = wandb.init(project=project, name=name or "leaderboard", job_type="leaderboard", mode=mode, dir=dir,
                     config={"metric": board.metric, "definition": board.definition, "by": board.by})
    try:
        run.log({"leaderboard": wandb.Table(dataframe=board_frame(board))})
        return getattr(run, "dir", None)
    finally:
        run.finish()
