"""The one way the benchmarks show and store a table: aligned columns on stdout, and a CSV whose first line is
a ``#`` note saying how the figures were measured (machine, versions, load)."""

from __future__ import annotations

import csv
from typing import Any, Mapping, Sequence


def print_table(rows: Sequence[Mapping[str, Any]], header: Sequence[str], note: str = "", width: int = 20) -> None:
    """Print ``note`` (if any), then ``header`` and ``rows`` right-aligned in columns of ``width``."""
    if note:
        print(note)
    print(" ".join(f"{h:>{width}}" for h in header))
    for r in rows:
        print(" ".join(f"{str(r[h]):>{width}}" for h in header))


def write_csv(path: str, rows: Sequence[Mapping[str, Any]], header: Sequence[str], note: str = "") -> None:
    """Write ``rows`` (the ``header`` columns) to ``path`` as CSV, after ``note`` as a leading ``# `` line."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        if note:
            f.write(("" if note.startswith("#") else "# ") + note + "\n")
        w = csv.DictWriter(f, fieldnames=list(header))
        w.writeheader()
        w.writerows(rows)
