"""How often mixbench's PuzzleMix labelling solvers find the exact minimum of the PuzzleMix energy, and their time.

The instances are built exactly as PuzzleMix builds them (``puzzle_energy``: pooled saliency unaries, the
data-smoothness pairwise term, the binomial label prior) from random smooth images in [0, 1] and random
saliency maps, for a random λ ~ U(0, 1) each. Two solvers:

* ``approx``: the batched belief propagation + ICM of ``_graphcut.solve`` (used for 3+ labels);
* ``mincut``: the exact two-label s-t minimum cut of ``_mincut.binary_mincut`` (used for 2 labels).

Each is compared with an exact minimiser: brute-force enumeration (``bruteforce``, up to 4×4 blocks with 2
labels and 3×3 with 3), the minimum cut (``mincut``, 2 labels on the larger grids) or networkx's
``minimum_cut`` (``networkx``, an independent max-flow, checking the cut's energy on 8×8 and 16×16).
Reports the share of instances with the same labelling, with the optimal energy (ties), the mean and worst
relative energy gap, and the solver's CPU time for the whole batch of instances on one thread (median of
``--repeats``; CPU time, not wall time, so that other load on the machine does not count).

    python benchmarks/puzzlemix_solver_agreement.py --cases 200 [--csv benchmarks/results/puzzlemix_solver_agreement.csv]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mixbench.mixups._graphcut import energy, solve, solve_exact
from mixbench.mixups._mincut import binary_mincut
from mixbench.mixups.puzzlemix import puzzle_energy
from mixbench.results.record import atomic_write_text

SOLVERS = {"approx": solve, "mincut": binary_mincut}


def random_instances(cases: int, blocks: int, n_labels: int, gen: torch.Generator):
    width = 24 if blocks == 3 else 32
    images = F.avg_pool2d(torch.rand(cases, 3, width + 3, width + 3, generator=gen), 4, stride=1)
    sal = F.avg_pool2d(torch.rand(cases, 1, width + 7, width + 7, generator=gen) ** 4, 8, stride=1)[:, 0]
    lam = torch.rand(cases, generator=gen)
    index = torch.randperm(cases, generator=gen)
    return puzzle_energy(sal, images, index, lam, blocks, 1.2, 0.5, 0.2, 4, n_labels)[:3]


def brute_force(unary, vert, horz, chunk: int = 8):
    """solve_exact over a few samples at a time (it holds every labelling of every sample in memory)."""
    return torch.cat([solve_exact(unary[i:i + chunk], vert[i:i + chunk], horz[i:i + chunk])
                      for i in range(0, unary.shape[0], chunk)])


def networkx_energy(unary, vert, horz):
    """Minimum energy per instance from networkx's max-flow on the same graph construction."""
    import networkx as nx

    out = []
    for u, v, h in zip(unary.double().tolist(), vert.double().tolist(), horz.double().tolist()):
        b, g = len(u), nx.DiGraph()
        for r in range(b):
            for c in range(b):
                low = min(u[r][c])
                g.add_edge("s", (r, c), capacity=u[r][c][1] - low)
                g.add_edge((r, c), "t", capacity=u[r][c][0] - low)
                if r + 1 < b:
                    g.add_edge((r, c), (r + 1, c), capacity=v[r][c])
                    g.add_edge((r + 1, c), (r, c), capacity=v[r][c])
                if c + 1 < b:
                    g.add_edge((r, c), (r, c + 1), capacity=h[r][c])
                    g.add_edge((r, c + 1), (r, c), capacity=h[r][c])
        cut, _ = nx.minimum_cut(g, "s", "t")
        out.append(cut + sum(min(x) for row in u for x in row))
    return torch.tensor(out)


def timed(fn, repeats: int, *args):
    times, out = [], None
    for _ in range(repeats):
        start = time.process_time()
        out = fn(*args)
        times.append(time.process_time() - start)
    return out, statistics.median(times)


def measure(blocks: int, n_labels: int, solver: str, reference: str, cases: int, seed: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    unary, vert, horz = random_instances(cases, blocks, n_labels, gen)
    assert bool((vert >= 0).all() and (horz >= 0).all()), "PuzzleMix's weights are >= 0 for images in [0, 1]"
    SOLVERS[solver](unary, vert, horz)  # warm-up: first-call allocations and imports
    got, seconds = timed(SOLVERS[solver], repeats, unary, vert, horz)
    e_got = energy(got, unary, vert, horz).double()
    if reference == "networkx":
        exact, e_opt = None, networkx_energy(unary, vert, horz)
    else:
        exact = brute_force(unary, vert, horz) if reference == "bruteforce" else binary_mincut(unary, vert, horz)
        e_opt = energy(exact, unary, vert, horz).double()
    gap = (e_got - e_opt) / e_opt.abs().clamp_min(1e-12)
    same = float((got == exact).flatten(1).all(1).double().mean()) if exact is not None else float("nan")
    return {"blocks": blocks, "n_labels": n_labels, "solver": solver, "reference": reference, "cases": cases,
            "same_labelling": same, "optimal_energy": float((gap <= 1e-5).double().mean()),
            "mean_rel_gap": float(gap.clamp_min(0).mean()), "max_rel_gap": float(gap.max()),
            "cpu_ms_per_batch": round(1e3 * seconds, 2)}


PLAN = [(2, 3, "approx", "bruteforce"), (3, 3, "approx", "bruteforce"),
        (2, 2, "approx", "bruteforce"), (2, 2, "mincut", "bruteforce"),
        (3, 2, "approx", "bruteforce"), (3, 2, "mincut", "bruteforce"),
        (4, 2, "approx", "bruteforce"), (4, 2, "mincut", "bruteforce"),
        (8, 2, "approx", "mincut"), (8, 2, "mincut", "networkx"),
        (16, 2, "approx", "mincut"), (16, 2, "mincut", "networkx")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = [measure(*plan, args.cases, args.seed, args.repeats) for plan in PLAN]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(out.getvalue())
    if args.csv:
        atomic_write_text(args.csv, out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
