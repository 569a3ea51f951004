"""How often mixbench's batched PuzzleMix labelling solver finds the exact minimum of the PuzzleMix energy.

The instances are built exactly as PuzzleMix builds them (``puzzle_energy``: pooled saliency unaries, the
data-smoothness pairwise term, the binomial label prior) from random images and random saliency maps, for a
random λ ~ U(0, 1) each. The exact minimiser comes from brute force (3 labels, b ∈ {2, 3}) or from a max-flow
min-cut (networkx, 2 labels, b ∈ {4, 8, 16}; only instances whose edge weights are all ≥ 0, where the cut is
exact). Reports the share of instances with the same labelling, with the optimal energy (ties), and the mean
and worst relative energy gap.

    python benchmarks/puzzlemix_solver_agreement.py --cases 200 [--csv benchmarks/results/puzzlemix_solver_agreement.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys

import torch
import torch.nn.functional as F

from mixbench.mixups._graphcut import energy, solve, solve_exact
from mixbench.mixups.puzzlemix import puzzle_energy


def random_instances(cases: int, blocks: int, n_labels: int, width: int, gen: torch.Generator):
    images = F.avg_pool2d(torch.rand(cases, 3, width + 3, width + 3, generator=gen), 4, stride=1)
    sal = F.avg_pool2d(torch.rand(cases, 1, width + 7, width + 7, generator=gen) ** 4, 8, stride=1)[:, 0]
    lam = torch.rand(cases, generator=gen)
    index = torch.randperm(cases, generator=gen)
    return puzzle_energy(sal, images, index, lam, blocks, 1.2, 0.5, 0.2, 4, n_labels)[:3]


def maxflow_binary(unary, vert, horz):
    import networkx as nx

    out = []
    for u, v, h in zip(unary, vert, horz):
        b = u.shape[0]
        g = nx.DiGraph()
        m = float(u.min())
        for r in range(b):
            for c in range(b):
                g.add_edge("s", (r, c), capacity=float(u[r, c, 1]) - m)
                g.add_edge((r, c), "t", capacity=float(u[r, c, 0]) - m)
        for r in range(b - 1):
            for c in range(b):
                g.add_edge((r, c), (r + 1, c), capacity=float(v[r, c]))
                g.add_edge((r + 1, c), (r, c), capacity=float(v[r, c]))
        for r in range(b):
            for c in range(b - 1):
                g.add_edge((r, c), (r, c + 1), capacity=float(h[r, c]))
                g.add_edge((r, c + 1), (r, c), capacity=float(h[r, c]))
        _, (src_side, _) = nx.minimum_cut(g, "s", "t")
        lab = torch.ones(b, b, dtype=torch.long)
        for node in src_side:
            if node != "s":
                lab[node] = 0
        out.append(lab)
    return torch.stack(out)


def measure(blocks: int, n_labels: int, cases: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    width = 24 if blocks == 3 else 32
    unary, vert, horz = random_instances(cases, blocks, n_labels, width, gen)
    if n_labels == 2:
        ok = (vert.flatten(1).min(1).values >= 0) & (horz.flatten(1).min(1).values >= 0)
        unary, vert, horz = unary[ok], vert[ok], horz[ok]
        exact = maxflow_binary(unary, vert, horz)
        method = "maxflow"
    else:
        exact = solve_exact(unary, vert, horz)
        method = "bruteforce"
    got = solve(unary, vert, horz)
    e_got, e_opt = energy(got, unary, vert, horz), energy(exact, unary, vert, horz)
    gap = (e_got - e_opt) / e_opt.abs().clamp_min(1e-12)
    return {"blocks": blocks, "n_labels": n_labels, "exact": method, "cases": int(unary.shape[0]),
            "same_labelling": float((got == exact).flatten(1).all(1).float().mean()),
            "optimal_energy": float((gap <= 1e-5).float().mean()),
            "mean_rel_gap": float(gap.clamp_min(0).mean()), "max_rel_gap": float(gap.max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    rows = [measure(2, 3, args.cases, args.seed), measure(3, 3, args.cases, args.seed)]
    rows += [measure(b, 2, args.cases, args.seed) for b in (4, 8, 16)]
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
