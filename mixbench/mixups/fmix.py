"""FMix: masks from thresholded low-frequency Fourier noise.

Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv:2002.12047.
Reference code: ecs-vlc/FMix ``fmix.py``; OpenMixup ``openmixup/models/augments/fmix.py``.

The noise is built on the device with ``torch.fft.irfft2``: a complex Gaussian spectrum on the rfft grid,
scaled by ``1 / max(f, 1/max(H, W))^δ``, as the paper describes. Both reference codes deviate from that
description in how the spectrum array is turned into complex numbers: ecs-vlc reshapes the (…, 2) real/imag
axis into the frequency axis (real-valued coefficients, x-frequencies at half their scale), and OpenMixup's
port indexes the frequency axis instead of the real/imag axis (only two spectral rows survive, giving
stripe-like masks). The binarisation (top ``ceil``/``floor`` (λ·HW) pixels, random choice, optional linear
soft edge of ±``max_soft``·HW ranks) follows the reference. The label weight is the realised mask mean
(differs from the sampled λ by ≤ 1/HW, the reference returns the sampled λ).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, blend, per_sample
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.registry import MIXUPS


def spectrum_scale(height: int, width: int, decay_power: float, device: torch.device) -> Tensor:
    """(H, W//2+1) amplitude ``1 / max(|f|, 1/max(H, W))^δ`` on the rfft frequency grid."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(width, device=device, dtype=torch.float64).view(1, -1)
    f = torch.sqrt(fx * fx + fy * fy)
    return f.clamp_min(1.0 / max(height, width)).pow(-decay_power)


def low_freq_image(noise: Tensor, height: int, width: int, decay_power: float) -> Tensor:
    """(k, H, W) in [0, 1] from (k, 2, H, W//2+1) Gaussian real/imag parts."""
    scale = spectrum_scale(height, width, decay_power, noise.device)
    spec = torch.complex(noise[:, 0].double() * scale, noise[:, 1].double() * scale)
    img = torch.fft.irfft2(spec, s=(height, width))
    img = img - img.amin(dim=(1, 2), keepdim=True)
    return img / img.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)


def binarise(img: Tensor, lam: Tensor, round_up: Tensor, max_soft: float) -> Tensor:
    """(k, H, W) float mask: 1 on the top ``num`` pixels of ``img``, with a linear ramp of ±soft ranks.

    ``num = ceil(λ·HW)`` where ``round_up`` else ``floor(λ·HW)``; ``soft = int(HW·min(max_soft, λ, 1−λ))``
    when ``max_soft`` > 0. Ties are broken by ``argsort`` order.
    """
    k, h, w = img.shape
    size = h * w
    lam = lam.double().view(k, 1)
    num = torch.where(round_up.view(k, 1), torch.ceil(lam * size), torch.floor(lam * size))
    eff = torch.minimum(torch.minimum(lam, 1.0 - lam), torch.full_like(lam, max_soft))
    soft = torch.floor(size * eff) if max_soft > 0 else torch.zeros_like(lam)
    order = torch.argsort(img.reshape(k, size), dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(size, device=img.device).expand(k, size))
    rank = rank.double()
    lo, hi = num - soft, num + soft
    # linspace(1, 0, hi-lo) over ranks [lo, hi): 1 - (rank-lo)/(hi-lo-1); a single soft rank keeps value 1
    ramp = 1.0 - (rank - lo) / (hi - lo - 1).clamp_min(1.0)
    mask = torch.where(rank < lo, 1.0, torch.where(rank >= hi, 0.0, ramp))
    return mask.view(k, h, w)


@MIXUPS.register_module("fmix")
class FMix(SampledPolicy):
    """FMix (Harris et al., 2020): a binarised low-frequency Fourier mask of anchor area ≈ λ.

    Args:
        alpha: Beta(α, α) for λ (official 1.0; OpenMixup CIFAR-100 0.2).
        prob: probability of mixing a batch.
        partner: ``perm`` (references), ``flip`` or ``roll``.
        decay_power: δ, frequency decay of the spectrum (reference 3).
        max_soft: soft-edge width in [0, 0.5] (reference 0, binary masks).
        reformulate: λ ~ Beta(α+1, α) (the paper's reformulation; the loss is unchanged here).
        per_sample: one mask and λ per sample instead of one per batch (vectorised variant).
    """

    tasks = ANY_TARGETS

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", decay_power: float = 3.0,
                 max_soft: float = 0.0, reformulate: bool = False, per_sample: bool = False):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if not 0.0 <= max_soft <= 0.5:
            raise ValueError(f"max_soft: expected a value in [0, 0.5], got {max_soft}")
        self.decay_power = float(decay_power)
        self.max_soft = float(max_soft)
        self.reformulate = bool(reformulate)
        self.per_sample = bool(per_sample)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev, g = labels.shape[0], inputs.shape[-2:], inputs.device, ctx.generator
        k = n if self.per_sample else 1
        beta = self.alpha + 1.0 if self.reformulate else None
        lam = sample_beta(beta if beta is not None else self.alpha, k, g, dev, beta=self.alpha)
        noise = torch.randn((k, 2, h, w // 2 + 1), generator=g, device=dev)
        round_up = torch.rand(k, generator=g, device=dev) > 0.5
        return {"lam": lam, "noise": noise, "round_up": round_up, "index": self.partner_index(n, ctx, dev)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, noise: Tensor,
                 round_up: Tensor, index: Tensor) -> MixBatch:
        """Deterministic op: mask from (λ, spectrum noise, rounding coin); anchor where the mask is 1."""
        n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
        img = low_freq_image(noise, h, w, self.decay_power)
        anchor_map = binarise(img, lam, round_up, self.max_soft).float().unsqueeze(1)  # (k, 1, H, W)
        x = blend(inputs, index, anchor_map)
        weight = per_sample(anchor_map.mean(dim=(1, 2, 3)), n)
        return pair_batch(x, labels, num_classes, index, weight, mask=anchor_map.expand(n, 1, h, w))
