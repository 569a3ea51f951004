"""``mixbench visualize --mixup NAME [--out FILE.png]``: draw what a mixup policy does to a batch.

``mixbench visualize --reliability RUN_DIR|CONFIG [--checkpoint PATH]`` draws a trained classifier's
reliability diagram instead (:mod:`mixbench.cli.visualize_reliability`).

The figure has one column per sample and three rows: the originals, their partners, and the mixed images
with the label weights written under them. Model-free policies mix natural photos that scikit-image ships
(``--source photos``, the default; e.g. ``--size 224`` for ImageNet size) or the scikit-learn digits
(``--source digits``); images are normalised before mixing, as in training, and shown de-normalised, each
image pixel at least one figure pixel.
"""

from __future__ import annotations

import argparse
import io
import os
import textwrap
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from mixbench.cli.visualize_learned import draw_learned, learned_picture
from mixbench.cli.visualize_model import reads_model, run_model_step
from mixbench.errors import ConfigError
from mixbench.mixups.base import MixContext
from mixbench.mixups.learned.base import LearnedMixer
from mixbench.registry import MIXUPS, build

# Natural photos in scikit-image's own data folder (no download): the astronaut, a coffee cup, a cat, a
# rocket on its pad, a motorcycle (left view of the stereo pair) and the grey cameraman (shown as RGB).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "camera")
SOURCES = ("photos", "digits")
DPI = 72  # of the saved figure


def _photo(name: str) -> np.ndarray:
    """One of :data:`PHOTOS` as an H×W×3 uint8 array."""
    try:
        import skimage.data
    except ImportError:  # a dev extra: training never needs it
        raise ConfigError("--source photos needs scikit-image (pip install scikit-image, or mixbench[dev]); "
                          "--source digits needs only scikit-learn") from None

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def load_images(source: str, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(n, 3, size, size) float images in [0, 1], labels, class names.

    ``photos``: the centre square of each of the first ``n`` :data:`PHOTOS`, resized (antialiased bilinear)
    to ``size``; ``digits``: the first scikit-learn digit of each class, upsampled (nearest) from 8 px.
    """
    available = {"photos": len(PHOTOS), "digits": 10}.get(source)
    if available is None:
        raise ConfigError(f"--source: expected one of {', '.join(SOURCES)}, got {source!r}")
    if not 1 <= n <= available:
        raise ConfigError(f"--n {n}: --source {source} has 1 to {available} images")
    if size < 1:
        raise ConfigError(f"--size {size}: expected a positive number of pixels")
    if source == "photos":
        imgs, names = [], []
        for name in PHOTOS[:n]:
            a = torch.as_tensor(_photo(name), dtype=torch.float32).permute(2, 0, 1) / 255.0
            s = min(a.shape[1:])  # centre square crop
            top, left = (a.shape[1] - s) // 2, (a.shape[2] - s) // 2
            a = a[:, top:top + s, left:left + s]
            a = F.interpolate(a[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
            imgs.append(a.clamp_(0.0, 1.0))  # the resampling weights' rounding can step past 1
            names.append(name)
        return torch.stack(imgs), torch.arange(len(names)), names
    from sklearn.datasets import load_digits

    d = load_digits()
    pick = [int(np.flatnonzero(d.target == c)[0]) for c in range(n)]
    x = torch.as_tensor(d.images[pick], dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="nearest").repeat(1, 3, 1, 1)
    return x, torch.as_tensor(d.target[pick]), [str(c) for c in range(10)]


def parse_options(items: list[str]) -> dict:
    opts = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        opts[key] = yaml.safe_load(value)
    return opts


def shown_rows(batch, n: int) -> list[int]:
    """Rows of the mixed batch to draw: the first ``n``, or the first mixed copy when the policy appends
    copies after the clean batch (RankMixup's N·(1 + num_mixup) rows)."""
    extra = batch.inputs.shape[0] > n and "rank_mixup" in batch.extras
    return list(range(n, 2 * n)) if extra else list(range(n))


def partner_of(batch, row: int) -> int:
    """The source with the largest label weight besides the anchor (Co-Mixup has many)."""
    if batch.num_sources < 2:
        return int(batch.indices[0][row])
    k = max(range(1, batch.num_sources), key=lambda j: float(batch.weights[j][row]))
    return int(batch.indices[k][row])


def weight_text(batch, row: int, names: list[str], before=None, top: int = 4) -> str:
    """Label weights of one row, largest first; ``(was w)`` where a relabel step changed them."""
    parts = []
    for k, (idx, w) in enumerate(zip(batch.indices, batch.weights)):
        value = float(w[row])
        old = None if before is None else float(before.weights[k][row])
        if value > 1e-4 or (old is not None and old > 1e-4):
            text = f"{value:.2f} {names[int(batch.labels[int(idx[row])])]}"
            if old is not None and abs(old - value) > 5e-3:
                text += f" (was {old:.2f})"
            parts.append((value, text))
    parts[1:] = sorted(parts[1:], key=lambda p: -p[0])  # anchor first, then the heaviest partners
    lines = [t for _, t in parts[:top]]
    if len(parts) > top:
        lines.append(f"+{len(parts) - top} more")
    return "\n".join(lines)


def draw(x: torch.Tensor, batch, names: list[str], title: str, out: str, before=None) -> None:
    """Save the figure: originals, partners, mixed images (label weights under them).

    ``x`` are the images in [0, 1] (row order of the batch given to the policy), ``batch.inputs`` the mixed
    ones in the same units; ``before`` is the batch before a relabel step, to show how the weights moved.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = x.shape[0]
    cols = shown_rows(batch, n)
    mixed = batch.mix_features(batch.inputs) if batch.layer == 0 else batch.inputs
    # a feature-level batch whose inputs are the originals (up to the de-normalisation's rounding)
    features_only = bool(batch.layer) and torch.allclose(batch.inputs[cols].float(), x[[r % n for r in cols]].float(),
                                                         atol=1e-4)
    rows = [("original", [x[int(batch.indices[0][r]) % n] for r in cols]),  # each row's anchor
            ("partner", [x[partner_of(batch, r) % n] for r in cols]),
            ("input (features mixed)" if features_only else "mixed", [mixed[r] for r in cols])]
    # a column wide enough for every image pixel to get at least one figure pixel (the axes take about
    # 85 % of a column after tight_layout), 2.2 in at the least so that the weight text fits
    cell = max(2.2, x.shape[-1] / DPI / 0.85)
    fig, axes = plt.subplots(3, len(cols), figsize=(cell * len(cols), 3 * cell + 0.8), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c, img in enumerate(imgs):
            ax = axes[r][c]
            show_image(ax, img)
            if c == 0:
                ax.set_ylabel(label, fontsize=11)
            if r == 2:
                ax.set_xlabel(weight_text(batch, cols[c], names, before), fontsize=8)
    if batch.layer:
        title += f"\n(features mixed after stage {batch.layer}"
        title += "; inputs unchanged)" if features_only else "; this batch took the input branch)"
    fig.suptitle("\n".join(line for part in title.split("\n") for line in textwrap.wrap(part, 90)), fontsize=10)
    save_png(fig, out)


def show_image(ax, img: torch.Tensor) -> None:
    """One (C, H, W) image in [0, 1] in a gallery cell, grey for one channel, without ticks."""
    img = img.detach().float().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])


def save_png(fig, out: str) -> None:
    """Lay out, write and close a gallery figure; a 256-colour palette keeps the committed gallery small."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    plt.close(fig)
    Image.open(buf).convert("RGB").quantize(256).save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mixbench visualize", description=__doc__.splitlines()[0])
    p.add_argument("--mixup", help="registered mixup policy name")
    p.add_argument("--reliability", metavar="RUN_DIR|CONFIG",
                   help="draw the reliability diagram of a trained classifier: a run dir (its last checkpoint "
                        "and fitted temperature), or a config with --checkpoint")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="policy options (YAML values)")
    p.add_argument("--config", help="a configs/mixup/NAME.yaml file to take the options from")
    p.add_argument("--source", default="photos",
                   help="model-free policies: photos (scikit-image's natural photos, default) or digits")
    p.add_argument("--n", type=int, default=4, help="number of samples (columns)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (model-free policies)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", metavar="CONFIG", help="model-reading policies: experiment file or a run's "
                   "config.yaml (default configs/digits[/vit]/NAME.yaml)")
    p.add_argument("--checkpoint", help="model-reading policies: weights to load instead of training briefly")
    p.add_argument("--train-steps", type=int, default=300,
                   help="model-reading policies without --checkpoint: clean training steps before drawing")
    p.add_argument("--learned-steps", type=int, default=200,
                   help="learned mixers: training steps between the start and the end pictures of the masks")
    p.add_argument("--out", help="output PNG (default mixup_<NAME>.png)")
    args = p.parse_args(argv)
    if args.reliability:
        from mixbench.cli.visualize_reliability import reliability

        print(reliability(args.reliability, args.checkpoint, args.out))
        return 0
    if not args.mixup:
        raise ConfigError("visualize: expected --mixup NAME (a policy's picture) or --reliability RUN_DIR")
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: expected at least one sample")
    cfg = {}
    if args.config:
        if not os.path.isfile(args.config):
            raise ConfigError(f"--config: file '{args.config}' not found")
        with open(args.config) as f:
            cfg = dict(yaml.safe_load(f) or {})
    cfg.update(parse_options(args.set))
    cfg["type"] = args.mixup
    policy = build(MIXUPS, cfg, "mixup", source=args.config or "")
    opts = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "type")
    out = args.out or f"mixup_{args.mixup}.png"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if isinstance(policy, LearnedMixer):
        if args.learned_steps < 0:
            raise ConfigError(f"--learned-steps {args.learned_steps}: expected a number of steps ≥ 0")
        pic = learned_picture(args.mixup, cfg, experiment=args.model, steps=args.learned_steps, n=args.n,
                              seed=args.seed)
        draw_learned(pic, f"{args.mixup}({opts})\nmodel: {pic.about}", out)
        print(out)
        return 0
    if reads_model(policy) or args.model or args.checkpoint:
        step = run_model_step(args.mixup, cfg, experiment=args.model, checkpoint=args.checkpoint,
                              train_steps=args.train_steps, n=args.n, seed=args.seed)
        show = lambda t: t * step.std + step.mean  # noqa: E731  (normalised -> [0, 1])
        final = replace(step.final, inputs=show(step.final.inputs))
        title = f"{args.mixup}({opts})\nmodel: {step.about}"
        losses = sorted(step.final.extras.get("losses", {}))
        if losses:
            title += f"; extra losses: {', '.join(losses)}"
        relabelled = step.final is not step.mixed
        draw(show(step.inputs), final, step.classes, title, out, before=step.mixed if relabelled else None)
        print(out)
        return 0
    x, labels, names = load_images(args.source, args.n, args.size)
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    ctx = MixContext(generator=torch.Generator().manual_seed(args.seed))
    batch = policy((x - mean) / std, labels, len(names), ctx)
    batch.inputs = batch.inputs * std + mean
    draw(x, batch, names, f"{args.mixup}({opts})", out)
    print(out)
    return 0
