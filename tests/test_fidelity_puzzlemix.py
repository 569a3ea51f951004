"""The exact two-label PuzzleMix labelling (s-t minimum cut) against brute-force enumeration and networkx."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import mixbench.mixups.puzzlemix as puzzlemix
from mixbench.mixups._graphcut import energy, solve, solve_exact
from mixbench.mixups._mincut import binary_mincut
from mixbench.mixups.puzzlemix import PuzzleMix, puzzle_energy, solve_labels


def random_instance(n, b, seed, integer=False):
    g = torch.Generator().manual_seed(seed)
    if integer:  # small integers: many exact ties
        return (torch.randint(0, 3, (n, b, b, 2), generator=g).double(),
                torch.randint(0, 2, (n, b - 1, b), generator=g).double(),
                torch.randint(0, 2, (n, b, b - 1), generator=g).double())
    draw = lambda *s: torch.rand(s, generator=g, dtype=torch.float64)  # noqa: E731
    return draw(n, b, b, 2), draw(n, b - 1, b) * 0.6, draw(n, b, b - 1) * 0.6


def all_energies(unary, vert, horz):
    """(N, 2^(b²)) energy of every labelling, written out from the definition (unary of the chosen label,
    plus the weight of every grid edge whose ends differ), and the (2^(b²), b, b) labellings."""
    b = unary.shape[1]
    cand = torch.tensor(list(itertools.product((0, 1), repeat=b * b)), dtype=torch.float64)
    idx = torch.arange(b * b).view(b, b)
    p = torch.cat([idx[:-1].flatten(), idx[:, :-1].flatten()])
    q = torch.cat([idx[1:].flatten(), idx[:, 1:].flatten()])
    u = unary.double().flatten(1, 2)  # (N, b², 2)
    w = torch.cat([vert.double().flatten(1), horz.double().flatten(1)], 1)  # (N, edges) in p, q order
    e = u[..., 0].sum(1, keepdim=True) + (u[..., 1] - u[..., 0]) @ cand.T + w @ (cand[:, p] != cand[:, q]).double().T
    return e, cand.long().view(-1, b, b)


@pytest.mark.parametrize("b", [2, 3, 4])
def test_mincut_equals_brute_force(b):
    unary, vert, horz = random_instance(40, b, seed=b)
    e, cand = all_energies(unary, vert, horz)
    torch.testing.assert_close(binary_mincut(unary, vert, horz), cand[e.argmin(1)], rtol=0, atol=0)


@pytest.mark.parametrize("b", [3, 4])
def test_mincut_ties_take_the_smallest_label0_set(b):
    """With exact ties (integer costs) the cut is the same every time: label 0 exactly where every minimum
    has label 0 (the intersection of the optimal label-0 sets, itself optimal)."""
    unary, vert, horz = random_instance(60, b, seed=10 + b, integer=True)
    e, cand = all_energies(unary, vert, horz)
    optimal = e == e.min(1, keepdim=True).values
    assert (optimal.sum(1) > 1).float().mean() > 0.2  # the instances do have ties
    label0_everywhere = torch.stack([(cand[opt] == 0).all(0) for opt in optimal])
    expected = (~label0_everywhere).long()
    got = binary_mincut(unary, vert, horz)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(energy(got, unary, vert, horz), e.min(1).values)
    torch.testing.assert_close(binary_mincut(unary, vert, horz), got, rtol=0, atol=0)  # deterministic


def test_mincut_is_scale_free_and_keeps_tiny_terms():
    """Capacities are scaled per sample by a power of two: rescaling an instance by 2^±40 changes nothing,
    and a sample of tiny costs next to one of large costs is solved at its own resolution."""
    unary, vert, horz = random_instance(20, 4, seed=3)
    base = binary_mincut(unary, vert, horz)
    for s in (2.0 ** -40, 2.0 ** 40):
        torch.testing.assert_close(binary_mincut(unary * s, vert * s, horz * s), base, rtol=0, atol=0)
    mixed = torch.tensor([1e-9] * 10 + [1e6] * 10, dtype=torch.float64)
    got = binary_mincut(unary * mixed.view(-1, 1, 1, 1), vert * mixed.view(-1, 1, 1), horz * mixed.view(-1, 1, 1))
    torch.testing.assert_close(got, base, rtol=0, atol=0)


def test_mincut_matches_networkx_on_large_grids():
    nx = pytest.importorskip("networkx")
    unary, vert, horz = random_instance(6, 8, seed=4)
    got = energy(binary_mincut(unary, vert, horz), unary, vert, horz)
    for i in range(unary.shape[0]):
        g = nx.DiGraph()
        u, v, h = unary[i].tolist(), vert[i].tolist(), horz[i].tolist()
        for r, c in itertools.product(range(8), range(8)):
            low = min(u[r][c])
            g.add_edge("s", (r, c), capacity=u[r][c][1] - low)
            g.add_edge((r, c), "t", capacity=u[r][c][0] - low)
            if r < 7:
                g.add_edge((r, c), (r + 1, c), capacity=v[r][c])
                g.add_edge((r + 1, c), (r, c), capacity=v[r][c])
            if c < 7:
                g.add_edge((r, c), (r, c + 1), capacity=h[r][c])
                g.add_edge((r, c + 1), (r, c), capacity=h[r][c])
        cut, _ = nx.minimum_cut(g, "s", "t")
        offset = sum(min(x) for row in u for x in row)
        assert abs(float(got[i]) - (cut + offset)) < 1e-9


def test_negative_weights_fall_back_to_the_approximate_solver():
    unary, vert, horz = random_instance(6, 3, seed=5)
    vert[2, 0, 0] = -0.5
    with pytest.raises(ValueError, match="pairwise weights must be >= 0"):
        binary_mincut(unary, vert, horz)
    got = solve_labels(unary, vert, horz, None, 2)
    keep = torch.tensor([True, True, False, True, True, True])
    torch.testing.assert_close(got[keep], binary_mincut(unary[keep], vert[keep], horz[keep]), rtol=0, atol=0)
    torch.testing.assert_close(got[2], solve(unary, vert, horz)[2], rtol=0, atol=0)


@pytest.mark.parametrize("n_labels", [2, 3])
def test_puzzlemix_solves_two_labels_exactly(monkeypatch, n_labels):
    """PuzzleMix calls the cut for 2 labels (and only then), and its mask is the brute-force optimum."""
    calls = []
    monkeypatch.setattr(puzzlemix, "binary_mincut", lambda *a: calls.append(a) or binary_mincut(*a))
    g = torch.Generator().manual_seed(0)
    n, blocks = 6, 4
    x = F.avg_pool2d(torch.rand(n, 3, 19, 19, generator=g), 4, stride=1)  # 16 px, smooth, in [0, 1]
    sal = torch.rand(n, 16, 16, generator=g) ** 4
    lam, index = torch.rand(n, generator=g), torch.randperm(n, generator=g)
    policy = PuzzleMix(n_labels=n_labels, transport=False)
    out = policy.mix_with(x, torch.zeros(n, dtype=torch.long), 3, sal, lam, index, blocks)
    assert len(calls) == (n_labels == 2)
    if n_labels == 2:
        unary, vert, horz, _ = puzzle_energy(sal, x, index, lam, blocks, policy.beta, policy.gamma, policy.eta,
                                             policy.neigh_size, 2)
        mask = F.interpolate((1 - solve_exact(unary, vert, horz).float()).unsqueeze(1), size=16, mode="nearest")
        torch.testing.assert_close(out.mask, mask, rtol=0, atol=0)
