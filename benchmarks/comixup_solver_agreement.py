"""How close mixbench's Co-Mixup assignment gets to the minimum of the Co-Mixup energy.

Instances are random groups built as ``CoMixup`` builds them (block-pooled saliency normalised to sum 1, the
Dirichlet(α) label prior, the compatibility A, reference β/γ/η/τ/ω) from random smooth saliency maps.

* ``exact``: groups of 3 inputs/outputs with 2×2 blocks, against the exact joint minimum (brute force over all
  3^12 labellings of the group). Reports the share of instances reaching the minimum energy and the
  reference's relative gap (E − E*) / (E_rand − E*) (``match.py``; E_rand: mean over random labellings).
* ``large``: groups of 20 with 4×4 blocks (the defaults), where no exact minimum is available: mean energy,
  share of inputs left unused, the most any input is used (in outputs' worth) and the relative gap to the
  sequential order (``m_sweeps`` = group size), for several ``m_sweeps``, and the share of groups where two
  outputs are identical; also groups of 4 (a batch of 4 at the default ``m_part``). ``resolve`` rows use the
  reference's ``set_resolve`` tie-break (``m_resolve``).

    python benchmarks/comixup_solver_agreement.py --cases 100 [--csv benchmarks/results/comixup_solver_agreement.csv]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys

import torch
import torch.nn.functional as F

from mixbench.mixups.base import sample_gamma
from mixbench.mixups.comixup import CoMixup, assign, block_counts, comix_energy, compatibility

BETA, GAMMA, THRES = 0.32, 1.0, 0.83


def instances(cases: int, m: int, b: int, gen: torch.Generator):
    side = 4 * b
    sal = F.avg_pool2d(torch.rand(cases * m, 1, side + 3, side + 3, generator=gen) ** 4, 4, stride=1)
    sal = sal.view(cases, m, side, side)
    policy = CoMixup(m_part=m, m_block_num=b)
    prior = sample_gamma(2.0, (cases, m), gen, torch.device("cpu"))
    return policy.unaries(sal, prior), compatibility(sal, 0.001)


def energy(labels, unary, comp):
    return comix_energy(labels, unary, comp, BETA, GAMMA, THRES)


def exact(unary, comp, chunk: int = 1 << 15):
    """Minimum energy (G,) over all labellings of each group (brute force)."""
    g, m, b, _ = unary.shape
    cand = torch.tensor(list(itertools.product(range(m), repeat=m * b * b))).view(-1, m, b, b)
    best = torch.full((g,), float("inf"))
    for i in range(g):
        for s in range(0, cand.shape[0], chunk):
            c = cand[s:s + chunk]
            k = c.shape[0]
            e = energy(c, unary[i:i + 1].expand(k, -1, -1, -1), comp[i:i + 1].expand(k, -1, -1))
            best[i] = torch.minimum(best[i], e.min())
    return best


def random_energy(unary, comp, gen, draws: int = 64):
    g, m, b, _ = unary.shape
    lab = torch.randint(m, (draws, g, m, b, b), generator=gen)
    return torch.stack([energy(lab[d], unary, comp) for d in range(draws)]).mean(0)


def run_exact(cases: int, gen: torch.Generator) -> list[dict]:
    m, b = 3, 2
    unary, comp = instances(cases, m, b, gen)
    init = torch.randint(m, (cases, m, b, b), generator=gen)
    best, rand = exact(unary, comp), random_energy(unary, comp, gen)
    rows = []
    for sweeps in (1, m):
        e = energy(assign(unary, comp, init, BETA, GAMMA, THRES, 4, sweeps), unary, comp)
        rows.append({"case": f"exact m={m} b={b}", "m_sweeps": sweeps, "cases": cases,
                     "optimal": round(float((e <= best + 1e-6).float().mean()), 3),
                     "rel_gap_mean": round(float(((e - best) / (rand - best)).mean()), 4),
                     "rel_gap_max": round(float(((e - best) / (rand - best)).max()), 4)})
    return rows


def identical_outputs(labels) -> torch.Tensor:
    """(G,) whether two outputs of a group have the same labelling."""
    flat = labels.flatten(2)
    same = (flat.unsqueeze(2) == flat.unsqueeze(1)).all(-1)
    return torch.triu(same, 1).flatten(1).any(1)


def run_large(cases: int, gen: torch.Generator, m: int = 20) -> list[dict]:
    b = 4
    unary, comp = instances(cases, m, b, gen)
    init = torch.randint(m, (cases, m, b, b), generator=gen)
    rand = random_energy(unary, comp, gen)
    results = {(s, False): assign(unary, comp, init, BETA, GAMMA, THRES, 4, s) for s in sorted({1, 5, 10, m})
               if s <= m}
    results[m, True] = assign(unary, comp, init, BETA, GAMMA, THRES, 4, m, resolve=True)
    ref = energy(results[m, False], unary, comp)
    rows = []
    for (sweeps, resolve), lab in results.items():
        e = energy(lab, unary, comp)
        use = block_counts(lab, m).sum(1) / (b * b)
        rows.append({"case": f"large m={m} b={b}", "m_sweeps": sweeps, "resolve": resolve, "cases": cases,
                     "identical_outputs": round(float(identical_outputs(lab).float().mean()), 3),
                     "energy_mean": round(float(e.mean()), 4), "unused_inputs": round(float((use == 0).float().mean()), 3),
                     "max_use": round(float(use.max()), 2),
                     "rel_gap_to_sequential": round(float(((e - ref) / (rand - ref)).mean()), 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows = run_exact(min(args.cases, 20), gen) + run_large(args.cases, gen) + run_large(args.cases, gen, m=4)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(open(args.csv, "w", newline="") if args.csv else sys.stdout, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
