"""SaliencyMix: a CutMix box centred on the partner's most salient pixel.

Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better Regularization",
ICLR 2021 (arXiv:2006.01791). Reference code: SaliencyMix/SaliencyMix ``SaliencyMix_CIFAR/saliencymix.py``;
OpenMixup ``openmixup/models/augments/saliencymix.py``.

Saliency: as in the references, OpenCV's ``StaticSaliencyFineGrained`` (Montabone & Soto 2010), but
computed on the device, vectorised over the batch and without a host round trip
(``mixbench/mixups/_saliency.py``). On 8-bit images its maps equal OpenCV's bit for bit (4.5.5, 4.10.0 and
5.1.0 checked), so the peak, the box and λ are the reference's. In training the policy reads the 8-bit
image back from the normalised batch with the data preprocessor's mean and std; an API caller's tensor
without them is stretched per channel onto 0…255. Measured with ``benchmarks/saliency_agreement.py`` (table
in ``benchmarks/results/saliency_agreement.csv``; 16 scikit-image photos, 32 digits, 32 noise images,
λ = 0.05 … 0.95): in training, maps, peaks and anchor weights equal OpenCV's on every image at 32 and
224 px; without statistics the maps correlate at ≥ 0.999 (median) and the mean anchor weight is within
0.015 of OpenCV's. The peak lies in the outer 2 px of a 32-px image for 38 % of photos and 47 % of noise
images, as OpenCV's; the mean anchor weight at 32 px is 0.71 on photos (OpenCV 0.71).

``saliency="spectral_residual"`` keeps mixbench's former detector (Hou & Zhang, CVPR 2007, OpenCV's
``StaticSaliencySpectralResidual`` algorithm, with ``torch.fft``). It is not the references' detector: its
FFT's wrap-around makes the border salient (peak in the outer 2 px of 94 % of 32-px photos, mean anchor
weight 0.84 against 0.71), and ``window=True`` (mean-free, Hann-windowed grey image) over-corrects (0 % at
the border, 0.56).

The official code hands OpenCV the *normalised float32* tensor (``img.cpu().numpy().transpose(1, 2, 0)``).
For a float image the detector takes its centre values from the raw bytes of the float grey image
(``gray.at<uchar>(y, x)`` on a float ``Mat`` in ``staticSaliencyFineGrained.cpp``), so those maps are
unrelated to the image's saliency: median Pearson 0.00 with the 8-bit map, no peak in common, median peak
distance 12 px on 32-px photos (same table; 19 % at the border, mean anchor weight 0.69). mixbench follows
the detector as designed and as OpenCV computes it on images, not that accident.

As in the references the box is centred on the saliency peak of one partner image (``index[0]``) and shared
by the batch; ``per_sample=True`` centres each sample's box on its own partner's peak.
"""

from __future__ import annotations

from torch import Tensor

from mixbench.mixups._ops import SampledPolicy, box_from_lam
from mixbench.mixups._saliency import (
    fine_grained_saliency,
    spectral_residual,
    to_pixel_range,
)
from mixbench.mixups.base import ANY_TARGETS, MixBatch, MixContext, sample_beta
from mixbench.mixups.cutmix import paste_boxes
from mixbench.ranges import POSITIVE
from mixbench.registry import MIXUPS

SALIENCY = ("fine_grained", "spectral_residual")


def saliency_peak(images: Tensor, saliency: str = "fine_grained", window: bool = False,
                  mean: Tensor | None = None, std: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(cy, cx) of each image's saliency maximum, int64 (k,); ties go to the first pixel in row-major order,
    as NumPy's ``argmax`` in the references.

    ``fine_grained`` reads the images in 0…255 grey levels: de-normalised with the per-channel ``mean`` and
    ``std`` (0…255 units) when given, else stretched (``to_pixel_range``). ``window`` applies to
    ``spectral_residual`` only."""
    if saliency == "fine_grained":
        sal = fine_grained_saliency(to_pixel_range(images, mean, std))
    else:
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
        per_sample: one λ and box per sample, each at its own partner's peak (references: one per batch);
            this computes one saliency map per sample.
        saliency: ``fine_grained`` (the references' OpenCV detector, on the device) or ``spectral_residual``
            (Hou & Zhang 2007; mixbench's former default).
        window: ``spectral_residual`` only: Hann-window the image before the FFT so that the FFT's
            wrap-around does not make the border salient.
    """

    writes_inputs = True
    tasks = ANY_TARGETS

    ranges = {"alpha": POSITIVE}

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", per_sample: bool = False,
                 saliency: str = "fine_grained", window: bool = False):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        if saliency not in SALIENCY:
            raise ValueError(f"saliency: expected one of {SALIENCY}, got {saliency!r}")
        if window and saliency != "spectral_residual":
            raise ValueError(f"window: applies only to saliency='spectral_residual', got saliency={saliency!r}")
        self.per_sample = bool(per_sample)
        self.saliency = saliency
        self.window = bool(window)

    def sample(self, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, n if self.per_sample else 1, ctx.generator, dev)
        # the preprocessor's statistics give the detector the 8-bit image back (see _saliency.to_pixel_range)
        pre = getattr(ctx.model, "data_preprocessor", None)
        mean, std = getattr(pre, "mean", None), getattr(pre, "std", None)
        stats = {"mean": mean, "std": std} if isinstance(mean, Tensor) and isinstance(std, Tensor) else {}
        return {"lam": lam, "index": self.partner_index(n, ctx, dev), **stats}

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, lam: Tensor, index: Tensor,
                 mean: Tensor | None = None, std: Tensor | None = None, inplace: bool = False) -> MixBatch:
        """Deterministic op: saliency of ``inputs[index[0]]`` (or of every partner with (N,) λ), box, paste.

        ``mean``/``std``: the per-channel normalisation of ``inputs`` (0…255 units), if known."""
        h, w = inputs.shape[-2:]
        sources = index if lam.numel() > 1 else index[:1]
        cy, cx = saliency_peak(inputs.index_select(0, sources), self.saliency, self.window, mean, std)
        box = box_from_lam(lam, cy, cx, h, w, rounding="clovaai")
        return paste_boxes(inputs, labels, num_classes, index, box, inplace=inplace)
