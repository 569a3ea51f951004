"""``mixbench visualize --mixup NAME [--out FILE.png]``: draw what a mixup policy does to a batch.

The figure has one column per sample and three rows: the originals, their partners, and the mixed images
with the label weights written under them. Images are scikit-image's sample photos (default) or the
scikit-learn digits; they are normalised before mixing, as in training, and shown de-normalised.
"""

from __future__ import annotations

import argparse
import io
import textwrap

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext
from mixbench.registry import MIXUPS, build

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def load_images(source: str, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(n, 3, size, size) float images in [0, 1], labels, class names."""
    if source == "skimage":
        import skimage.data
        imgs, names = [], []
        for name in SKIMAGE_PHOTOS[:n]:
            a = torch.as_tensor(np.asarray(getattr(skimage.data, name)()), dtype=torch.float32) / 255.0
            a = a.permute(2, 0, 1)
            s = min(a.shape[1:])  # centre square crop
            top, left = (a.shape[1] - s) // 2, (a.shape[2] - s) // 2
            a = a[:, top:top + s, left:left + s]
            imgs.append(F.interpolate(a[None], size=(size, size), mode="bilinear", antialias=True,
                                      align_corners=False)[0])
            names.append(name)
        return torch.stack(imgs), torch.arange(len(names)), names
    if source == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        pick = [int(np.flatnonzero(d.target == c)[0]) for c in range(n)]
        x = torch.as_tensor(d.images[pick], dtype=torch.float32)[:, None] / 16.0
        x = F.interpolate(x, size=(size, size), mode="nearest").repeat(1, 3, 1, 1)
        return x, torch.as_tensor(d.target[pick]), [str(c) for c in range(10)]
    raise ConfigError(f"--source: expected 'skimage' or 'digits', got {source!r}")


def parse_options(items: list[str]) -> dict:
    opts = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        opts[key] = yaml.safe_load(value)
    return opts


def draw(x: torch.Tensor, batch, names: list[str], title: str, out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = x.shape[0]
    rows = [("original", x), ("partner", x[batch.indices[1]] if batch.num_sources > 1 else x),
            ("mixed", batch.inputs)]
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 7.2), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(imgs[c].float().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=11)
            if r == 2:
                parts = [f"{float(w[c]):.2f} {names[int(batch.labels[i[c]])]}"
                         for i, w in zip(batch.indices, batch.weights) if float(w[c]) > 0]
                ax.set_xlabel("\n".join(parts), fontsize=8)
    if batch.layer is not None:
        title += f"  (features mixed after stage {batch.layer}; inputs unchanged)"
    fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=72, format="png")
    plt.close(fig)
    # a 256-colour palette keeps the committed gallery small
    from PIL import Image
    Image.open(buf).convert("RGB").quantize(256).save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mixbench visualize", description=__doc__.splitlines()[0])
    p.add_argument("--mixup", required=True, help="registered mixup policy name")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="policy options (YAML values)")
    p.add_argument("--config", help="a configs/mixup/NAME.yaml file to take the options from")
    p.add_argument("--source", default="skimage", help="skimage (default) or digits")
    p.add_argument("--n", type=int, default=4, help="number of samples (columns)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output PNG (default mixup_<NAME>.png)")
    args = p.parse_args(argv)
    cfg = {}
    if args.config:
        with open(args.config) as f:
            cfg = dict(yaml.safe_load(f) or {})
    cfg.update(parse_options(args.set))
    cfg["type"] = args.mixup
    policy = build(MIXUPS, cfg, "mixup", source=args.config or "")
    x, labels, names = load_images(args.source, args.n, args.size)
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    ctx = MixContext(generator=torch.Generator().manual_seed(args.seed))
    batch = policy((x - mean) / std, labels, len(names), ctx)
    batch.inputs = batch.inputs * std + mean
    opts = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "type")
    out = args.out or f"mixup_{args.mixup}.png"
    draw(x, batch, names, f"{args.mixup}({opts})", out)
    print(out)
    return 0
