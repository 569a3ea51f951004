"""Write the OpenMixup CIFAR and ImageNet suites (benchmarks/openmixup_*.yaml) and the experiment files they
point at.

The published numbers are OpenMixup's ``docs/en/mixup_benchmarks/Mixup_cifar.md`` and ``Mixup_imagenet.md``
tables, kept below as one table per suite; every row is a method mixbench implements. A blank
cell (``None``) is a setting the table has no number for: the run is in the suite, without a reference.

- ResNet tables (ResNet-18, ResNeXt-50, WRN-28-8): median top-1 of the last 10 epochs, CIFAR stems, SGD cosine,
  batch 100 on one GPU.
- ViT table (DeiT-S and Swin-T at 224 px, ConvNeXt-T at 32 px; 200 and 600 epochs): best top-1 within the last
  10 epochs, AdamW recipe. Its suites point at the hand-written ``configs/cifar100/{deit_s,swin_t,convnext_t}``
  files and are written with ``definition: best`` (see ``VIT_HEADER`` for how that differs).
- ImageNet ResNet-50 table (PyTorch-style recipe, 100 and 300 epochs): median top-1 of the last 5 (100 ep) or
  10 (300 ep) epochs; its suite points at the hand-written ``configs/imagenet/r50`` files.

Experiment files ``configs/<dataset>/<backbone>/<method>.yaml`` are written only when missing (existing ones
are never touched); the suites are rewritten every time. α per method is the table's "Beta α" column and
goes into each entry's overrides (SmoothMix and Co-Mixup take no α in mixbench: SmoothMix samples its
Gaussian σ from ``sigma_range``, Co-Mixup draws its own mixing weights).

    python benchmarks/openmixup_suites.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = "OpenMixup docs/en/mixup_benchmarks/Mixup_cifar.md"
EPOCHS = (200, 400, 800, 1200)
# Table method -> (mixbench policy, experiment file stem); "none" keeps the existing ``vanilla`` stem.
POLICY = {"Vanilla": ("none", "vanilla"), "MixUp": ("mixup", "mixup"), "CutMix": ("cutmix", "cutmix"),
          "ManifoldMix": ("manifoldmix", "manifoldmix"), "SmoothMix": ("smoothmix", "smoothmix"),
          "SaliencyMix": ("saliencymix", "saliencymix"), "AttentiveMix+": ("attentivemix", "attentivemix"),
          "FMix*": ("fmix", "fmix"), "PuzzleMix": ("puzzlemix", "puzzlemix"), "Co-Mixup": ("comixup", "comixup"),
          "GridMix": ("gridmix", "gridmix"), "ResizeMix": ("resizemix", "resizemix"),
          "AlignMix": ("alignmix", "alignmix"), "DeiT": ("switch", "deit"), "TransMix": ("transmix", "transmix"),
          "AutoMix": ("automix", "automix"), "SAMix*": ("samix", "samix"), "ResizeMix*": ("resizemix", "resizemix"),
          "AdAutoMix": ("adautomix", "adautomix")}
NO_ALPHA = {"none", "smoothmix", "comixup"}
# OpenMixup: "we use wd=5e-4 for cutting-based methods (CutMix, AttentiveMix+, SaliencyMix, FMix, ResizeMix)"
# with ResNeXt-50.
CUTTING = {"cutmix", "attentivemix", "saliencymix", "fmix", "resizemix"}
# Overrides of every entry of a policy: AdAutoMix's published runs used the released code's cosine term.
POLICY_OVERRIDES = {"adautomix": ["mixup.cosine=similarity"]}
# Rows whose number is not in Mixup_cifar.md: the suite header names their source.
ROW_SOURCES = {"AdAutoMix": ("AdAutoMix: the authors' README (JinXins/Adversarial-AutoMixup; 800-epoch logs under",
                             "experiments/CIFAR100/), run with mixup.cosine=similarity (the released code's cosine term)",
                             "on the authors' recipe (configs/cifar100/<backbone>/adautomix.yaml: cosine to min_lr 0.05).")}
# The learned mixers' OpenMixup CIFAR configs (cifar100/{automix,samix}/basic/{r18,rx50}_*_mlr5e_2.py) end the
# cosine at min_lr=0.05 ("for the momentum encoder"), the other methods at 0: a known confounder of the table.
LEARNED_SCHEDULE = {"automix": {"min_lr": 0.05}, "samix": {"min_lr": 0.05}, "adautomix": {"min_lr": 0.05}}

# method, alpha, top-1 per epoch column
CIFAR10_R18 = [
    ("Vanilla", None, (94.87, 95.10, 95.50, 95.59)),
    ("MixUp", 1, (95.70, 96.55, 96.62, 96.84)),
    ("CutMix", 0.2, (96.11, 96.13, 96.68, 96.56)),
    ("ManifoldMix", 2, (96.04, 96.57, 96.71, 97.02)),
    ("SmoothMix", 0.5, (95.29, 95.88, 96.17, 96.17)),
    ("SaliencyMix", 0.2, (96.05, 96.42, 96.20, 96.18)),
    ("AttentiveMix+", 2, (96.21, 96.45, 96.63, 96.49)),
    ("FMix*", 0.2, (96.17, 96.53, 96.18, 96.01)),
    ("PuzzleMix", 1, (96.42, 96.87, 97.10, 97.13)),
    ("GridMix", 0.2, (95.89, 96.33, 96.56, 96.58)),
    ("ResizeMix", 1, (96.16, 96.91, 96.76, 97.04)),
    ("AlignMix", 2, (None, None, None, 97.05)),
    ("AutoMix", 2, (96.59, 97.08, 97.34, 97.30)),
    ("SAMix*", 2, (96.67, 97.16, 97.50, 97.41)),
]
CIFAR10_RX50 = [
    ("Vanilla", None, (95.92, 95.81, 96.23, 96.26)),
    ("MixUp", 1, (96.88, 97.19, 97.30, 97.33)),
    ("CutMix", 0.2, (96.78, 96.54, 96.60, 96.35)),
    ("ManifoldMix", 2, (96.97, 97.39, 97.33, 97.36)),
    ("SmoothMix", 0.2, (95.87, 96.37, 96.49, 96.77)),
    ("SaliencyMix", 0.2, (96.65, 96.89, 96.70, 96.60)),
    ("AttentiveMix+", 2, (96.84, 96.91, 96.87, 96.62)),
    ("FMix*", 0.2, (96.72, 96.76, 96.76, 96.10)),
    ("PuzzleMix", 1, (97.05, 97.24, 97.37, 97.34)),
    ("GridMix", 0.2, (97.18, 97.30, 96.40, 95.79)),
    ("ResizeMix", 1, (97.02, 97.38, 97.21, 97.36)),
    ("AlignMix", 2, (None, None, None, None)),
    ("AutoMix", 2, (97.19, 97.42, 97.65, 97.51)),
    ("SAMix*", 2, (97.23, 97.51, 97.93, 97.74)),
]
CIFAR100_R18 = [
    ("Vanilla", None, (76.42, 77.73, 78.04, 78.55)),
    ("MixUp", 1, (78.52, 79.34, 79.12, 79.24)),
    ("CutMix", 0.2, (79.45, 79.58, 78.17, 78.29)),
    ("ManifoldMix", 2, (79.18, 80.18, 80.35, 80.21)),
    ("SmoothMix", 0.2, (77.90, 78.77, 78.69, 78.38)),
    ("SaliencyMix", 0.2, (79.75, 79.64, 79.12, 77.66)),
    ("AttentiveMix+", 2, (79.62, 80.14, 78.91, 78.41)),
    ("FMix*", 0.2, (78.91, 79.91, 79.69, 79.50)),
    ("PuzzleMix", 1, (79.96, 80.82, 81.13, 81.10)),
    ("Co-Mixup", 2, (80.01, 80.87, 81.17, 81.18)),
    ("GridMix", 0.2, (78.23, 78.60, 78.72, 77.58)),
    ("ResizeMix", 1, (79.56, 79.19, 80.01, 79.23)),
    ("AlignMix", 2, (None, None, None, 81.71)),
    ("AutoMix", 2, (80.12, 81.78, 82.04, 81.95)),
    ("SAMix*", 2, (81.21, 81.97, 82.30, 82.41)),
    ("AdAutoMix", 1, (None, None, 82.32, None)),
]
CIFAR100_RX50 = [
    ("Vanilla", None, (79.37, 80.24, 81.09, 81.32)),
    ("MixUp", 1, (81.18, 82.54, 82.10, 81.77)),
    ("CutMix", 0.2, (81.52, 78.52, 78.32, 77.17)),
    ("ManifoldMix", 2, (81.59, 82.56, 82.88, 83.28)),
    ("SmoothMix", 0.2, (80.68, 79.56, 78.95, 77.88)),
    ("SaliencyMix", 0.2, (80.72, 78.63, 78.77, 77.51)),
    ("AttentiveMix+", 2, (81.69, 81.53, 80.54, 79.60)),
    ("FMix*", 0.2, (79.87, 78.99, 79.02, 78.24)),
    ("PuzzleMix", 1, (81.69, 82.84, 82.85, 82.93)),
    ("Co-Mixup", 2, (81.73, 82.88, 82.91, 82.97)),
    ("GridMix", 0.2, (81.11, 79.80, 78.90, 76.11)),
    ("ResizeMix", 1, (79.56, 79.78, 80.35, 79.73)),
    ("AutoMix", 2, (82.84, 83.32, 83.64, 83.80)),
    ("SAMix*", 2, (83.81, 84.27, 84.42, 84.31)),
    ("AdAutoMix", 1, (None, None, 84.22, None)),
]
# WRN-28-8: 400 epochs only.
CIFAR100_WRN28_8 = [
    ("Vanilla", None, (81.63,)), ("MixUp", 1, (82.82,)), ("CutMix", 0.2, (84.45,)),
    ("ManifoldMix", 2, (83.24,)), ("SmoothMix", 0.2, (82.09,)), ("SaliencyMix", 0.2, (84.35,)),
    ("AttentiveMix+", 2, (84.34,)), ("FMix*", 0.2, (84.21,)), ("PuzzleMix", 1, (85.02,)),
    ("Co-Mixup", 2, (85.05,)), ("GridMix", 0.2, (84.24,)), ("ResizeMix", 1, (84.87,)),
    ("AutoMix", 2, (85.18,)), ("SAMix*", 2, (85.50,)),
]
# The learned mixers' WRN-28-8 configs (cifar100/{automix,samix}/basic/wrn28_8_l1_*_mlr1e_3.py) differ from
# their ResNet ones: the MixBlock reads stage 2 (256 channels: mixbench's mix point 1), and has an SGD group of
# its own with lr 0.03 and momentum 0; every group ends its cosine at 1e-3.
LEARNED_WRN = {"schedule": {"min_lr": 1.0e-3},
               "mixup": {"mask_layer": 1, "lr": 0.03, "min_lr": 1.0e-3, "group_momentum": 0.0}}

# suite name -> dataset, backbone dir, model group, title, table, epochs, schedule block, recipe line
SUITES = {
    "openmixup_cifar10_r18": ("cifar10", "r18", "r18", "CIFAR-10, ResNet-18", CIFAR10_R18, EPOCHS, None,
                              "SGD 0.1, m 0.9, wd 1e-4, cosine to 0"),
    "openmixup_cifar10_rx50": ("cifar10", "rx50", "rx50", "CIFAR-10, ResNeXt-50 (32x4d)", CIFAR10_RX50, EPOCHS,
                               None, "SGD 0.1, m 0.9, wd 1e-4 (5e-4 for cutting-based methods), cosine to 0"),
    "openmixup_cifar100_r18": ("cifar100", "r18", "r18", "CIFAR-100, ResNet-18", CIFAR100_R18, EPOCHS, None,
                               "SGD 0.1, m 0.9, wd 1e-4, cosine to 0"),
    "openmixup_cifar100_rx50": ("cifar100", "rx50", "rx50", "CIFAR-100, ResNeXt-50 (32x4d)", CIFAR100_RX50,
                                EPOCHS, None,
                                "SGD 0.1, m 0.9, wd 1e-4 (5e-4 for cutting-based methods), cosine to 0"),
    "openmixup_cifar100_wrn28_8": ("cifar100", "wrn28_8", "wrn28_8", "CIFAR-100, WRN-28-8", CIFAR100_WRN28_8,
                                   (400,), {"epochs": 400, "lr": 0.03, "weight_decay": 1.0e-3},
                                   "SGD 0.03, m 0.9, wd 1e-3, cosine to 0, 400 epochs"),
}

EXPERIMENT = """\
# @package _global_
# {title}, {policy}: the OpenMixup CIFAR recipe
# ({docs}):
# {recipe};
# batch 100 on one GPU; RandomCrop 32 pad 4 + flip.
# benchmarks/{suite}.yaml sets the epochs and alpha of each published number.
defaults:
  - /model: {model}
  - /data: {dataset}
  - /mixup: {policy}
  - /loss: soft_ce
  - /schedule: cifar_sgd_cos200
  - /runtime: default
  - _self_

experiment: {dataset}_{backbone}
work_dir: work_dirs
seed: 0
runtime:
  checkpoint_interval: 10
"""

HEADER = """\
# {title}, {epochs} epochs: OpenMixup's table, the methods mixbench implements.
# Published numbers: {docs} (median top-1 of the last 10 epochs).
# Recipe: {recipe}; batch 100 on 1 GPU.
# "*" there (FMix) = a reproduced pre-print; Co-Mixup and AlignMix numbers come from the official
# implementations, not OpenMixup; entries without ``reference`` have no published number.
# alpha = the table's "Beta alpha" column. SmoothMix and Co-Mixup take no alpha in mixbench (SmoothMix samples
# sigma from sigma_range, Co-Mixup draws its own weights). AttentiveMix+ in OpenMixup ranks cells with a
# pretrained ResNet-18; mixbench's default reads the model being trained (mixup.extractor=<checkpoint> for
# the frozen one). AutoMix/SAMix run their OpenMixup recipe's min_lr=0.05 (the others end at 0): a known
# confounder; their RX50 configs ran 2 GPUs x 50. Written by benchmarks/openmixup_suites.py.
# Needs a GPU:
#   python tools/bench.py run benchmarks/{suite}.yaml [--launcher submitit]
#   python tools/bench.py report benchmarks/{suite}.yaml
"""


def _num(x: float) -> str:
    return f"{x:g}"


def experiment_text(suite: str, policy: str) -> str:
    dataset, backbone, model, title, _, _, schedule, recipe = SUITES[suite]
    wrn_learned = backbone == "wrn28_8" and policy in LEARNED_SCHEDULE
    if wrn_learned:
        recipe = recipe.replace("cosine to 0", "cosine to min_lr 1e-3 (the learned mixers' OpenMixup recipe, a "
                                "known confounder: the others end at 0); the MixBlock at stage 2 in an SGD group "
                                "of its own (lr 0.03, momentum 0)")
    elif policy in LEARNED_SCHEDULE:
        recipe = recipe.replace("cosine to 0", "cosine to min_lr 0.05 (the learned mixers' OpenMixup recipe, a "
                                "known confounder: the others end at 0)")
    text = EXPERIMENT.format(title=title, policy=policy, docs=DOCS, recipe=recipe, suite=suite, model=model,
                             dataset=dataset, backbone=backbone)
    sched = dict(schedule or {}, **(LEARNED_WRN["schedule"] if wrn_learned else LEARNED_SCHEDULE.get(policy, {})))
    if backbone == "rx50" and policy in CUTTING:
        sched["weight_decay"] = 5.0e-4
    if sched:
        text += "schedule:\n" + "".join(f"  {k}: {v:g}\n" for k, v in sched.items())
    if wrn_learned:
        text += "mixup:\n" + "".join(f"  {k}: {v:g}\n" for k, v in LEARNED_WRN["mixup"].items())
    return text


def suite_text(suite: str) -> str:
    dataset, backbone, _, title, table, epochs, _, recipe = SUITES[suite]
    runs = []
    for ep_i, epochs_n in enumerate(epochs):
        for method, alpha, refs in table:
            policy, stem = POLICY[method]
            overrides = [f"schedule.epochs={epochs_n}"]
            if policy not in NO_ALPHA:
                overrides.append(f"mixup.alpha={_num(alpha)}")
            overrides += POLICY_OVERRIDES.get(policy, [])
            run = {"config": f"configs/{dataset}/{backbone}/{stem}.yaml", "label": f"{policy} {epochs_n}ep",
                   "overrides": overrides}
            if refs[ep_i] is not None:
                run["reference"] = refs[ep_i]
            runs.append(run)
    head = HEADER.format(title=title, epochs="/".join(map(str, epochs)), docs=DOCS, recipe=recipe, suite=suite)
    head += "".join(f"# {line}\n" for m, _, _ in table for line in ROW_SOURCES.get(m, ()))
    body = (f"name: {suite}\ntitle: {title}, {'/'.join(map(str, epochs))} epochs\n"
            f"work_dir: work_dirs/bench/{suite}\nout: results/{suite}\nseeds: [0, 1, 2]\nmetric: top1\n"
            "definition: median_last_k\nby: [dataset, backbone, epochs, method]\n"
            "overrides: [eval.median_last_k=10]\n"
            f"reference_source: {DOCS} (median top-1 of the last 10 epochs)\n"
            "slurm: {timeout_min: 2880, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 32}\n")
    body += "runs:\n" + "".join(
        f"- config: {r['config']}\n  label: {r['label']}\n  overrides: [{', '.join(r['overrides'])}]\n"
        + (f"  reference: {r['reference']}\n" if "reference" in r else "") for r in runs)
    return head + body


# CIFAR-100 ViT table (Mixup_cifar.md): method, alpha, top-1 at (200, 600) epochs. A pair of alphas is a
# two-policy recipe whose alphas live in the mixup group (DeiT: switch of Mixup 0.8 / CutMix 1, p 0.5/0.5;
# TransMix: Mixup 0.8 p 0.2 / TransMix-CutMix 1 p 0.8), not in a ``mixup.alpha`` override.
CIFAR100_DEIT_S = [
    ("Vanilla", None, (65.81, 68.50)), ("MixUp", 0.8, (69.98, 76.35)), ("CutMix", 2, (74.12, 79.54)),
    ("DeiT", (0.8, 1), (75.92, 79.38)), ("SmoothMix", 0.2, (67.54, 80.25)), ("SaliencyMix", 0.2, (69.78, 76.60)),
    ("AttentiveMix+", 2, (75.98, 80.33)), ("FMix*", 1, (70.41, 74.31)), ("GridMix", 1, (68.86, 74.96)),
    ("PuzzleMix", 2, (73.60, 81.01)), ("ResizeMix", 1, (68.45, 71.95)), ("TransMix", (0.8, 1), (76.17, 79.33)),
]
# TransMix (81.33 at 200 ep) is left out: mixbench's TransMix reads class-token attention, which Swin lacks.
CIFAR100_SWIN_T = [
    ("Vanilla", None, (78.41, 81.29)), ("MixUp", 0.8, (76.78, 83.67)), ("CutMix", 2, (80.64, 83.38)),
    ("DeiT", (0.8, 1), (81.25, 84.82)), ("SmoothMix", 0.2, (66.69, 81.18)), ("SaliencyMix", 0.2, (80.40, 82.58)),
    ("AttentiveMix+", 2, (81.13, 83.69)), ("FMix*", 1, (80.72, 82.82)), ("GridMix", 1, (78.54, 80.79)),
    ("PuzzleMix", 2, (80.33, 83.13)), ("ResizeMix", 1, (80.16, 82.36)),
]
CIFAR100_CONVNEXT_T = [
    ("Vanilla", None, (78.70, 80.65)), ("MixUp", 0.8, (81.13, 83.08)), ("CutMix", 2, (82.46, 83.20)),
    ("DeiT", (0.8, 1), (83.09, 84.12)), ("ManifoldMix", 2, (82.06, 83.94)), ("SmoothMix", 0.2, (78.87, 81.31)),
    ("SaliencyMix", 0.2, (82.82, 83.03)), ("AttentiveMix+", 2, (82.59, 83.04)), ("FMix*", 1, (81.79, 82.29)),
    ("GridMix", 1, (79.53, 79.66)), ("PuzzleMix", 2, (82.29, 84.17)), ("ResizeMix", 1, (82.53, 82.91)),
]
VIT_EPOCHS = (200, 600)
# suite name -> backbone dir, title, table, suite-wide overrides, recipe line
VIT_SUITES = {
    "openmixup_cifar100_deit_s": (
        "deit_s", "CIFAR-100, DeiT-S (224 px)", CIFAR100_DEIT_S,
        # OpenMixup's DeiT configs pass drop_path=0.1 under a name its VisionTransformer ignores: they ran with 0.
        ["model.backbone.drop_path_rate=0.0"],
        "AdamW lr 1e-3, wd 0.05, clip 5, warmup 20, cosine to 1e-6, label smoothing 0.1, RandAugment m7, drop path 0"),
    "openmixup_cifar100_swin_t": (
        "swin_t", "CIFAR-100, Swin-T (224 px)", CIFAR100_SWIN_T, [],
        "AdamW lr 5e-4, wd 0.05, clip 5, warmup 20, cosine to 1e-6, label smoothing 0.1, RandAugment m9, "
        "drop path 0.2"),
    "openmixup_cifar100_convnext_t": (
        "convnext_t", "CIFAR-100, ConvNeXt-T (32 px, CIFAR stem)", CIFAR100_CONVNEXT_T, [],
        "AdamW lr 1e-3, wd 0.05, clip 5, warmup 20, cosine to 1e-6, label smoothing 0.1, RandAugment m7, "
        "drop path 0.3"),
}

VIT_HEADER = """\
# {title}, 200/600 epochs: OpenMixup's CIFAR-100 ViT table, the methods mixbench implements.
# Published numbers: {docs} (best top-1 within the last 10 epochs).
# Recipe: {recipe}; batch 100 on 1 GPU.
# Metric: mixbench has no "best of the last k", so this suite uses definition best = the highest top-1 over
# every validated epoch (validation each epoch). It equals OpenMixup's number when the peak falls in the last
# 10 epochs and is higher when an earlier epoch peaked.
# DeiT = mixbench's switch policy (Mixup 0.8 / CutMix 1, p 0.5 each); TransMix = Mixup 0.8 (p 0.2) /
# TransMix-CutMix 1 (p 0.8); both alphas come from the mixup group. "*" there (FMix) = a reproduced pre-print.
# SmoothMix takes no alpha in mixbench (the table's 0.2: the mask area sets the weights). AttentiveMix+ in
# OpenMixup ranks cells with a pretrained ResNet-18; mixbench's default reads the model being trained.
# Left out: AutoMix, SAMix (no ViT recipe for the learned mixers yet){left_out}. Written by
# benchmarks/openmixup_suites.py.
# Needs a GPU:
#   python tools/bench.py run benchmarks/{suite}.yaml [--launcher submitit]
#   python tools/bench.py report benchmarks/{suite}.yaml
"""
VIT_LEFT_OUT = {"openmixup_cifar100_swin_t": "; TransMix (reads class-token attention, Swin has none)"}


def experiment_alpha(path: Path, policy: str) -> float | None:
    """The single alpha an experiment file ends up with: its own ``mixup.alpha``, else its mixup group's."""
    own = (yaml.safe_load(path.read_text()) or {}).get("mixup") or {}
    if "alpha" in own:
        return float(own["alpha"])
    group = yaml.safe_load((ROOT / "configs" / "mixup" / f"{policy}.yaml").read_text()) or {}
    return float(group["alpha"]) if "alpha" in group else None


def file_runs(config_dir: str, table: list, epochs: tuple[int, ...],
              per_epochs: dict[int, list[str]] | None = None) -> list[dict]:
    """Entries pointing at hand-written experiment files: each method x ``epochs``, alpha overridden only where
    the file differs from the table, plus the ``per_epochs`` overrides of each epoch count."""
    runs = []
    for ep_i, epochs_n in enumerate(epochs):
        for method, alpha, refs in table:
            policy, stem = POLICY[method]
            config = f"{config_dir}/{stem}.yaml"
            overrides = [f"schedule.epochs={epochs_n}", *(per_epochs or {}).get(epochs_n, [])]
            single = policy not in NO_ALPHA and not isinstance(alpha, tuple)
            if single and experiment_alpha(ROOT / config, policy) != float(alpha):
                overrides.append(f"mixup.alpha={_num(alpha)}")
            run = {"config": config, "label": f"{policy} {epochs_n}ep", "overrides": overrides}
            if refs[ep_i] is not None:
                run["reference"] = refs[ep_i]
            runs.append(run)
    return runs


def vit_runs(suite: str) -> list[dict]:
    """Entries of a ViT suite: each method x (200, 600) epochs."""
    backbone, _, table, _, _ = VIT_SUITES[suite]
    return file_runs(f"configs/cifar100/{backbone}", table, VIT_EPOCHS)


def _runs_text(runs: list[dict]) -> str:
    return "runs:\n" + "".join(
        f"- config: {r['config']}\n  label: {r['label']}\n  overrides: [{', '.join(r['overrides'])}]\n"
        + (f"  reference: {r['reference']}\n" if "reference" in r else "") for r in runs)


def vit_suite_text(suite: str) -> str:
    _, title, _, common, recipe = VIT_SUITES[suite]
    head = VIT_HEADER.format(title=title, docs=DOCS, recipe=recipe, suite=suite,
                             left_out=VIT_LEFT_OUT.get(suite, ""))
    body = (f"name: {suite}\ntitle: {title}, 200/600 epochs\n"
            f"work_dir: work_dirs/bench/{suite}\nout: results/{suite}\nseeds: [0, 1, 2]\nmetric: top1\n"
            "definition: best\nby: [dataset, backbone, epochs, method]\n"
            + (f"overrides: [{', '.join(common)}]\n" if common else "")
            + f"reference_source: {DOCS} (best top-1 within the last 10 epochs; "
            "this suite reads the best epoch overall)\n"
            "slurm: {timeout_min: 4320, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 32}\n")
    return head + body + _runs_text(vit_runs(suite))


IMAGENET_DOCS = "OpenMixup docs/en/mixup_benchmarks/Mixup_imagenet.md"
# ImageNet-1k PyTorch-style table (Mixup_imagenet.md), R-50 column: method, alpha, top-1 at (100, 300) epochs.
# Left out: DeiT (100 ep only; a two-policy recipe), AttentiveMix+ (OpenMixup ranks with an ImageNet-pretrained
# ResNet-18), PuzzleMix (the ImageNet settings block_num 4 / t_batch_size are not in a config yet), and the rows
# from the official implementations (Co-Mixup, SuperMix, AlignMix, Grafting).
IMAGENET_R50 = [
    ("Vanilla", None, (76.83, 77.35)), ("MixUp", 0.2, (77.12, 78.44)), ("CutMix", 1, (77.17, 78.69)),
    ("ManifoldMix", 0.2, (77.01, 78.21)), ("SaliencyMix", 1, (77.14, 78.46)), ("FMix*", 1, (77.19, 78.51)),
    ("GridMix", 0.2, (77.04, 78.50)), ("ResizeMix*", 1, (77.42, 78.91)), ("AutoMix", 2, (77.91, 79.25)),
    ("SAMix*", 2, (78.14, 79.39)),
]
IMAGENET_EPOCHS = (100, 300)
# "the median of top-1 accuracy in the last 5/10 training epochs for 100/300 epochs"
IMAGENET_MEDIAN = {100: ["eval.median_last_k=5"], 300: ["eval.median_last_k=10"]}
IMAGENET_SUITE = "openmixup_imagenet_r50"

IMAGENET_HEADER = """\
# ImageNet-1k, ResNet-50, 100/300 epochs: OpenMixup's PyTorch-style table, the methods mixbench implements.
# Published numbers: {docs} (median top-1 of the last 5 epochs at 100 epochs, of the last 10 at 300).
# Recipe: SGD 0.1, m 0.9, wd 1e-4, cosine to 0, no warmup; batch 64 per process on 4 processes (256);
# RandomResizedCrop 224 (bicubic) + flip, test Resize 256 -> CenterCrop 224 (configs/imagenet/r50/*.yaml).
# "*" there (FMix, ResizeMix, SAMix) = a reproduced pre-print. AutoMix/SAMix: their ImageNet settings (lam_concat,
# mask loss 0.1 -> 0, momentum 0.999 -> 0.99999, the MixBlock's group at lr 0.1 -> 1e-3) in their files.
# Left out: DeiT, AttentiveMix+ (pretrained guidance), PuzzleMix (ImageNet settings not configured) and the
# numbers from official implementations (Co-Mixup, SuperMix, AlignMix, Grafting).
# data.batch_size is per process: each entry needs 4 processes on 4 GPUs for the reference's global batch of
# 256 (the slurm mapping asks for 4 tasks; one seed, as ImageNet runs are costly).
# Written by benchmarks/openmixup_suites.py.
# Needs GPUs and a local ImageNet (data.root=<ILSVRC2012 with train/ and val/ in wnid folders>):
#   python tools/bench.py run benchmarks/{suite}.yaml [--launcher submitit]
#   python tools/bench.py report benchmarks/{suite}.yaml
"""


def imagenet_runs() -> list[dict]:
    """Entries of the ImageNet suite: each method x (100, 300) epochs with the table's median window."""
    return file_runs("configs/imagenet/r50", IMAGENET_R50, IMAGENET_EPOCHS, IMAGENET_MEDIAN)


def imagenet_suite_text(suite: str = IMAGENET_SUITE) -> str:
    body = (f"name: {suite}\ntitle: ImageNet-1k, ResNet-50, 100/300 epochs\n"
            f"work_dir: work_dirs/bench/{suite}\nout: results/{suite}\nseeds: [0]\nmetric: top1\n"
            "definition: median_last_k\nby: [dataset, backbone, epochs, method]\n"
            f"reference_source: {IMAGENET_DOCS} (median top-1 of the last 5/10 epochs for 100/300 epochs)\n"
            "slurm: {timeout_min: 10080, nodes: 1, tasks_per_node: 4, gpus_per_node: 4, cpus_per_task: 8, "
            "mem_gb: 128}\n")
    return IMAGENET_HEADER.format(docs=IMAGENET_DOCS, suite=suite) + body + _runs_text(imagenet_runs())


def main() -> None:
    for suite, (dataset, backbone, _, _, table, _, _, _) in SUITES.items():
        for method, _, _ in table:
            policy, stem = POLICY[method]
            path = ROOT / "configs" / dataset / backbone / f"{stem}.yaml"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(experiment_text(suite, policy))
                print(f"wrote {path.relative_to(ROOT)}")
        out = ROOT / "benchmarks" / f"{suite}.yaml"
        out.write_text(suite_text(suite))
        print(f"wrote {out.relative_to(ROOT)}")
    for suite, (backbone, _, table, _, _) in VIT_SUITES.items():
        # The ViT experiment files are hand-written (recipe per backbone); a missing one is an error, not a gap.
        missing = [POLICY[m][1] for m, _, _ in table
                   if not (ROOT / "configs" / "cifar100" / backbone / f"{POLICY[m][1]}.yaml").exists()]
        if missing:
            raise SystemExit(f"configs/cifar100/{backbone}/: missing {', '.join(missing)}")
        out = ROOT / "benchmarks" / f"{suite}.yaml"
        out.write_text(vit_suite_text(suite))
        print(f"wrote {out.relative_to(ROOT)}")
    missing = [POLICY[m][1] for m, _, _ in IMAGENET_R50
               if not (ROOT / "configs" / "imagenet" / "r50" / f"{POLICY[m][1]}.yaml").exists()]
    if missing:
        raise SystemExit(f"configs/imagenet/r50/: missing {', '.join(missing)}")
    out = ROOT / "benchmarks" / f"{IMAGENET_SUITE}.yaml"
    out.write_text(imagenet_suite_text())
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
