"""Exact minimiser of the two-label grid energy by an s-t minimum cut (the case PuzzleMix's graph cut is exact).

Energy of a labelling l ∈ {0, 1}^{b×b} per sample, with non-negative pairwise weights (Potts):

    E(l) = Σ_p U[p, l_p] + Σ_{(p,q) vertical} V[p]·[l_p ≠ l_q] + Σ_{(p,q) horizontal} H[p]·[l_p ≠ l_q]

Graph (Kolmogorov & Zabih, PAMI 2004): one node per block, an edge s → p of capacity U[p, 1] − m_p and
p → t of capacity U[p, 0] − m_p (m_p = min(U[p, 0], U[p, 1]); a node on the source side takes label 0), and
the pairwise weight on both directions of every grid edge. The cut of a labelling then costs
E(l) − Σ_p m_p, so a minimum cut is a minimum of E. The whole batch is one disjoint graph solved by SciPy's
Dinic max-flow; the source side is the set of nodes that the residual graph still reaches from s.

Capacities must be integers: each sample is scaled by a power of two (exact in floating point) that maps its
largest capacity into [2^29, 2^30), then rounded. The labelling is exact for that quantised energy, i.e. up to
energy differences of about 2^-30 of the largest term, below float32 resolution. Ties are broken the same way
every time: the residual-reachable source side is the smallest source side among all minimum cuts, so a block
takes label 0 only where every minimum does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import breadth_first_order, maximum_flow
from torch import Tensor

CAPACITY_BITS = 30  # per-edge capacities stay below 2^30: SciPy stores capacities and flows as int32


def grid_edges(blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(E,) arrays of the node indices p, q of the vertical then horizontal edges of a b×b grid, in the
    row-major order of the (b−1, b) vertical and (b, b−1) horizontal weight arrays."""
    idx = np.arange(blocks * blocks).reshape(blocks, blocks)
    p = np.concatenate([idx[:-1, :].ravel(), idx[:, :-1].ravel()])
    q = np.concatenate([idx[1:, :].ravel(), idx[:, 1:].ravel()])
    return p, q


def _quantise(source: np.ndarray, sink: np.ndarray, pair: np.ndarray) -> tuple[np.ndarray, ...]:
    """Integer capacities: per sample (rows), scale by the power of two that puts the largest below 2^30."""
    top = np.maximum(np.maximum(source.max(1), sink.max(1)), pair.max(1, initial=0.0))
    exp = np.where(top > 0, CAPACITY_BITS - np.ceil(np.log2(np.where(top > 0, top, 1.0))), 0).astype(np.int64)
    # ceil(log2) may round the largest onto 2^30 itself; one bit less keeps every capacity below it.
    exp -= (np.ldexp(top, exp) >= 2.0 ** CAPACITY_BITS).astype(np.int64)
    return tuple(np.rint(np.ldexp(a, exp[:, None])).astype(np.int64) for a in (source, sink, pair))


def binary_mincut(unary: Tensor, vert: Tensor, horz: Tensor) -> Tensor:
    """Exact minimiser (N, b, b) int64 of the two-label grid energy (see the module docstring).

    Args:
        unary: (N, b, b, 2) cost of label 0 and label 1 per block.
        vert: (N, b−1, b) weights between block (r, c) and (r+1, c); must be ≥ 0.
        horz: (N, b, b−1) weights between block (r, c) and (r, c+1); must be ≥ 0.

    Returns:
        Labels on ``unary``'s device.
    """
    n, b, _, n_labels = unary.shape
    if n_labels != 2:
        raise ValueError(f"binary_mincut: expected 2 labels, got {n_labels}")
    u = unary.detach().to("cpu", torch.float64).numpy().reshape(n, b * b, 2)
    pair = np.concatenate([vert.detach().to("cpu", torch.float64).numpy().reshape(n, -1),
                           horz.detach().to("cpu", torch.float64).numpy().reshape(n, -1)], axis=1)
    if (pair < 0).any():
        raise ValueError("binary_mincut: pairwise weights must be >= 0 (a cut needs a submodular energy)")
    low = u.min(-1, keepdims=True)
    src_cap, sink_cap, pair_cap = _quantise(u[..., 1] - low[..., 0], u[..., 0] - low[..., 0], pair)
    nodes = b * b
    s, t = n * nodes, n * nodes + 1
    offset = (np.arange(n) * nodes)[:, None]
    p, q = grid_edges(b)
    grid = np.arange(nodes)[None, :] + offset
    rows = np.concatenate([np.full(n * nodes, s), grid.ravel(), (p + offset).ravel(), (q + offset).ravel()])
    cols = np.concatenate([grid.ravel(), np.full(n * nodes, t), (q + offset).ravel(), (p + offset).ravel()])
    data = np.concatenate([src_cap.ravel(), sink_cap.ravel(), pair_cap.ravel(), pair_cap.ravel()])
    keep = data > 0
    capacity = sp.csr_array((data[keep].astype(np.int32), (rows[keep], cols[keep])), shape=(t + 1, t + 1))
    flow = maximum_flow(capacity, s, t).flow
    residual = (capacity - flow).tocsr()
    residual.data = np.where(residual.data > 0, residual.data, 0)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, s, directed=True, return_predecessors=False)
    labels = np.ones(t + 1, dtype=np.int64)
    labels[reached] = 0
    return torch.from_numpy(labels[:s].reshape(n, b, b)).to(unary.device)
