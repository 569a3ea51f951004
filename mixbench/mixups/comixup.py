"""Co-Mixup: joint saliency-guided block assignment of groups of inputs to groups of outputs.

Kim et al., "Co-Mixup: Saliency Guided Joint Mixup with Supermodular Diversity", ICLR 2021
(arXiv:2102.03065). Reference: snu-mllab/Co-Mixup ``mixup.py``, ``match.py``, ``main.py`` (not in OpenMixup).

The batch is split into groups of ``m_part`` inputs; each group produces as many outputs, each a
``m_block_num``² (= b²) block labelling l_j over the group's inputs. With c_jk the number of blocks output j takes
from input k, the energy of a group (minimised, the reference's ``obj_fn_thres`` with the compatibility A) is

    Σ_j Σ_p U_{l_j(p)}(p) + β/b² Σ_j Σ_{p~q} [l_j(p) ≠ l_j(q)] + γ/b² Σ_{j,k} [P_jk > τb²]·P_jk·c_jk,
    U_k(p) = −ŝ_k(p) − η/b²·log π_k,   P_j = A·Σ_{j'≠j} c_{j'},

with ŝ_k the block-pooled input-gradient saliency (signal ``saliency``) normalised to sum 1 per input, π ~
Dirichlet(α) drawn once per group (the label prior), A = (1−ω)I + ω·A_dist (A_dist: L1 distance between the
saliency peaks, scaled to sum m per group) and τ the over-penalisation threshold. The diversity term is zero
until the other outputs together use more than τ of an input, then it grows with their use: each input ends up
spread over about one output's worth of blocks, which keeps the outputs diverse. As in the reference it is
minimised from a random labelling by block-coordinate descent over the outputs: output j's labelling is re-solved
with the diversity term modularised around the others (unary + 2γ/b²·[P_j > τb²]·P_j), ``m_niter`` rounds.

Differences from the reference (measured in ``benchmarks/comixup_solver_agreement.py``):

* each output's labelling is solved by the batched on-device grid solver of PuzzleMix (``_graphcut.solve`` with
  a Potts distance) instead of gco's α-β swap, for all groups at once;
* the outputs of a group are re-solved in ``m_sweeps`` slots per round (outputs j ≡ s mod ``m_sweeps`` together,
  given the others), not one after another, so that a round is ``m_sweeps`` solver calls whatever the group size;
  ``m_sweeps = m_part`` is the reference's sequential order;
* the reference's later-round extension with half/half blocks of two already-used inputs and its early stop
  are left out: every block comes from one input and the number of rounds is fixed (no host syncs);
* its ``resolve_label`` tie-break (``set_resolve``) is opt-in (``m_resolve``), not on by default.

Identical outputs are expected at these settings: the hard threshold makes the diversity term zero while the
other outputs use at most τb² blocks of each input, so two outputs taking the same salient blocks cost nothing
more than one. Measured on small groups they are often the lowest energy found (``docs/mixups/dynamic.md``).
The reference's tie-break separates some of them in the last round, at a measured cost in energy.

Labels: ỹ_j = Σ_k (c_jk / b²)·y_k, each source's realised area. The sources of output j are its group's inputs,
rotated so that source 0 is input j itself; in a smaller last group the extra sources have weight 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.errors import ConfigError
from mixbench.mixups._graphcut import solve
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, OneHotTargets, sample_gamma
from mixbench.ranges import COUNT, NON_NEGATIVE, POSITIVE, UNIT, Range
from mixbench.registry import MIXUPS


def compatibility(saliency: Tensor, omega: float) -> Tensor:
    """(G, m, m) A = (1−ω)I + ω·A_dist from saliency maps (G, m, H, W): A_dist is the L1 distance between the
    peaks of the saliency smoothed over a quarter-side window (8 px on 32² in the reference), summing to m."""
    g, m, h, w = saliency.shape
    k = max(min(h, w) // 4, 1)
    z = F.avg_pool2d(saliency.reshape(g * m, 1, h, w), k, stride=1).view(g, m, -1)
    side = w - k + 1
    peak = z.argmax(-1)
    pos = torch.stack([peak // side, peak % side], -1).float()
    dist = (pos[:, :, None] - pos[:, None, :]).abs().sum(-1)
    dist = dist / dist.sum((1, 2), keepdim=True).clamp_min(1e-12) * m
    return (1 - omega) * torch.eye(m, device=saliency.device) + omega * dist


def block_counts(labels: Tensor, m: int) -> Tensor:
    """(G, m_out, m_in) number of blocks each output takes from each input."""
    return F.one_hot(labels.flatten(2), m).float().sum(2)


def diversity_cost(others: Tensor, comp: Tensor, gamma: float, thres: float) -> Tensor:
    """γ/b²·[P > τb²]·P per block of each input (already divided by b² through ``gamma``), P = A·others."""
    pen = torch.einsum("gjk,gik->gji", others, comp)
    return gamma * (pen > thres).float() * pen


def comix_energy(labels: Tensor, unary: Tensor, comp: Tensor, beta: float, gamma: float, thres: float) -> Tensor:
    """Energy (G,) of block labellings (G, m_out, b, b) for unaries (G, m_in, b, b) in the module docstring's
    units (β, γ, τ as configured: divided by / multiplied with b² here)."""
    g, m, b, _ = labels.shape
    cells = b * b
    e = unary.permute(0, 2, 3, 1).unsqueeze(1).expand(g, m, b, b, m).gather(-1, labels.unsqueeze(-1)).sum((1, 2, 3, 4))
    cuts = (labels[:, :, 1:] != labels[:, :, :-1]).sum((1, 2, 3)) + (labels[..., 1:] != labels[..., :-1]).sum((1, 2, 3))
    counts = block_counts(labels, m)
    others = counts.sum(1, keepdim=True) - counts
    div = (diversity_cost(others, comp, gamma / cells, thres * cells) * counts).sum((1, 2))
    return e + beta / cells * cuts.float() + div


def resolve_cost(counts: Tensor) -> Tensor:
    """(G, m_out, m_in) 0/1 extra cost of the reference's ``resolve_label``: for each pair j < j' of outputs
    using the same set of (at least two) inputs, j pays on the first input of the set and j' on the second."""
    used = (counts > 0).float()
    same = (used.unsqueeze(2) - used.unsqueeze(1)).abs().sum(-1) == 0  # (G, m_out, m_out)
    pair = torch.triu(same, 1) & (used.sum(-1) > 1).unsqueeze(-1)
    rank = used.cumsum(-1) * used  # 1 at the first used input, 2 at the second
    first = pair.any(2).unsqueeze(-1) & (rank == 1)
    second = pair.any(1).unsqueeze(-1) & (rank == 2)
    return (first | second).float()


def assign(unary: Tensor, comp: Tensor, init: Tensor, beta: float, gamma: float, thres: float, niter: int,
           sweeps: int, solver=solve, resolve: bool = False) -> Tensor:
    """Block labellings (G, m_out, b, b) int64 by block-coordinate descent from ``init``: each round re-solves
    the outputs j ≡ s (mod ``sweeps``) for s = 0..sweeps−1 given the current labellings of the others.
    ``resolve``: the last round adds γ/b²·``resolve_cost`` of the labellings after the round before (the
    reference's ``set_resolve``), which separates outputs the energy leaves identical."""
    g, m, b, _ = unary.shape
    cells = b * b
    dev = unary.device
    base = unary.permute(0, 2, 3, 1)  # (G, b, b, m_in)
    labels = init.clone()
    counts = block_counts(labels, m)
    slots = [torch.arange(s, m, sweeps, device=dev) for s in range(min(sweeps, m))]
    extra = torch.zeros_like(counts)
    for r in range(niter):
        if resolve and r == niter - 1 and r > 0:
            extra = resolve_cost(counts) * (gamma / cells)
        for idx in slots:
            k = idx.numel()
            others = counts.sum(1, keepdim=True) - counts.index_select(1, idx)  # (G, k, m_in)
            # 2γ: the derivative of the pairwise (symmetric) diversity term around the others' labellings
            mod = diversity_cost(others, comp, 2 * gamma / cells, thres * cells) + extra.index_select(1, idx)
            u = (base.unsqueeze(1) + mod.view(g, k, 1, 1, m)).reshape(g * k, b, b, m)
            vert = torch.full((g * k, b - 1, b), beta / cells, device=dev)
            horz = torch.full((g * k, b, b - 1), beta / cells, device=dev)
            new = solver(u, vert, horz, dist="potts").view(g, k, b, b)
            labels = labels.index_copy(1, idx, new)
            counts = counts.index_copy(1, idx, block_counts(new, m))
    return labels


@MIXUPS.register_module("comixup")
class CoMixup(MixPolicy):
    """Co-Mixup (Kim et al., ICLR 2021); see the module docstring for the objective and the differences.

    Args:
        m_part: group size (reference 20).
        m_block_num: blocks per side of each output (reference 4).
        m_beta: label smoothness β (reference 0.32).
        m_gamma: diversity weight γ (reference 1.0).
        m_eta: label prior weight η (reference 0.05).
        m_thres: over-penalisation threshold τ, a share of one input (reference 0.83, ``hard``).
        m_omega: compatibility mixing ω (reference 0.001).
        m_niter: rounds of block-coordinate descent (reference 4).
        m_sweeps: slots per round; the outputs of a slot are re-solved together (≥ ``m_part``: one output at a
            time, the reference's order and the default; fewer is faster but overshoots the diversity threshold,
            see ``benchmarks/comixup_solver_agreement.py``).
        m_resolve: the reference's ``set_resolve`` tie-break of outputs using the same inputs in the last round
            (off by default: it raises the energy, see the benchmark).
        alpha: Dirichlet concentration of the label prior (the reference's ``mixup_alpha``, 2.0 on CIFAR-100).
        prob: probability of mixing a batch.
    """

    needs = ("saliency",)

    # energy weights are non-negative; τ is a share of one input and ω a convex weight, both in [0, 1]; a group
    # mixes at least two inputs
    ranges = {"alpha": POSITIVE, "m_part": Range(2), "m_block_num": COUNT, "m_beta": NON_NEGATIVE,
              "m_gamma": NON_NEGATIVE, "m_eta": NON_NEGATIVE, "m_thres": UNIT, "m_omega": UNIT, "m_niter": COUNT,
              "m_sweeps": COUNT}

    def __init__(self, m_part: int = 20, m_block_num: int = 4, m_beta: float = 0.32, m_gamma: float = 1.0,
                 m_eta: float = 0.05, m_thres: float = 0.83, m_omega: float = 0.001, m_niter: int = 4,
                 m_sweeps: int = 20, m_resolve: bool = False, alpha: float = 2.0, prob: float = 1.0):
        super().__init__(alpha=alpha, prob=prob, partner="perm")
        if m_part < 2 or m_block_num < 1 or m_niter < 1 or m_sweeps < 1:
            raise ValueError("m_part >= 2, m_block_num >= 1, m_niter >= 1 and m_sweeps >= 1 are required")
        self.m_part, self.m_block_num = int(m_part), int(m_block_num)
        self.m_beta, self.m_gamma, self.m_eta = float(m_beta), float(m_gamma), float(m_eta)
        self.m_thres, self.m_omega = float(m_thres), float(m_omega)
        self.m_niter, self.m_sweeps, self.m_resolve = int(m_niter), int(m_sweeps), bool(m_resolve)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, b, dev = labels.shape[0], self.m_block_num, inputs.device
        m = min(self.m_part, n)
        prior = sample_gamma(self.alpha, (n,), ctx.generator, dev)  # normalised per group into Dirichlet(α)
        init = torch.randint(m, (n, b, b), generator=ctx.generator, device=dev)
        return self.mix_with(inputs, labels, num_classes, ctx.signal("saliency"), prior, init)

    def groups(self, n: int) -> list[tuple[int, int, int]]:
        """(start, number of groups, group size) chunks: full groups, then the smaller last one."""
        full, rest = divmod(n, self.m_part)
        chunks = [(0, full, self.m_part)] if full else []
        return chunks + ([(full * self.m_part, 1, rest)] if rest else [])

    def unaries(self, saliency: Tensor, prior: Tensor) -> Tensor:
        """(G, m, b, b) U = −ŝ − η/b²·log π for saliency (G, m, H, W) and Gamma(α) draws (G, m)."""
        g, m = prior.shape
        b = self.m_block_num
        pooled = F.adaptive_avg_pool2d(saliency.reshape(g * m, 1, *saliency.shape[-2:]), b).view(g, m, b, b)
        pooled = pooled / pooled.sum((2, 3), keepdim=True).clamp_min(1e-12)
        pi = prior / prior.sum(1, keepdim=True).clamp_min(1e-30)
        return -pooled - self.m_eta / (b * b) * torch.log(pi + 1e-8).view(g, m, 1, 1)

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, saliency: Tensor, prior: Tensor,
                 init: Tensor) -> MixBatch:
        """Deterministic Co-Mixup from saliency (N, H, W), Gamma(α) draws (N,) and an initial labelling
        (N, b, b) with values below the group size."""
        n, c, h, w = inputs.shape
        b = self.m_block_num
        if h % b or w % b:
            raise ConfigError(f"mixup.m_block_num: {b} blocks do not tile a {h}×{w} image")
        out = torch.empty_like(inputs)
        grid = torch.empty(n, b, b, dtype=torch.long, device=inputs.device)
        for start, g, m in self.groups(n):
            stop = start + g * m
            sal = saliency[start:stop].float().view(g, m, h, w)
            lab = torch.zeros(g, 1, b, b, dtype=torch.long, device=inputs.device) if m == 1 else assign(
                self.unaries(sal, prior[start:stop].view(g, m)), compatibility(sal, self.m_omega),
                init[start:stop].view(g, m, b, b) % m, self.m_beta, self.m_gamma, self.m_thres, self.m_niter,
                self.m_sweeps, resolve=self.m_resolve)
            # output j's block p comes from input lab[g, j, p] of the same group
            pix = lab.repeat_interleave(h // b, 2).repeat_interleave(w // b, 3)  # (G, m, H, W)
            src = (pix + torch.arange(g, device=inputs.device).view(g, 1, 1, 1) * m + start).view(-1, 1, h, w)
            out[start:stop] = inputs.gather(0, src.expand(-1, c, h, w))
            grid[start:stop] = src[:, 0, ::h // b, ::w // b]
        return self.labels_from_grid(out, labels, num_classes, grid)

    def labels_from_grid(self, mixed: Tensor, labels: Tensor, num_classes: int, grid: Tensor) -> MixBatch:
        """Sources rotated per group so that source 0 of row r is r itself; weights = realised area shares."""
        n = labels.shape[0]
        rows = torch.arange(n, device=labels.device)
        base = (rows // self.m_part) * self.m_part
        size = torch.clamp(n - base, max=self.m_part)
        indices, weights = [], []
        for k in range(min(self.m_part, n)):
            idx = base + (rows - base + k) % size
            indices.append(idx)
            # in the smaller last group rotation k ≥ size repeats an input: weight 0 so it counts once
            share = (grid == idx.view(-1, 1, 1)).float().flatten(1).mean(1)
            weights.append(share * (size > k).float())
        return MixBatch(inputs=mixed, labels=labels, indices=indices, weights=weights,
                        builder=OneHotTargets(num_classes), extras={"grid": grid})
