"""SaliencyMix: a CutMix box centred on the partner's most salient pixel.

Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better Regularization",
ICLR 2021 (arXiv:2006.01791). Reference code: SaliencyMix/SaliencyMix ``SaliencyMix_CIFAR/saliencymix.py``;
OpenMixup ``openmixup/models/augments/saliencymix.py``.

Deviation, documented: the references call OpenCV's ``StaticSaliencyFineGrained`` on the CPU for one image
(a host round trip each step). mixbench computes the spectral-residual saliency of Hou & Zhang (CVPR 2007,
OpenCV's ``StaticSaliencySpectralResidual`` algorithm) on the device with ``torch.fft``: channel-mean grey
image resized to 64×64, log-amplitude minus its 3×3 box average, inverse FFT with the original phase,
squared magnitude, 5×5 Gaussian blur, resized back. Measured agreement with OpenCV 5.0 on the 16
scikit-image sample photos at 224 px (``benchmarks/saliency_agreement.py``): median Pearson correlation 0.93
with ``StaticSaliencySpectralResidual``; the fine-grained detector the references use is a different algorithm
(see ``docs/mixups/README.md`` for its numbers). Like OpenCV's, the spectral residual responds to the FFT's
wrap-around at the image border (4 of 4 noisy synthetic images peaked at a corner); ``window=True`` makes the
grey image mean-free and Hann-windowed before the FFT to remove that response (a mixbench option).
As in the references the box is centred on the saliency peak
of one partner image (``index[0]``) and shared by the batch; ``per_sample=True`` centres each sample's box on
its own partner's peak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, box_from_lam
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, sample_beta
from mixbench.mixups.cutmix import paste_boxes
from mixbench.registry import MIXUPS

_SR_SIZE = 64  # OpenCV's spectral-residual working resolution


def _gaussian_kernel(size: int, sigma: float, device: torch.device) -> Tensor:
    t = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-t * t / (2 * sigma * sigma))
    return k / k.sum()


def spectral_residual(images: Tensor, window: bool = False) -> Tensor:
    """(k, C, H, W) float images -> (k, H, W) spectral-residual saliency (Hou & Zhang, CVPR 2007), in [0, 1].

    ``window=True`` makes the grey image mean-free and Hann-windowed before the FFT, which removes the
    response of the FFT's wrap-around at the image border (see the module docstring)."""
    h, w = images.shape[-2:]
    grey = images.float().mean(dim=1, keepdim=True)
    grey = F.interpolate(grey, size=(_SR_SIZE, _SR_SIZE), mode="bilinear", align_corners=False)
    if window:
        win = torch.hann_window(_SR_SIZE, periodic=False, device=images.device)
        grey = (grey - grey.mean(dim=(2, 3), keepdim=True)) * (win.view(-1, 1) * win.view(1, -1))
    spec = torch.fft.fft2(grey)
    log_amp = torch.log(spec.abs().clamp_min(1e-12))
    # the spectrum is periodic (DC at the corner): average with circular padding
    residual = log_amp - F.avg_pool2d(F.pad(log_amp, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    sal = torch.fft.ifft2(torch.polar(torch.exp(residual), spec.angle())).abs().square()
    k = _gaussian_kernel(5, 8.0, images.device)  # OpenCV's 5×5 Gaussian, σ = 8
    sal = F.conv2d(F.pad(sal, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    sal = F.conv2d(F.pad(sal, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, -1, 1))
    sal = F.interpolate(sal, size=(h, w), mode="bilinear", align_corners=False).squeeze(1)
    sal = sal - sal.amin(dim=(1, 2), keepdim=True)
    return sal / sal.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def saliency_peak(images: Tensor, window: bool = False) -> tuple[Tensor, Tensor]:
    """(cy, cx) of each image's saliency maximum, int64 (k,)."""
    sal = spectral_residual(images, window)
    flat = sal.flatten(1).argmax(dim=1)
    return flat // sal.shape[-1], flat % sal.shape[-1]


@MIXUPS.register_module("saliencymix")
class SaliencyMix(SampledPolicy):
    """SaliencyMix (Uddin et al., ICLR 2021): CutMix box of area (1−λ) at the partner's saliency peak.

    Args:
        alpha: Beta(α, α) (official 1.0; OpenMixup CIFAR-100 0.2).
        prob: probability of mixing a batch (official CIFAR: 0.5).
        partner: ``perm`` (references), ``flip`` or ``roll``.
        per_sample: one λ and box per sample, each at its own partner's peak (references: one per batch).
        window: Hann-window the image before the FFT so the border does not look salient (see above).
    """

    tasks = ANY_TARGETS

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", per_sample: bool = False,
                 window: bool = False):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        self.per_sample = bool(per_sample)
        self.window = bool(window)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, n if self.per_sample else 1, ctx.generator, dev)
        return {"lam": lam, "index": self.partner_index(n, ctx, dev)}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor) -> MixBatch:
        """Deterministic op: saliency of ``inputs[index[0]]`` (or of every partner with (N,) λ), box, paste."""
        h, w = inputs.shape[-2:]
        sources = index if lam.numel() > 1 else index[:1]
        cy, cx = saliency_peak(inputs.index_select(0, sources), self.window)
        box = box_from_lam(lam, cy, cx, h, w, rounding="clovaai")
        return paste_boxes(inputs, labels, num_classes, index, box)
