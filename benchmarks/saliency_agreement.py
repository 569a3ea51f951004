"""Agreement of SaliencyMix's device saliency with OpenCV's detectors, and the boxes that result.

    python benchmarks/saliency_agreement.py --opencv-python PY [--sizes 32 224] [--out FILE.csv]
    python benchmarks/saliency_agreement.py --opencv-python PY --fixture tests/data/saliency_fine_grained.npz

opencv-contrib conflicts with the opencv-python that mmcv pulls in, so OpenCV runs in a separate interpreter
given by ``--opencv-python`` (any Python with ``opencv-contrib-python-headless`` and numpy).

Images at each size: the scikit-image sample photos (antialiased bilinear resize), the first 32 training
images of mixbench's ``digits`` (one channel) and 32 uniform-noise RGB images. The reference is OpenCV's
``StaticSaliencyFineGrained`` on the 8-bit image, with the references' ``(map * 255).astype("uint8")`` and
NumPy argmax. Each detector is scored against it: the fraction of maps equal to the reference's, the median
Pearson correlation of the maps, the fraction of identical peaks and the median peak distance in pixels;
and on its own: the fraction of peaks in the outer 2-pixel frame of the image (row or column 0 or 1 from
an edge) and the anchor weight after clipping (1 − box area / image area) of SaliencyMix boxes centred on
the peak, for the injected λ = 0.05, 0.10, …, 0.95 (mean, and the Kolmogorov-Smirnov distance of the
per-(image, λ) weights from the reference's).

Detectors: mixbench's ``fine_grained_saliency`` on the 8-bit image, and as the policy calls it on the
normalised batch (per-channel mean/std of the set): de-normalised with the preprocessor's statistics (in
training) or, without them (an API caller's tensor), stretched per channel by ``to_pixel_range``; the
spectral residual as
the policy calls it (``window`` off and on); OpenCV's spectral residual; and OpenCV's fine-grained detector on
the normalised float32 image, which is what the official SaliencyMix and OpenMixup code hand it
(``img.cpu().numpy().transpose(1, 2, 0)`` of a normalised tensor).

``--fixture`` writes the reference maps of a few dozen 32-px images and of a few 224-px ones, with the images,
for ``tests/test_saliency_fine_grained.py`` (CI has no OpenCV).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from _table import write_csv
from scipy.stats import ks_2samp

from mixbench.datasets.base import channel_stats
from mixbench.datasets.digits import digits
from mixbench.mixups._ops import box_from_lam
from mixbench.mixups._saliency import (
    fine_grained_saliency,
    spectral_residual,
    to_pixel_range,
)

NAMES = ("astronaut", "camera", "chelsea", "coffee", "coins", "horse", "hubble_deep_field",
         "immunohistochemistry", "moon", "page", "rocket", "text", "brick", "grass", "gravel", "clock")
LAMS = np.round(np.arange(0.05, 0.951, 0.05), 2)
N_SYNTH = 32  # digits and noise images per size
FRAME = 2  # "at the border": the peak lies in the outer FRAME rows or columns

# Runs in the OpenCV interpreter: argv = input .npz, output .npz. Fine-grained maps go through the
# references' uint8 conversion; spectral-residual maps are resized to the image (float).
OPENCV = r"""
import sys, numpy as np, cv2
src, out = np.load(sys.argv[1]), {"version": np.array(cv2.__version__)}
for key in src.files:
    fg, sr = [], []
    for im in src[key]:
        im = np.ascontiguousarray(im)
        ok, m = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(im)
        fg.append((m * 255).astype("uint8"))
        if im.dtype == np.uint8:
            ok, m = cv2.saliency.StaticSaliencySpectralResidual_create().computeSaliency(im)
            sr.append(cv2.resize(m.astype(np.float32), (im.shape[1], im.shape[0])))
    out[key + "/fine_grained"] = np.stack(fg)
    if sr:
        out[key + "/spectral_residual"] = np.stack(sr)
np.savez(sys.argv[2], **out)
"""


def photos(size: int) -> np.ndarray:
    """The scikit-image sample photos that ship with it, resized to size×size, uint8 N×H×W×3."""
    import skimage.data
    imgs = []
    for name in NAMES:
        try:
            a = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - a sample that needs a download is skipped
            continue
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        t = torch.as_tensor(a[..., :3]).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        imgs.append(t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return np.stack(imgs)


def image_sets(size: int) -> dict[str, np.ndarray]:
    """uint8 images as OpenCV reads them: N×H×W×3 (photos, noise) or N×H×W (digits)."""
    rng = np.random.default_rng(0)
    return {"photos": photos(size),
            "digits": digits("train", size=size).images[:N_SYNTH, 0].numpy(),
            "noise": rng.integers(0, 256, (N_SYNTH, size, size, 3), dtype=np.uint8)}


def nchw(imgs: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(imgs)
    return t[:, None] if t.dim() == 3 else t.permute(0, 3, 1, 2)


def normalised(imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch a policy sees, as the data preprocessor makes it: (x − mean) / std in float32 with the set's
    per-channel statistics (0..255 units); and those statistics, shaped as the preprocessor's buffers."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in channel_stats(imgs))
    return (imgs.float() - mean) / std, mean, std


def run_opencv(python: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/in.npz", **arrays)
        subprocess.run([python, "-c", OPENCV, f"{tmp}/in.npz", f"{tmp}/out.npz"], check=True)
        with np.load(f"{tmp}/out.npz") as z:
            return {k: z[k] for k in z.files}


def peaks(maps: np.ndarray) -> np.ndarray:
    """(N, 2) row, column of each map's first maximum (NumPy's argmax, as the references)."""
    flat = maps.reshape(len(maps), -1).argmax(1)
    return np.stack([flat // maps.shape[-1], flat % maps.shape[-1]], 1)


def anchor_weights(pk: np.ndarray, size: int) -> np.ndarray:
    """1 − box area / image area of the SaliencyMix box at each peak for each λ in LAMS, (N, len(LAMS))."""
    lam = torch.as_tensor(LAMS).repeat(len(pk))
    cy, cx = (torch.as_tensor(pk[:, i]).repeat_interleave(len(LAMS)) for i in (0, 1))
    y1, y2, x1, x2 = box_from_lam(lam, cy, cx, size, size, rounding="clovaai")
    return (1.0 - ((y2 - y1) * (x2 - x1)).double() / (size * size)).numpy().reshape(len(pk), len(LAMS))


def score(maps: np.ndarray, ref: np.ndarray, size: int) -> dict[str, float]:
    pk, rpk = peaks(maps), peaks(ref)
    a, b = maps.reshape(len(maps), -1).astype(np.float64), ref.reshape(len(ref), -1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant map has no correlation
        r = [np.corrcoef(u, v)[0, 1] for u, v in zip(a, b)]
    edge = np.minimum(np.minimum(pk[:, 0], pk[:, 1]), size - 1 - pk.max(1))
    aw, raw = anchor_weights(pk, size), anchor_weights(rpk, size)
    return {"n": len(maps), "map_equal": float(np.mean([np.array_equal(u, v) for u, v in zip(a, b)])),
            "pearson_median": float(np.nanmedian(r)), "same_peak": float(np.mean((pk == rpk).all(1))),
            "peak_dist_median_px": float(np.median(np.hypot(*(pk - rpk).T))),
            "border_2px": float(np.mean(edge < FRAME)), "anchor_weight_mean": float(aw.mean()),
            "anchor_weight_ks": float(ks_2samp(aw.ravel(), raw.ravel(), method="asymp").statistic)}


def measure(python: str, size: int) -> tuple[list[dict], str]:
    sets = image_sets(size)
    norm = {k: normalised(nchw(v)) for k, v in sets.items()}
    # the float32 HWC array of the normalised tensor, as the official code passes it
    floats = {k + "_float": (t[:, 0] if t.shape[1] == 1 else t.permute(0, 2, 3, 1)).numpy()
              for k, (t, _, _) in norm.items()}
    cv = run_opencv(python, {**sets, **floats})
    rows = []
    for name, imgs in sets.items():
        x, mean, std = norm[name]
        ref = cv[f"{name}/fine_grained"]
        detectors = {
            "mixbench fine_grained (8-bit image)": fine_grained_saliency(nchw(imgs)).numpy(),
            "mixbench fine_grained (policy, preprocessor mean/std)":
                fine_grained_saliency(to_pixel_range(x, mean, std)).numpy(),
            "mixbench fine_grained (policy, no statistics: stretched)":
                fine_grained_saliency(to_pixel_range(x)).numpy(),
            "mixbench spectral_residual (policy)": spectral_residual(x).numpy(),
            "mixbench spectral_residual window (policy)": spectral_residual(x, window=True).numpy(),
            "opencv spectral_residual (8-bit image)": cv[f"{name}/spectral_residual"],
            "opencv fine_grained (normalised float32, official code)": cv[f"{name}_float/fine_grained"],
            "opencv fine_grained (8-bit image, reference)": ref,
        }
        for det, maps in detectors.items():
            rows.append({"size": size, "images": name, "detector": det, **score(maps, ref, size)})
    return rows, str(cv["version"])


def wrap_image() -> np.ndarray:
    """A 64-px grey image on which on + off exceeds the larger of the two maxima at some pixel, so the last
    8-bit cast wraps: a mid-grey disc (radius 3) inside a dark disc (radius 9) near a corner of a bright
    ground. (1, 64, 64) uint8."""
    yy, xx = np.mgrid[:64, :64]
    d2 = (yy - 7) ** 2 + (xx - 8) ** 2
    img = np.full((64, 64), 245, np.uint8)
    img[d2 < 81] = 43
    img[d2 < 9] = 189
    return img[None]


def write_fixture(python: str, path: str) -> None:
    """Reference maps for tests/test_saliency_fine_grained.py, with their images: 16 photos, 16 digits and
    16 noise images at 32 px, ``wrap_image``; at 224 px, 2 digits and the first 4 photos enlarged 7× by pixel replication
    (the test rebuilds those from the 32-px photos). To keep the file small, a 224-px map is stored as its
    SHA-256 and its peak (row-major index)."""
    sets = image_sets(32)
    arrays = {f"{name}32": imgs[:16] for name, imgs in sets.items()}
    arrays["digits224"] = image_sets(224)["digits"][:2]
    arrays["photos224"] = sets["photos"][:4].repeat(7, axis=1).repeat(7, axis=2)
    arrays["wrap64"] = wrap_image()
    cv = run_opencv(python, arrays)
    out = {"opencv_version": cv["version"]}
    for key in arrays:
        maps = cv[f"{key}/fine_grained"]
        if maps.shape[-1] <= 64:
            out[key], out[f"{key}_map"] = arrays[key], maps
        else:
            out[f"{key}_sha256"] = np.array([hashlib.sha256(m.tobytes()).hexdigest() for m in maps])
            out[f"{key}_peak"] = maps.reshape(len(maps), -1).argmax(1)
    out["digits224"] = arrays["digits224"]
    np.savez_compressed(path, **out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--opencv-python", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    p.add_argument("--out", help="write the table as CSV here")
    p.add_argument("--fixture", help="write the test fixture (.npz) here instead of measuring")
    args = p.parse_args(argv)
    if args.fixture:
        write_fixture(args.opencv_python, args.fixture)
        return 0
    rows, version = [], ""
    for size in args.sizes:
        r, version = measure(args.opencv_python, size)
        rows += r
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()))
    if args.out:
        write_csv(args.out, [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
                  cols, f"# OpenCV {version} (opencv-contrib-python-headless), torch {torch.__version__}; "
                  f"λ = {LAMS[0]}..{LAMS[-1]} step 0.05 per image; border = peak in the outer {FRAME} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
