"""Co-Mixup (simplified): joint saliency-guided block assignment of groups of inputs to groups of outputs.

Kim et al., "Co-Mixup: Saliency Guided Joint Mixup with Supermodular Diversity", ICLR 2021
(arXiv:2102.03065). Reference: snu-mllab/Co-Mixup ``mixup.py``, ``match.py``, ``main.py`` (not in OpenMixup).

The batch is split into groups of ``m_part`` inputs; each group produces as many outputs, each a
``m_block_num``² block labelling over the group's inputs. Objective per group (minimised):
Σ_j [−Σ_p ŝ_{l_j(p)}(p) + β Σ_{p~q} [l_j(p) ≠ l_j(q)]] + γ Σ_{j≠j'} o_jᵀ A o_{j'}, with ŝ_i the block-pooled
input-gradient saliency of input i (signal ``saliency``) normalised to mean 1, o_j the area share of each input in
output j, and A = (1−ω)·I + ω·A_dist the compatibility (A_dist: normalised L1 distance of the saliency peaks).
Like the reference, the supermodular diversity term is modularised around the current solution and each
output's labelling is then re-solved, for ``m_niter`` rounds, starting from the diversity-free solution.

Simplification (documented, measured in ``benchmarks/step_speed.py``): each labelling is solved by the batched
on-device grid solver of PuzzleMix with a Potts distance instead of gco's α-β swap, and the reference's label
prior (η with the mixup α) and its over-penalisation threshold τ are left out. Labels: ỹ_j = Σ_i o_j(i)·y_i; the
sources of output j are the group's inputs, rotated so that source 0 is input j itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.errors import ConfigError
from mixbench.mixups._graphcut import solve
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, soft_targets
from mixbench.registry import MIXUPS


def compatibility(sal_blocks: Tensor, omega: float) -> Tensor:
    """(G, m, m) A = (1−ω)I + ω·A_dist from the saliency peak positions of each group's inputs."""
    g, m, b, _ = sal_blocks.shape
    peak = sal_blocks.flatten(2).argmax(-1)
    pos = torch.stack([peak // b, peak % b], -1).float()
    dist = (pos[:, :, None] - pos[:, None, :]).abs().sum(-1) / max(2 * (b - 1), 1)
    eye = torch.eye(m, device=sal_blocks.device)
    return (1 - omega) * eye + omega * dist


def assign(sal_blocks: Tensor, beta: float, gamma: float, omega: float, niter: int, noise: Tensor) -> Tensor:
    """Block labellings (G, m, b, b) int64: output j of group g takes block p from input labels[g, j, p].
    ``noise`` (G, m_out, b, b, m_in) breaks the symmetry between outputs (all start from the same gains)."""
    g, m, b, _ = sal_blocks.shape
    dev = sal_blocks.device
    gain = sal_blocks.permute(0, 2, 3, 1).unsqueeze(1) + noise  # (G, m_out, b, b, m_in)
    comp = compatibility(sal_blocks, omega)
    potts = 1.0 - torch.eye(m, device=dev)
    vert = torch.full((g * m, b - 1, b), beta, device=dev)
    horz = torch.full((g * m, b, b - 1), beta, device=dev)
    labels = solve(-gain.reshape(g * m, b, b, m), vert, horz, dist=potts).view(g, m, b, b)
    for _ in range(niter):
        usage = F.one_hot(labels, m).float().mean((2, 3))  # (G, m_out, m_in)
        others = usage.sum(1, keepdim=True) - usage  # usage by the other outputs
        penalty = gamma * torch.einsum("gjk,gik->gji", others, comp)  # (G, m_out, m_in)
        unary = -gain + penalty.view(g, m, 1, 1, m)
        labels = solve(unary.reshape(g * m, b, b, m), vert, horz, dist=potts).view(g, m, b, b)
    return labels


@MIXUPS.register_module("comixup")
class CoMixup(MixPolicy):
    """Co-Mixup (Kim et al., ICLR 2021), simplified joint assignment (see the module docstring).

    Args:
        m_part: group size (reference 20).
        m_block_num: blocks per side of each output (reference 4).
        m_beta: label smoothness β (reference 0.32).
        m_gamma: diversity weight γ (reference 1.0).
        m_omega: compatibility mixing ω (reference 0.001).
        m_niter: modularisation rounds (reference 4).
        noise: uniform noise on the block gains, in units of the mean block saliency (1) (breaks the
            symmetry between outputs, which the reference breaks by solving them one after another).
        prob: probability of mixing a batch.
    """

    needs = ("saliency",)

    def __init__(self, m_part: int = 20, m_block_num: int = 4, m_beta: float = 0.32, m_gamma: float = 1.0,
                 m_omega: float = 0.001, m_niter: int = 4, noise: float = 0.5, prob: float = 1.0):
        super().__init__(alpha=1.0, prob=prob, partner="perm")
        if m_part < 2 or m_block_num < 1 or m_niter < 1:
            raise ValueError("m_part >= 2, m_block_num >= 1 and m_niter >= 1 are required")
        self.m_part, self.m_block_num = int(m_part), int(m_block_num)
        self.m_beta, self.m_gamma, self.m_omega, self.m_niter = float(m_beta), float(m_gamma), float(m_omega), int(m_niter)
        self.noise = float(noise)

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, b, m = labels.shape[0], self.m_block_num, min(self.m_part, labels.shape[0])
        noise = torch.rand(n, b, b, m, generator=ctx.generator, device=inputs.device) * self.noise
        return self.mix_with(inputs, labels, num_classes, ctx.signal("saliency"), noise)

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, saliency: Tensor, noise: Tensor) -> MixBatch:
        """Deterministic Co-Mixup from a saliency map (N, H, W) and symmetry-breaking noise (N, b, b, m_part)."""
        n, c, h, w = inputs.shape
        b = self.m_block_num
        if h % b or w % b:
            raise ConfigError(f"mixup.m_block_num: {b} blocks do not tile a {h}×{w} image")
        pooled = F.adaptive_avg_pool2d(saliency.float().unsqueeze(1), b).squeeze(1)
        pooled = pooled / pooled.flatten(1).mean(1).clamp_min(1e-12).view(n, 1, 1)  # mean 1 per input
        out = torch.empty_like(inputs)
        grid = torch.empty(n, b, b, dtype=torch.long, device=inputs.device)
        start = 0
        chunks = [(n // self.m_part, self.m_part), (1, n % self.m_part)]
        for groups, size in [(g, s) for g, s in chunks if g > 0 and s > 0]:
            stop = start + groups * size
            sal = pooled[start:stop].view(groups, size, b, b)
            nz = noise[start:stop, ..., :size].reshape(groups, size, b, b, size)
            lab = assign(sal, self.m_beta, self.m_gamma, self.m_omega, self.m_niter, nz) if size > 1 else \
                torch.zeros(groups, 1, b, b, dtype=torch.long, device=inputs.device)
            pix = F.interpolate(lab.float().view(groups * size, 1, b, b), size=(h, w), mode="nearest").long()
            xs = inputs[start:stop].view(groups, size, c, h, w)
            src = pix.view(groups, size, 1, h, w).expand(groups, size, c, h, w)
            # output j's pixel comes from input src of the same group: gather along the input axis
            flat = xs.reshape(groups, size, c * h * w)
            pos = torch.arange(c * h * w, device=inputs.device).view(1, 1, -1)
            picked = flat.view(groups, size * c * h * w).gather(1, (src.reshape(groups, size, -1) * c * h * w + pos)
                                                                  .view(groups, -1))
            out[start:stop] = picked.view(groups * size, c, h, w)
            grid[start:stop] = lab.view(groups * size, b, b) + start + torch.arange(groups, device=inputs.device).view(
                groups, 1, 1, 1).mul(size).expand(groups, size, 1, 1).reshape(groups * size, 1, 1)
            start = stop
        return self.labels_from_grid(out, labels, num_classes, grid)

    def labels_from_grid(self, mixed: Tensor, labels: Tensor, num_classes: int, grid: Tensor) -> MixBatch:
        """Sources rotated per group so that source 0 of row r is r itself; weights = area shares."""
        n = labels.shape[0]
        dev = labels.device
        rows = torch.arange(n, device=dev)
        part = self.m_part
        base = (rows // part) * part
        size = torch.clamp(n - base, max=part)
        indices, weights = [], []
        for k in range(min(part, n)):
            idx = base + (rows - base + k) % size
            indices.append(idx)
            weights.append((grid == idx.view(-1, 1, 1)).float().flatten(1).mean(1))
        return MixBatch(inputs=mixed, targets=soft_targets(labels, indices, weights, num_classes), labels=labels,
                        indices=indices, weights=weights, extras={"grid": grid})
