"""GridMix against a transcription of the reference mask builder (IlyaDobrynin/GridMixup, OpenMixup), same draws.

The draws follow OpenMixup's ranges: λ ~ Beta(α, α), ``n_holes`` uniform over [2, 6], hole aspect 1, crop
area ratio U(0.5, 1), crop aspect U(0.5, 2), crop position U(0, 1)². For each draw the reference mask is
built hole by hole with Python slices, exactly as the reference writes it (negative offsets included), and
with the slices clipped to the image; mixbench's ``edges: reference`` is compared with the first and its
default ``edges: clip`` with the second. Reports, per image size, the share of crops that do not fit in the
image, the share of equal masks, and the mean anchor weight (1 − hole share) of each.

    python benchmarks/gridmix_crop.py --draws 20000
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from mixbench.mixups.gridmix import grid_holes


def reference_holes(height: int, width: int, lam: float, n_holes: int, hole_aspect: float, cut_area: float,
                    cut_aspect: float, ux: float, uy: float, clip: bool = False) -> np.ndarray:
    """(H, W) bool hole mask as the reference computes it; ``clip`` clamps the slices to the image instead
    of letting negative starts count from the far edge."""
    area = int(height * width * cut_area)
    cut_w = int(np.sqrt(area / cut_aspect))
    cut_h = int(cut_w * cut_aspect)
    xc, yc = int((width - cut_w) * ux), int((height - cut_h) * uy)
    patch_w = math.ceil(cut_w / n_holes)
    patch_h = int(patch_w * hole_aspect)
    ratio = np.sqrt(1 - lam)
    hole_w = min(max(int(patch_w * ratio), 1), patch_w - 1)
    hole_h = min(max(int(patch_h * ratio), 1), patch_h - 1)
    mask = np.zeros((height, width), dtype=bool)
    for i in range(n_holes + 1):
        for j in range(math.ceil(cut_h / patch_h) + 1):
            x1, y1 = min(patch_w * i, cut_w), min(patch_h * j, cut_h)
            x2, y2 = min(x1 + hole_w, cut_w), min(y1 + hole_h, cut_h)
            rows, cols = slice(yc + y1, yc + y2), slice(xc + x1, xc + x2)
            if clip:
                rows, cols = slice(max(yc + y1, 0), max(yc + y2, 0)), slice(max(xc + x1, 0), max(xc + x2, 0))
            mask[rows, cols] = True
    return mask


def draw(rng: np.random.RandomState, alpha: float) -> dict:
    """One set of the reference's draws at OpenMixup's ranges."""
    return {"lam": rng.beta(alpha, alpha), "n_holes": int(rng.randint(2, 7)), "hole_aspect": 1.0,
            "cut_area": rng.uniform(0.5, 1.0), "cut_aspect": rng.uniform(0.5, 2.0), "ux": rng.random_sample(),
            "uy": rng.random_sample()}


def mixbench_holes(height: int, width: int, d: dict, edges: str = "clip") -> np.ndarray:
    """mixbench's hole mask for the same draws."""
    shape = {k: torch.tensor([float(d[k])], dtype=torch.float64)
             for k in ("n_holes", "hole_aspect", "cut_area", "cut_aspect", "ux", "uy")}
    return grid_holes(shape, torch.tensor([d["lam"]]), height, width, edges)[0, 0].numpy()


def measure(size: int, draws: int, alpha: float, seed: int) -> dict:
    """Per mode pair (mixbench ``edges``, reference slicing): share of equal masks and mean anchor weights."""
    rng = np.random.RandomState(seed)
    pairs = {"clip": "clip", "reference": "python"}
    outside, same = 0, dict.fromkeys(pairs, 0)
    weight = {f"{side}_{mode}": 0.0 for side in ("mixbench", "reference") for mode in pairs}
    for _ in range(draws):
        d = draw(rng, alpha)
        cut_w = int(np.sqrt(int(size * size * d["cut_area"]) / d["cut_aspect"]))
        outside += cut_w > size or int(cut_w * d["cut_aspect"]) > size
        for edges, slicing in pairs.items():
            ours = mixbench_holes(size, size, d, edges)
            ref = reference_holes(size, size, **d, clip=slicing == "clip")
            same[edges] += bool((ref == ours).all())
            weight[f"mixbench_{edges}"] += 1 - ours.mean()
            weight[f"reference_{edges}"] += 1 - ref.mean()
    return {"size": size, "draws": draws, "crop_outside": outside / draws,
            **{f"same_{edges}": v / draws for edges, v in same.items()},
            **{f"anchor_weight_{k}": v / draws for k, v in weight.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = [measure(size, args.draws, args.alpha, args.seed) for size in (32, 224)]
    print(" | ".join(rows[0]))
    for row in rows:
        print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
