"""Time one training step (forward + backward + optimiser update) per mixup policy, same model and batch.

Builds mixbench's classifier (``mixbench.models.classifier``) once per policy with identical initial weights,
runs ``--warmup`` untimed steps then ``--steps`` timed ones on one fixed random batch, and prints the median
step time, its ratio to ``none`` and the peak-memory ratio. CUDA: ``max_memory_allocated`` over the warm-up
steps. CPU (Linux): torch keeps no CPU allocator statistics, so each policy is built and stepped in a process
of its own, and the peak is the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``
after the imports and one warm-up step of a ``none`` model) above its resident set at that point: the model, the optimiser state and the step's
tensors, as on CUDA, without the interpreter and the libraries.

Learned mixers (``LEARNED``: AutoMix, SAMix, AdAutoMix, AdaMixup; add a new one there) are set up through the real build path
(``policy.setup(model_context(...))``) and get their per-iteration callbacks around each step.

    python benchmarks/step_speed.py --device cpu --model all --batch 64 --csv benchmarks/results/step_speed_cpu.csv
    python benchmarks/step_speed.py --device cuda --model r18 --batch 100      # CIFAR ResNet-18
    python benchmarks/step_speed.py --device cuda --model deit_s --batch 100   # DeiT-S at 224
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _table import write_csv

from mixbench.mixups.learned.base import LearnedMixer, Progress, model_context
from mixbench.models.classifier import MixClassifier, MixDataPreprocessor
from mixbench.registry import BACKBONES, HEADS, LOSSES, MIXUPS, build, import_components

MODELS = {
    # name: (backbone config, image size, channels, classes, ViT?)
    "cnn": ({"type": "digits_cnn"}, 16, 1, 10, False),
    "vit_digits": ({"type": "timm", "name": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 4,
                    "embed_dim": 64, "depth": 4, "num_heads": 4}, 16, 1, 10, True),
    "r18": ({"type": "resnet18_cifar"}, 32, 3, 100, False),
    "deit_s": ({"type": "timm", "name": "deit_small_patch16_224"}, 224, 3, 100, True),
}
LEARNED = ["automix", "samix", "adautomix", "adamixup"]
CNN_POLICIES = ["none", "mixup", "puzzlemix", "attentivemix", "snapmix", "alignmix", "comixup", *LEARNED]
VIT_POLICIES = ["none", "mixup", "transmix", "tokenmix", "tokenmix_mixed", "mixpro", "smmix"]


def policy_cfg(name: str, image: int) -> dict:
    cfg = {"type": name}
    if name == "tokenmix_mixed":
        cfg = {"type": "tokenmix", "label_source": "mixed"}
    if cfg["type"] == "tokenmix" and image < 64:
        cfg["minimum_tokens"] = 2
    if name == "mixpro" and image < 64:
        cfg["mask_patch_size"] = 8
    if name == "puzzlemix" and image < 32:
        cfg["blocks"] = [2, 4, 8]
    if name in ("automix", "samix", "adautomix") and image < 32:
        cfg["mask_layer"] = 1  # the digits CNN's 8x8 stage (configs/digits/automix.yaml, adautomix.yaml)
    return cfg


def make_step(name: str, args, model_name: str, device: torch.device):
    import_components()
    bb_cfg, image, chans, classes, _ = MODELS[model_name]
    torch.manual_seed(0)
    backbone = build(BACKBONES, bb_cfg, "model.backbone", in_chans=chans)
    head = build(HEADS, {"type": "linear"}, "model.head", in_features=backbone.num_features, num_classes=classes)
    policy = build(MIXUPS, policy_cfg(name, image), "mixup")
    learned = isinstance(policy, LearnedMixer)
    if learned:  # sub-networks from the model context, as build_classifier does
        policy.setup(model_context(backbone, head, classes, (chans, image, image),
                                   new_backbone=lambda: build(BACKBONES, bb_cfg, "model.backbone", in_chans=chans)))
    loss = build(LOSSES, {"type": "soft_ce"}, "loss", num_classes=classes)
    pre = MixDataPreprocessor([127.5] * chans, [64.0] * chans)
    model = MixClassifier(backbone, head, policy, loss, classes, pre).to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, chans, image, image), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, classes, (args.batch,), generator=gen)
    data = pre({"inputs": x.to(device), "labels": y.to(device)})

    def step(i: int) -> None:
        model.progress = {"epoch": 0, "iter": i, "progress": 0.5}
        if learned:
            policy.before_iter(Progress(i, 2 * i + 2))
        losses = model.loss(data["inputs"], data["labels"])
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if learned:  # the momentum-encoder update belongs to the step
            model.policy.after_step(Progress(i, args.warmup + args.steps), model)

    return step


def _status_kib(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status``, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_step_peak(name: str, args, model_name: str) -> float:
    """Bytes of resident memory the policy's model, optimiser and warm-up steps add at their peak (this process
    must be fresh: see the module docstring)."""
    warm = make_step("none", args, model_name, torch.device("cpu"))
    warm(0)  # the libraries' one-time set-up (kernels, thread pools) would otherwise count as the policy's
    del warm
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the kernel's peak-RSS reset
    before = _status_kib("VmRSS")
    step = make_step(name, args, model_name, torch.device("cpu"))
    for i in range(args.warmup):
        step(i)
    return float(_status_kib("VmHWM") - before) * 1024


def cpu_peaks(names: list[str], args, model_name: str) -> dict[str, float]:
    """:func:`cpu_step_peak` of each policy, each in a child process; NaN off Linux."""
    if not Path("/proc/self/clear_refs").exists():
        return {name: float("nan") for name in names}
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, "--device", "cpu", "--model", model_name, "--batch", str(args.batch),
               "--warmup", str(args.warmup), "--peak-of", name]
        # a fixed mmap threshold: glibc then returns every freed tensor to the kernel, so the warm-up's memory
        # is not reused silently inside the measured window
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out[name] = float(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
    return out


def time_policies(names: list[str], args, model_name: str, device: torch.device) -> dict[str, tuple[float, float]]:
    """Median step time and peak memory per policy; steps are interleaved round-robin across policies so that
    a change of machine load affects all of them alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    steps = {name: make_step(name, args, model_name, device) for name in names}
    peaks = {}
    for name, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(args.warmup):
            step(i)
        sync()
        peaks[name] = float(torch.cuda.max_memory_allocated()) if device.type == "cuda" else float("nan")
    times = {name: [] for name in names}
    for i in range(args.steps):
        for name, step in steps.items():
            sync()
            t = time.perf_counter()
            step(args.warmup + i)
            sync()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), peaks[name]) for name in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="cnn", choices=sorted(MODELS) + ["all"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--policies", default=None, help="comma list (default: none, mixup and the model's policies)")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)  # the child of cpu_peaks
    args = ap.parse_args(argv)
    if args.peak_of:
        print(cpu_step_peak(args.peak_of, args, args.model))
        return 0
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    models = ["cnn", "vit_digits"] if args.model == "all" else [args.model]
    rows = []
    for model_name in models:
        names = args.policies.split(",") if args.policies else (VIT_POLICIES if MODELS[model_name][4] else CNN_POLICIES)
        results = time_policies(names, args, model_name, device)
        if device.type == "cpu":
            peaks = cpu_peaks(names, args, model_name)
            results = {name: (t, peaks[name]) for name, (t, _) in results.items()}
        base_t, base_m = results.get("none", (None, None))
        for name in names:
            t, m = results[name]
            rows.append({"device": str(device), "device_name": device_name, "model": model_name, "batch": args.batch, "policy": name,
                         "step_ms": round(t * 1000, 2),
                         "ratio_to_none": round(t / base_t, 3) if base_t else float("nan"),
                         "peak_mem_ratio": round(m / base_m, 3) if base_m and base_m == base_m else float("nan"),
                         "peak_mem_mib": round(m / 2**20, 1)})
            print(rows[-1], file=sys.stderr, flush=True)
    w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    if args.csv:
        write_csv(args.csv, rows, list(rows[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
