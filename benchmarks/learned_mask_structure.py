"""How much spatial structure a trained learned mixer's masks have, and how closely their area follows λ.

For each run dir (of AutoMix, SAMix or AdAutoMix), the classifier is built from the run's ``config.yaml``
twice: as initialised (the run's seed) and with the run's last checkpoint (weights-only). Each mixes the first
``--images`` validation images in ``--draws`` batches, each batch with its own seeded λ and partners, and the
script reports per state:

- ``pixel_std``: the standard deviation of the anchor mask over its pixels, averaged over the samples
  (0 = a constant blend, as mixup; a cut-and-paste mask of area a has sqrt(a(1 − a)));
- ``area_gap``: the mean |anchor area − λ|, and ``area_lam_r``: the correlation of the area with λ over the
  draws;
- ``qk_grad_ratio``: the gradient norm that one training step's losses give the mask generator's query and key
  convolutions over the one its value convolution gets. The mask is an attention-weighted sum of values, and
  with the reference's normal(0, 0.01) init the attention starts uniform, so a small ratio means the
  attention, hence the mask's layout, barely learns.

    python benchmarks/learned_mask_structure.py work_dirs/bench/digits/{automix,samix,adautomix}-*/digits/*-s0 \\
        --csv benchmarks/results/learned_mask_structure_digits.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _table import write_csv

from mixbench.cli.visualize_learned import _mixed as mixed_batch
from mixbench.cli.visualize_model import _datasets, load_checkpoint, load_experiment
from mixbench.engine.run import last_checkpoint
from mixbench.mixups.base import MixContext
from mixbench.models.classifier import build_classifier

FIELDS = ["run", "method", "state", "pixel_std", "area_gap", "area_lam_r", "qk_grad_ratio", "draws"]


def _model(run_dir: Path):
    cfg, where = load_experiment(run_dir / "config.yaml", [])
    cfg = dict(cfg, runtime=dict(cfg["runtime"], channels_last=False))
    _, val_set = _datasets(cfg)
    torch.manual_seed(cfg["seed"])
    model = build_classifier(cfg, num_classes=val_set.num_classes, in_chans=val_set.in_chans, mean=val_set.mean,
                             std=val_set.std, source=where, input_shape=(val_set.in_chans, *val_set.image_size))
    return model, val_set, cfg["mixup"]["type"]


def mask_stats(model, images: torch.Tensor, labels: torch.Tensor, draws: int) -> dict[str, float]:
    """``pixel_std``, ``area_gap`` and ``area_lam_r`` over ``draws`` seeded batches (see the module docstring)."""
    x = model.data_preprocessor({"inputs": images, "labels": labels}, True)["inputs"]
    model.train()  # the masks of training: BatchNorm in the MixBlock uses the batch's statistics
    stds, areas, lams = [], [], []
    for seed in range(draws):
        batch = mixed_batch(model, x, labels, seed)
        anchor = batch.mask.float().flatten(1)  # (N, H·W): the weight of the anchor image per pixel
        stds.append(anchor.std(1).mean())
        areas.append(anchor.mean(1))
        lams.append(batch.weights[0].float().expand_as(areas[-1]))
    area, lam = torch.cat(areas), torch.cat(lams)
    r = torch.corrcoef(torch.stack([area, lam]))[0, 1] if lam.std() > 0 and area.std() > 0 else torch.tensor(0.0)
    return {"pixel_std": float(torch.stack(stds).mean()), "area_gap": float((area - lam).abs().mean()),
            "area_lam_r": float(r)}


def qk_grad_ratio(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """``qk_grad_ratio`` of one step's losses on ``images`` (see the module docstring)."""
    data = model.data_preprocessor({"inputs": images, "labels": labels}, True)
    model.train()
    model.zero_grad(set_to_none=True)
    ctx = MixContext(torch.Generator().manual_seed(0), model=model)
    sum(model.policy.train_losses(model, data["inputs"], data["labels"], ctx).values()).backward()
    norms = {"qk": 0.0, "value": 0.0}
    for name, p in getattr(model.policy, model.policy.group_module).named_parameters():
        part = "value" if name.startswith("value") else "qk" if name.startswith(("query", "key")) else None
        if part and p.grad is not None:
            norms[part] += float(p.grad.norm()) ** 2
    model.zero_grad(set_to_none=True)
    return (norms["qk"] / norms["value"]) ** 0.5 if norms["value"] > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    rows = []
    for run_dir in map(Path, args.run_dirs):
        checkpoint = last_checkpoint(str(run_dir))
        if checkpoint is None:
            print(f"{run_dir}: no checkpoint, skipped", file=sys.stderr)
            continue
        model, val_set, method = _model(run_dir)
        images, labels = val_set.tensors()
        images, labels = images[: args.images], labels[: args.images]
        for state in ("init", Path(checkpoint).stem):
            if state != "init":
                load_checkpoint(model, checkpoint)
            stats = mask_stats(model, images, labels, args.draws)
            stats["qk_grad_ratio"] = qk_grad_ratio(model, images, labels)
            rows.append({"run": str(run_dir), "method": method, "state": state, "draws": args.draws,
                         **{k: round(v, 4) for k, v in stats.items()}})
            print(rows[-1], file=sys.stderr, flush=True)
    if args.csv and rows:
        write_csv(args.csv, rows, FIELDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
