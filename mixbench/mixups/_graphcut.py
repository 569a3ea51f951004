"""Batched grid-MRF solver for PuzzleMix-style labelling, on the device and without host syncs.

Energy of a labelling l ∈ {0..L−1}^{b×b} (one per sample, solved for the whole batch at once):

    E(l) = Σ_p U[p, l_p] + Σ_{(p,q) vertical} V[p]·D(l_p, l_q) + Σ_{(p,q) horizontal} H[p]·D(l_p, l_q)

with D(i, j) = (i − j)² / (L − 1)² (the PuzzleMix label distance). The reference minimises it with gco's
α-β swap graph-cut on the CPU, one sample at a time. Here: synchronous min-sum loopy belief propagation
(a fixed number of iterations) gives a labelling that is then polished by checkerboard ICM sweeps
(all nodes of one colour updated at once; each sweep never increases the energy). Both use only batched
tensor ops, so the cost is a fixed number of small kernels whatever the batch size. It is not guaranteed to
reach the global minimum; ``benchmarks/puzzlemix_solver_agreement.py`` measures how often it does against an
exact solver (brute force, and the minimum cut of :mod:`mixbench.mixups._mincut` for two labels, which
PuzzleMix uses instead of this solver in that case) and the energy gap otherwise.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

DAMPING = 0.0  # undamped: best agreement with the exact solver in the measurement script


def label_distance(n_labels: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    i = torch.arange(n_labels, device=device, dtype=dtype)
    return (i[:, None] - i[None, :]) ** 2 / max(n_labels - 1, 1) ** 2


def energy(labels: Tensor, unary: Tensor, vert: Tensor, horz: Tensor, dist: Tensor | str | None = None) -> Tensor:
    """E(l) per sample. labels (N, b, b) int64; unary (N, b, b, L); vert (N, b−1, b); horz (N, b, b−1)."""
    d = _distance(unary.shape[-1], unary, dist)
    e = unary.gather(-1, labels.unsqueeze(-1)).squeeze(-1).sum((1, 2))
    e = e + (vert * d[labels[:, :-1], labels[:, 1:]]).sum((1, 2))
    return e + (horz * d[labels[:, :, :-1], labels[:, :, 1:]]).sum((1, 2))


def _send(h: Tensor, w: Tensor, d: Tensor | None) -> Tensor:
    """Min-sum message: m(l_q) = min_{l_p} h(l_p) + w·D(l_p, l_q), normalised to min 0. ``d`` None is the
    Potts distance [l_p ≠ l_q], whose message min(h(l_q), min h + w) costs O(L) instead of O(L²)."""
    if d is None:
        m = torch.minimum(h, h.amin(-1, keepdim=True) + w.unsqueeze(-1))
    else:
        m = (h.unsqueeze(-1) + w.unsqueeze(-1).unsqueeze(-1) * d).amin(-2)
    return m - m.amin(-1, keepdim=True)


def _distance(n_labels: int, unary: Tensor, dist: Tensor | str | None) -> Tensor:
    """The (L, L) label distance: PuzzleMix's by default, Potts for ``"potts"``, else ``dist`` itself."""
    if dist is None:
        return label_distance(n_labels, unary.device, unary.dtype)
    if isinstance(dist, str):
        if dist != "potts":
            raise ValueError(f"dist: expected a tensor or 'potts', got {dist!r}")
        return 1.0 - torch.eye(n_labels, device=unary.device, dtype=unary.dtype)
    return dist


def belief_propagation(unary: Tensor, vert: Tensor, horz: Tensor, iters: int, damping: float = DAMPING,
                       dist: Tensor | str | None = None) -> Tensor:
    """Beliefs (N, b, b, L) after ``iters`` rounds of synchronous damped min-sum BP on the 4-grid."""
    d = None if isinstance(dist, str) and dist == "potts" else _distance(unary.shape[-1], unary, dist)
    zero = torch.zeros_like(unary)
    up, down, left, right = zero, zero.clone(), zero.clone(), zero.clone()  # messages arriving from that side
    for _ in range(iters):
        belief = unary + up + down + left + right
        new_up, new_down, new_left, new_right = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        new_up[:, 1:] = _send((belief - down)[:, :-1], vert, d)        # p=(r,c) → (r+1,c)
        new_down[:, :-1] = _send((belief - up)[:, 1:], vert, d)        # p=(r+1,c) → (r,c)
        new_left[:, :, 1:] = _send((belief - right)[:, :, :-1], horz, d)
        new_right[:, :, :-1] = _send((belief - left)[:, :, 1:], horz, d)
        if damping == 0.0:  # a Python float: no host sync; saves 12 kernels per round
            up, down, left, right = new_up, new_down, new_left, new_right
            continue
        up = damping * up + (1 - damping) * new_up
        down = damping * down + (1 - damping) * new_down
        left = damping * left + (1 - damping) * new_left
        right = damping * right + (1 - damping) * new_right
    return unary + up + down + left + right


def local_costs(labels: Tensor, unary: Tensor, vert: Tensor, horz: Tensor,
                dist: Tensor | str | None = None) -> Tensor:
    """Cost (N, b, b, L) of each label at each node given the current labels of its neighbours."""
    d = _distance(unary.shape[-1], unary, dist)
    cost = unary.clone()
    cost[:, 1:] += vert.unsqueeze(-1) * d[labels[:, :-1]]
    cost[:, :-1] += vert.unsqueeze(-1) * d[labels[:, 1:]]
    cost[:, :, 1:] += horz.unsqueeze(-1) * d[labels[:, :, :-1]]
    cost[:, :, :-1] += horz.unsqueeze(-1) * d[labels[:, :, 1:]]
    return cost


def icm(labels: Tensor, unary: Tensor, vert: Tensor, horz: Tensor, sweeps: int,
        dist: Tensor | str | None = None) -> Tensor:
    """Checkerboard iterated conditional modes: nodes of one colour have no edge between them, so they are
    updated together to their best label given the others (the energy never increases)."""
    b = labels.shape[-1]
    rr, cc = torch.meshgrid(torch.arange(b, device=labels.device), torch.arange(b, device=labels.device),
                            indexing="ij")
    colours = [((rr + cc) % 2) == k for k in (0, 1)]
    dist = _distance(unary.shape[-1], unary, dist)
    for _ in range(sweeps):
        for colour in colours:
            best = local_costs(labels, unary, vert, horz, dist).argmin(-1)
            labels = torch.where(colour, best, labels)
    return labels


def solve(unary: Tensor, vert: Tensor, horz: Tensor, bp_iters: int | None = None, icm_sweeps: int = 2,
          dist: Tensor | str | None = None) -> Tensor:
    """Approximate minimiser (N, b, b) int64 of the grid energy; ``bp_iters`` defaults to 2·b; ``dist`` (L, L)
    replaces the PuzzleMix label distance, ``"potts"`` is [l_p ≠ l_q] with O(L) messages (unordered labels)."""
    b = unary.shape[1]
    if b == 1:
        return unary.argmin(-1)
    iters = 2 * b if bp_iters is None else bp_iters
    labels = belief_propagation(unary, vert, horz, iters, dist=dist).argmin(-1)
    return icm(labels, unary, vert, horz, icm_sweeps, dist)


def solve_exact(unary: Tensor, vert: Tensor, horz: Tensor, chunk: int = 1 << 16) -> Tensor:
    """Exact minimiser by enumerating all L^(b²) labellings (small grids only: tests and measurements)."""
    n, b, _, n_labels = unary.shape
    cells = b * b
    if n_labels ** cells > 5_000_000:
        raise ValueError(f"brute force over {n_labels}^{cells} labellings is too large")
    all_labels = torch.tensor(list(itertools.product(range(n_labels), repeat=cells)), device=unary.device)
    best_e = torch.full((n,), float("inf"), device=unary.device, dtype=unary.dtype)
    best = torch.zeros(n, b, b, dtype=torch.long, device=unary.device)
    for s in range(0, all_labels.shape[0], chunk):
        cand = all_labels[s:s + chunk].view(-1, b, b)
        k = cand.shape[0]
        e = energy(cand.repeat(n, 1, 1), unary.repeat_interleave(k, 0), vert.repeat_interleave(k, 0),
                   horz.repeat_interleave(k, 0)).view(n, k)
        val, arg = e.min(1)
        better = val < best_e
        best_e = torch.where(better, val, best_e)
        best = torch.where(better.view(n, 1, 1), cand[arg], best)
    return best
