"""Agreement of SaliencyMix's device saliency with OpenCV's saliency detectors (the reference uses OpenCV's
``StaticSaliencyFineGrained``; mixbench implements the spectral-residual algorithm of
``StaticSaliencySpectralResidual`` in torch).

    python benchmarks/saliency_agreement.py --opencv-python /path/to/python-with-opencv-contrib [--size 224] [--window]

opencv-contrib conflicts with the opencv-python that mmcv pulls in, so OpenCV runs in a separate interpreter
given by ``--opencv-python`` (any Python with ``opencv-contrib-python-headless`` and numpy). Images: the
scikit-image sample photos. Per image and detector: the distance between the saliency peaks (as a fraction of
the image diagonal), the IoU of the SaliencyMix boxes (λ = 0.5) centred on them, and the Pearson correlation
of the two maps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from mixbench.mixups._ops import box_from_lam
from mixbench.mixups.saliencymix import spectral_residual

NAMES = ("astronaut", "camera", "chelsea", "coffee", "coins", "horse", "hubble_deep_field",
         "immunohistochemistry", "moon", "page", "rocket", "text", "brick", "grass", "gravel", "clock")

OPENCV = r"""
import sys, json, numpy as np, cv2
imgs = np.load(sys.argv[1])
out = {}
for name, det in (("spectral_residual", cv2.saliency.StaticSaliencySpectralResidual_create),
                  ("fine_grained", cv2.saliency.StaticSaliencyFineGrained_create)):
    maps = []
    for im in imgs:
        ok, m = det().computeSaliency(np.ascontiguousarray(im))
        maps.append(cv2.resize(m.astype(np.float32), (im.shape[1], im.shape[0])))
    np.save(sys.argv[2] + name + ".npy", np.stack(maps))
"""


def load(size: int) -> tuple[list[str], np.ndarray]:
    import skimage.data
    names, imgs = [], []
    for name in NAMES:
        try:
            a = np.asarray(getattr(skimage.data, name)())
        except Exception:  # noqa: BLE001 - a sample that needs a download is skipped
            continue
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = a[..., :3]
        t = torch.as_tensor(a).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        imgs.append(t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
        names.append(name)
    return names, np.stack(imgs)


def box(peak: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    lam = torch.tensor([0.5])
    y1, y2, x1, x2 = box_from_lam(lam, torch.tensor([peak[0]]), torch.tensor([peak[1]]), size, size)
    return int(y1), int(y2), int(x1), int(x2)


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ih = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    iw = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = ih * iw
    area = lambda r: (r[1] - r[0]) * (r[3] - r[2])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--opencv-python", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--window", action="store_true", help="SaliencyMix's window=True variant")
    args = p.parse_args(argv)
    names, imgs = load(args.size)
    ours = spectral_residual(torch.as_tensor(imgs).permute(0, 3, 1, 2).float() / 255, args.window).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/imgs.npy", imgs)
        subprocess.run([args.opencv_python, "-c", OPENCV, f"{tmp}/imgs.npy", f"{tmp}/"], check=True)
        ref = {k: np.load(f"{tmp}/{k}.npy") for k in ("spectral_residual", "fine_grained")}
    diag = float(np.hypot(args.size, args.size))
    peak = lambda m: np.unravel_index(int(np.argmax(m)), m.shape)  # noqa: E731
    summary = {}
    print(f"{'image':>22} {'detector':>28} {'peak_dist':>9} {'box_iou':>8} {'pearson':>8}")
    # the last pair is the baseline: how much OpenCV's two detectors agree with each other
    pairs = [("mixbench~spectral_residual", ours, ref["spectral_residual"]),
             ("mixbench~fine_grained", ours, ref["fine_grained"]),
             ("opencv_sr~fine_grained", ref["spectral_residual"], ref["fine_grained"])]
    for det, mine, maps in pairs:
        rows = []
        for name, a, b in zip(names, mine, maps):
            pa, pb = peak(a), peak(b)
            d = float(np.hypot(pa[0] - pb[0], pa[1] - pb[1])) / diag
            r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
            rows.append((d, iou(box(pa, args.size), box(pb, args.size)), r))
            print(f"{name:>22} {det:>28} {d:9.3f} {rows[-1][1]:8.3f} {r:8.3f}")
        med = np.nanmedian(np.array(rows), axis=0)  # a constant map has no correlation
        summary[det] = {"n": len(rows), "median_peak_dist": round(float(med[0]), 3),
                        "median_box_iou": round(float(med[1]), 3), "median_pearson": round(float(med[2]), 3)}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
