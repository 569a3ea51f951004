"""FMix: masks from thresholded low-frequency Fourier noise.

Harris et al., "FMix: Enhancing Mixed Sample Data Augmentation", arXiv:2002.12047.
Reference code: ecs-vlc/FMix ``fmix.py``; OpenMixup ``openmixup/models/augments/fmix.py``.

Two spectra, both built on the device:

* ``spectrum="paper"`` (default): a complex Gaussian on the whole rfft grid, scaled by
  ``1 / max(f, 1/max(H, W))^δ``, as the paper describes.
* ``spectrum="reference"``: the generator of the official code, which OpenMixup copies unchanged (the two give
  the same mask from the same draws). It scales an (H, W//2+1, 2) Gaussian array and then forms
  ``spectrum[:, 0] + 1j·spectrum[:, 1]``, which indexes the y-frequency axis, not the real/imag axis: the
  first two rows (y-frequencies 0 and 1/H) become the real and imaginary parts of an array that the inverse
  FFT reads as (y-frequency, x-frequency) = (W//2+1, 2). Power is therefore kept only in the x-frequencies 0
  and 1/W, at the non-negative y-frequencies j/H, j ≤ W//2, each with the amplitude that 1/f^δ gives the
  x-frequency j/W: every mask row is at most one period of a cosine across the width, so the masks are
  horizontal bands. Only those 4·(W//2+1) draws matter, so only they are drawn.

The binarisation (top ``ceil``/``floor`` (λ·HW) pixels, random choice, optional linear soft edge of
±``max_soft``·HW ranks) follows the reference. The label weight is the realised mask mean (differs from the
sampled λ by ≤ 1/HW, the reference returns the sampled λ).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, blend, per_sample
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, pair_batch, sample_beta
from mixbench.ranges import POSITIVE, Range
from mixbench.registry import MIXUPS


def spectrum_scale(height: int, width: int, decay_power: float, device: torch.device) -> Tensor:
    """(H, W//2+1) amplitude ``1 / max(|f|, 1/max(H, W))^δ`` on the rfft frequency grid."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(width, device=device, dtype=torch.float64).view(1, -1)
    f = torch.sqrt(fx * fx + fy * fy)
    return f.clamp_min(1.0 / max(height, width)).pow(-decay_power)


def _unit_range(img: Tensor) -> Tensor:
    """Shift and scale each (H, W) image of ``img`` to [0, 1]."""
    img = img - img.amin(dim=(1, 2), keepdim=True)
    return img / img.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)


def low_freq_image(noise: Tensor, height: int, width: int, decay_power: float) -> Tensor:
    """(k, H, W) in [0, 1] from (k, 2, H, W//2+1) Gaussian real/imag parts (the paper's spectrum)."""
    scale = spectrum_scale(height, width, decay_power, noise.device)
    spec = torch.complex(noise[:, 0].double() * scale, noise[:, 1].double() * scale)
    return _unit_range(torch.fft.irfft2(spec, s=(height, width)))


def reference_rows(width: int) -> int:
    """Length of the reference's x-frequency axis: ``W//2+1``, or ``W//2+2`` for odd W (its ``fftfreqnd``)."""
    return width // 2 + (2 if width % 2 else 1)


def reference_low_freq_image(noise: Tensor, height: int, width: int, decay_power: float) -> Tensor:
    """(k, H, W) in [0, 1] from (k, 2, R, 2) Gaussian draws, as the official code and OpenMixup build it.

    ``noise[:, r, j, m]`` is the reference's ``param[0, r, j, m]`` (y-frequency row r ∈ {0, 1}, x-frequency
    j < R = :func:`reference_rows`, last axis m); row 0 becomes the real part and row 1 the imaginary part of
    an (R, 2) array that ``irfftn`` reads with R along y and 2 along x.
    """
    rows = noise.shape[2]
    fy = torch.fft.fftfreq(height, device=noise.device, dtype=torch.float64)[:2].view(2, 1)
    fx = torch.fft.fftfreq(width, device=noise.device, dtype=torch.float64)[:rows].view(1, -1)
    scale = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / max(height, width)).pow(-decay_power)
    coef = noise.double() * scale.view(1, 2, rows, 1)
    spec = torch.fft.ifft(torch.complex(coef[:, 0], coef[:, 1]), n=height, dim=1)  # (k, H, 2)
    # A real inverse FFT ignores the imaginary part of the x-frequency-0 bin (numpy's pocketfft does); drop it
    # explicitly so that every FFT backend agrees.
    spec = torch.stack([spec[..., 0].real.to(spec.dtype), spec[..., 1]], dim=-1)
    return _unit_range(torch.fft.irfft(spec, n=width, dim=2))


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


SPECTRA = {"paper": low_freq_image, "reference": reference_low_freq_image}


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
        spectrum: ``paper`` (complex Gaussian on the rfft grid) or ``reference`` (the official/OpenMixup
            generator, power in the two lowest x-frequencies only; see the module docstring).
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    # the spectrum must decay (δ > 0); a soft edge wider than half the mask would cover all of it
    ranges = {"alpha": POSITIVE, "decay_power": POSITIVE, "max_soft": Range(0, 0.5)}

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", decay_power: float = 3.0,
                 max_soft: float = 0.0, reformulate: bool = False, per_sample: bool = False,
                 spectrum: str = "paper"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if not 0.0 <= max_soft <= 0.5:
            raise ValueError(f"max_soft: expected a value in [0, 0.5], got {max_soft}")
        if spectrum not in SPECTRA:
            raise ValueError(f"spectrum: expected one of {sorted(SPECTRA)}, got {spectrum!r}")
        self.spectrum = spectrum
        self.decay_power = float(decay_power)
        self.max_soft = float(max_soft)
        self.reformulate = bool(reformulate)
        self.per_sample = bool(per_sample)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, (h, w), dev, g = labels.shape[0], inputs.shape[-2:], inputs.device, ctx.generator
        k = n if self.per_sample else 1
        beta = self.alpha + 1.0 if self.reformulate else None
        lam = sample_beta(beta if beta is not None else self.alpha, k, g, dev, beta=self.alpha)
        shape = (k, 2, h, w // 2 + 1) if self.spectrum == "paper" else (k, 2, reference_rows(w), 2)
        noise = torch.randn(shape, generator=g, device=dev)
        round_up = torch.rand(k, generator=g, device=dev) > 0.5
        return {"lam": lam, "noise": noise, "round_up": round_up, "index": self.partner_index(n, ctx, dev)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, noise: Tensor,
                 round_up: Tensor, index: Tensor, inplace: bool = False) -> MixBatch:
        """Deterministic op: mask from (λ, spectrum noise, rounding coin); anchor where the mask is 1."""
        n, h, w = labels.shape[0], inputs.shape[-2], inputs.shape[-1]
        img = SPECTRA[self.spectrum](noise, h, w, self.decay_power)
        anchor_map = binarise(img, lam, round_up, self.max_soft).float().unsqueeze(1)  # (k, 1, H, W)
        x = blend(inputs, index, anchor_map, inplace)
        weight = per_sample(anchor_map.mean(dim=(1, 2, 3)), n)
        return pair_batch(x, labels, num_classes, index, weight, mask=anchor_map.expand(n, 1, h, w))
