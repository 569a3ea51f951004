"""Run by ``torchrun --nproc_per_node=2`` (gloo): a few AdAutoMix training steps under mmengine's DDP wrapper,
the same batch and mixing seed on both ranks, against the same steps in one process without DDP.

With identical data on both ranks DDP averages two equal gradients, so the weights must match the
single-process run; the momentum encoders (outside gradient sync) and the generators must be equal on both
ranks. Rank 0 writes a JSON summary to ``sys.argv[1]``.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper

from mixbench.config import load_config
from mixbench.mixups.learned.base import Progress
from mixbench.models.classifier import build_classifier

STEPS = 4  # adversarial, cooperative, adversarial, cooperative


def build() -> torch.nn.Module:
    cfg, _ = load_config("configs/digits/adautomix.yaml", ["model.backbone.width=8", "mixup.momentum=0.5",
                                                           "mixup.end_momentum=0.5"])
    torch.manual_seed(0)
    return build_classifier(cfg, num_classes=10, in_chans=1, mean=[8.0], std=[4.0], input_shape=(1, 16, 16)).train()


def train(model: torch.nn.Module, stepper: torch.nn.Module, data: dict) -> list[dict]:
    opt = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9))
    logs = []
    for it in range(STEPS):
        model.progress = {"epoch": 0, "iter": it, "progress": it / STEPS}
        model.reseed(100 + it, torch.device("cpu"))
        model.policy.before_iter(Progress(it, STEPS))
        logs.append({k: float(v) for k, v in stepper.train_step(data, opt).items()})
        model.policy.after_step(Progress(it, STEPS), model)
    return logs


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    gen = torch.Generator().manual_seed(0)
    data = {"inputs": torch.randint(0, 17, (16, 1, 16, 16), generator=gen, dtype=torch.uint8),
            "labels": torch.randint(0, 10, (16,), generator=gen)}
    model = build()
    ddp = MMDistributedDataParallel(module=model, broadcast_buffers=False, find_unused_parameters=False)
    logs = train(model, ddp, data)
    frozen = [p.requires_grad for p in model.policy.encoder_k.parameters()]
    mine = torch.cat([p.detach().flatten() for p in model.policy.encoder_k.parameters()]
                     + [p.detach().flatten() for p in model.policy.generator.parameters()])
    both = [torch.empty_like(mine) for _ in range(2)]
    dist.all_gather(both, mine)
    if rank == 0:
        single = build()
        single_logs = train(single, single, data)
        ref, got = single.state_dict(), model.state_dict()
        diff = max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref if ref[k].numel())
        moved = float((single.policy.encoder_k.backbone.stage1[0][0].weight
                       - build().policy.encoder_k.backbone.stage1[0][0].weight).abs().max())
        summary = {"max_diff_vs_single": diff, "ranks_equal": bool(torch.equal(both[0], both[1])),
                   "encoder_frozen": not any(frozen), "ema_moved": moved, "keys": sorted(logs[0]),
                   "ddp_losses": logs, "single_losses": single_logs}
        with open(sys.argv[1], "w") as f:
            json.dump(summary, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
