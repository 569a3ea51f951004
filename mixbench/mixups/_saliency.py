"""Model-free image saliency for SaliencyMix, computed on the batch's device.

``fine_grained_saliency`` is the static fine-grained saliency of Montabone & Soto ("Human detection using a
mobile platform and novel features derived from a visual saliency mechanism", Image and Vision Computing,
2010), step for step as OpenCV's ``cv2.saliency.StaticSaliencyFineGrained`` computes it, which is what the
SaliencyMix references call:

1. grey image: OpenCV's ``COLOR_BGR2GRAY`` on 8-bit pixels (fixed point, 16 fraction bits). The references
   hand OpenCV an RGB array, so the "blue" weight 0.114 falls on channel 0 (red) and 0.299 on channel 2;
   mixbench weights the channels the same way. One channel is used as it is; other channel counts use
   the channel mean (a mixbench choice, OpenCV has no conversion for them);
2. two 3×3 Gaussian blurs (σ from the size: taps 1/4, 1/2, 1/4), reflect-101 border, each rounded to 8 bits;
3. for each of six neighbourhood sizes n ∈ {12, 24, 48, 28, 56, 112}: the mean of the window of rows
   ``y−n+1 … y+n`` and columns ``x−n+1 … x+n`` (a 2n×2n box, cut at the image border, read from one integral
   image) without the centre pixel; "on" = max(centre − mean, 0) and "off" = max(mean − centre, 0), each
   truncated to an integer;
4. on and off are summed over the six scales and each sum is rescaled to 0…255 by its maximum (truncated);
5. the map is 255·(on + off) / max(max on, max off), truncated and wrapped to 8 bits like OpenCV's
   ``(uchar)`` cast of a double.

Every step is integer-valued, or float32 where OpenCV computes in float, so on 8-bit images the map equals
OpenCV's bit for bit while the window sums stay below 2²⁴ (images up to 256×256; OpenCV's float32
integral image rounds beyond that). ``tests/test_saliency_fine_grained.py`` checks this against maps that
OpenCV produced.

``spectral_residual`` is Hou & Zhang's spectral residual (CVPR 2007; OpenCV's
``StaticSaliencySpectralResidual``), mixbench's former SaliencyMix default, kept as an option.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# OpenCV's 8-bit COLOR_BGR2GRAY weights of channels 0, 1, 2 (0.114, 0.587, 0.299 in units of 2^-16)
_GREY_WEIGHTS = (7470, 38470, 19596)
_GREY_SHIFT = 16
# OpenCV's neighbourhoods: 3·4·{1, 2, 4} and 7·4·{1, 2, 4}; the window is 2n pixels on a side
NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)
_SR_SIZE = 64  # OpenCV's spectral-residual working resolution


def to_pixel_range(images: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
    """A normalised batch back in 0…255 grey levels, for ``fine_grained_saliency``.

    With the data preprocessor's per-channel ``mean`` and ``std`` (0…255 units) the normalisation is undone,
    which recovers the 8-bit image exactly. Without them (an API caller's own tensor) each channel of each
    image is stretched affinely onto 0…255 by its own minimum and maximum: the result does not depend on the
    per-channel normalisation, and it is the 8-bit image itself when every channel spans 0…255; otherwise
    the map differs from the 8-bit image's only through the 8-bit roundings (measured in
    ``benchmarks/results/saliency_agreement.csv``)."""
    x = images.float()
    if mean is not None and std is not None:
        return x * std.to(x).view(1, -1, 1, 1) + mean.to(x).view(1, -1, 1, 1)
    lo = x.amin(dim=(2, 3), keepdim=True)
    span = x.amax(dim=(2, 3), keepdim=True) - lo
    return (x - lo) * (255.0 / span.clamp_min(1e-12))


def _grey(images: Tensor) -> Tensor:
    """(k, C, H, W) intensities in 0…255 -> (k, H, W) int32 grey levels, as OpenCV's 8-bit conversion."""
    pix = images.float().round().clamp(0, 255).to(torch.int32)
    if pix.shape[1] == 3:  # Python-int weights: no host-to-device copy
        wsum = sum(pix[:, c] * wc for c, wc in enumerate(_GREY_WEIGHTS))
        return (wsum + (1 << (_GREY_SHIFT - 1))) >> _GREY_SHIFT
    if pix.shape[1] == 1:
        return pix[:, 0]
    return images.float().clamp(0, 255).mean(dim=1).round().to(torch.int32)


def _reflect101(n: int, device: torch.device) -> Tensor:
    """Indices 1, 0, 1, …, n−1, n−2: one pixel of OpenCV's BORDER_REFLECT_101 on each side."""
    idx = torch.arange(-1, n + 1, device=device).abs()
    return torch.where(idx > n - 1, 2 * (n - 1) - idx, idx).clamp(0, n - 1)


def _blur3(grey: Tensor) -> Tensor:
    """OpenCV's 8-bit 3×3 GaussianBlur (σ = 0): taps (1, 2, 1)/4 per axis, reflect-101, rounded half up.

    Integer shifts and adds rather than a convolution: exact on every device (a float convolution may run
    in TF32 on CUDA)."""
    h, w = grey.shape[-2:]
    p = grey.index_select(1, _reflect101(h, grey.device))
    p = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    p = p.index_select(2, _reflect101(w, grey.device))
    p = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]
    return (p + 8) >> 4


def _rescale(total: Tensor) -> Tensor:
    """OpenCV's ``(uchar)(255. * (float)(v / (float)max))`` per image; an all-zero map stays zero."""
    peak = total.amax(dim=(1, 2), keepdim=True).float()
    q = total.float() / peak.clamp_min(1.0)  # float32 division, as OpenCV's
    return (255.0 * q.double()).to(torch.int32)  # the cast truncates


def fine_grained_saliency(images: Tensor) -> Tensor:
    """(k, C, H, W) intensities in 0…255 -> (k, H, W) uint8 fine-grained saliency (see the module docstring).

    Float inputs are rounded and clipped to 8 bits first, as a uint8 image would be; use
    ``to_pixel_range`` for normalised images. Vectorised over the batch, no host synchronisation."""
    h, w = images.shape[-2:]
    dev = images.device
    grey = _blur3(_blur3(_grey(images)))
    # the window sums of OpenCV's integral image, as two 1-D prefix sums (rows, then columns of each band of
    # rows), exact in integers (OpenCV's integral is float32; int32 while the image sum fits)
    acc = torch.int32 if h * w * 255 < 2**31 else torch.int64
    cum_rows = F.pad(grey.to(acc).cumsum(1, dtype=acc), (0, 0, 1, 0))
    centre = grey.float()
    on_total = torch.zeros_like(grey)
    off_total = torch.zeros_like(grey)
    ys = torch.arange(h, device=dev)
    xs = torch.arange(w, device=dev)
    for n in NEIGHBOURHOODS:
        y1, y2 = (ys - n + 1).clamp(0, h), (ys + n + 1).clamp(0, h)
        x1, x2 = (xs - n + 1).clamp(0, w), (xs + n + 1).clamp(0, w)
        band = cum_rows.index_select(1, y2) - cum_rows.index_select(1, y1)  # rows y1 … y2−1 of each column
        cum = F.pad(band.cumsum(2, dtype=acc), (1, 0))
        box = cum.index_select(2, x2) - cum.index_select(2, x1)
        area = ((y2 - y1).view(-1, 1) * (x2 - x1).view(1, -1) - 1).float()
        mean = (box.float() - centre) / area  # float32 as in OpenCV: the centre is left out of the mean
        diff = centre - mean
        # float -> integer casts truncate toward zero, as OpenCV's (uchar) casts
        on_total += diff.clamp_min(0).to(torch.int32)
        off_total += (-diff).clamp_min(0).to(torch.int32)
    on, off = _rescale(on_total), _rescale(off_total)
    top = torch.maximum(on.amax(dim=(1, 2), keepdim=True), off.amax(dim=(1, 2), keepdim=True)).double()
    mixed = (255.0 * (on + off).double() / top.clamp_min(1.0)).to(torch.int64)
    # on + off can exceed the larger maximum; OpenCV's (uchar) cast keeps the low 8 bits
    return (mixed & 255).to(torch.uint8)


def _gaussian_kernel(size: int, sigma: float, device: torch.device) -> Tensor:
    t = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-t * t / (2 * sigma * sigma))
    return k / k.sum()


def spectral_residual(images: Tensor, window: bool = False) -> Tensor:
    """(k, C, H, W) float images -> (k, H, W) spectral-residual saliency (Hou & Zhang, CVPR 2007), in [0, 1].

    Channel-mean grey image resized to 64×64, log-amplitude minus its 3×3 box average, inverse FFT with the
    original phase, squared magnitude, 5×5 Gaussian blur, resized back. ``window=True`` makes the grey image
    mean-free and Hann-windowed before the FFT, which removes the response of the FFT's wrap-around at the
    image border."""
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
