"""Pictures of a learned mixer's masks at the start and at the end of a short training (``mixbench visualize
--mixup NAME --learned-steps N``).

Generic over :class:`~mixbench.mixups.learned.base.LearnedMixer`: the classifier is built through the normal
config path (``configs/digits/NAME.yaml`` by default), trained ``N`` steps with its own training step
(``train_losses``, the per-iteration callbacks, the config's optimiser and the mixer's own group, constant lr),
and the mixer's batch (``policy(...)``, i.e. :meth:`mix`) is drawn on the same samples with the same λ and
partners before and after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from mixbench.mixups.base import MixBatch, MixContext
from mixbench.mixups.learned.base import Progress


@dataclass
class LearnedPicture:
    """The samples (in [0, 1]), the mixer's batches before and after training, and a line about the run."""

    images: Tensor
    start: MixBatch
    end: MixBatch
    about: str


def _optimizer(model: Any, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    s, policy = cfg["schedule"], model.policy
    own = {id(p) for p in policy.group_parameters()} if policy.has_own_group else set()
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
    groups = [{"params": main}]
    if own:
        groups.append({"params": [p for p in model.parameters() if id(p) in own],
                       **policy.group_options(Progress(0, 1))})
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=s["lr"], betas=tuple(s["betas"]), weight_decay=s["weight_decay"])
    return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])


def train_learned(model: Any, cfg: Mapping[str, Any], train_set: Any, steps: int, seed: int) -> None:
    """``steps`` training steps of the model with its learned mixer (the runner's step, without the Runner)."""
    from mixbench.datasets.loaders import build_loader

    d = cfg["data"]
    loader = build_loader(train_set, train=True, batch_size=d["batch_size"], resident="device",
                          crop_padding=d["crop_padding"], hflip=d["hflip"], seed=seed, resize=d.get("resize"))
    opt = _optimizer(model, cfg)
    model.train()
    model.reseed(seed, torch.device("cpu"))
    done, epoch = 0, 0
    while done < steps:
        loader.set_epoch(epoch)
        for data in loader:
            progress = Progress(done, steps, epoch)
            model.policy.before_iter(progress)
            batch = model.data_preprocessor(data, True)
            loss = sum(model(**batch, mode="loss").values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.policy.after_step(progress, model)
            done += 1
            if done >= steps:
                break
        epoch += 1


def _mixed(model: Any, x: Tensor, labels: Tensor, seed: int) -> MixBatch:
    ctx = MixContext(generator=torch.Generator().manual_seed(seed), model=model)
    with torch.no_grad():
        return model.policy(x, labels, model.num_classes, ctx)


def learned_picture(name: str, policy_cfg: Mapping[str, Any], *, experiment: str | None, steps: int, n: int,
                    seed: int) -> LearnedPicture:
    """Build, draw, train ``steps`` steps, draw again (see the module docstring)."""
    import time

    from mixbench.cli.visualize_model import _datasets, default_experiment, load_experiment, pick_samples
    from mixbench.models.classifier import build_classifier
    from mixbench.registry import MIXUPS, build

    probe = build(MIXUPS, dict(policy_cfg), "mixup")
    cfg, where = load_experiment(experiment or str(default_experiment(name, probe)), [])
    cfg = dict(cfg)
    base = dict(cfg["mixup"]) if cfg["mixup"].get("type") == name else {}
    cfg["mixup"] = {**base, **policy_cfg}
    cfg["runtime"] = dict(cfg["runtime"], channels_last=False)
    train_set, val_set = _datasets(cfg)
    side = cfg["data"].get("resize")
    torch.manual_seed(seed)
    model = build_classifier(cfg, num_classes=val_set.num_classes, in_chans=val_set.in_chans, mean=val_set.mean,
                             std=val_set.std, source=where,
                             input_shape=(val_set.in_chans, *((side, side) if side else val_set.image_size)))
    images, labels = pick_samples(val_set, n, cfg)
    x = model.data_preprocessor({"inputs": images, "labels": labels}, True)["inputs"]
    model.train()
    start = _mixed(model, x, labels, seed)
    t0 = time.perf_counter()
    train_learned(model, cfg, train_set, steps, seed)
    end = _mixed(model, x, labels, seed)
    pre = model.data_preprocessor
    show = lambda t: t * (pre.std / 255.0) + pre.mean / 255.0  # noqa: E731  (normalised -> [0, 1])
    start.inputs, end.inputs = show(start.inputs), show(end.inputs)
    about = f"{cfg['data']['type']} {cfg['model']['backbone']['type']}, {steps} training steps in " \
            f"{time.perf_counter() - t0:.0f} s (seed {seed})"
    return LearnedPicture(images=show(x), start=start, end=end, about=about)


def draw_learned(pic: LearnedPicture, title: str, out: str) -> None:
    """Rows: original, partner, anchor mask (when the mixer makes one) and mixed image at the start, the same at
    the end."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixbench.cli.visualize import DPI, save_png, show_image

    n = pic.images.shape[0]
    partner = pic.start.indices[1]
    rows = [("original", pic.images), ("partner", pic.images[partner]),
            ("mask, start", pic.start.mask), ("mixed, start", pic.start.inputs),
            ("mask, end", pic.end.mask), ("mixed, end", pic.end.inputs)]
    rows = [(label, imgs) for label, imgs in rows if imgs is not None]  # a mixer without masks (AdaMixup)
    cell = max(1.6, pic.images.shape[-1] / DPI / 0.85)
    fig, axes = plt.subplots(len(rows), n, figsize=(cell * n, cell * len(rows) + 0.8), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            show_image(ax, imgs[c])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == len(rows) - 1:
                area = "" if pic.end.mask is None else f"\nanchor area {float(pic.end.mask[c].mean()):.2f}"
                ax.set_xlabel(f"λ {float(pic.end.weights[0][c]):.2f}{area}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_png(fig, out)
