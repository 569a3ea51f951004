"""Run by ``torchrun --nproc_per_node=2`` (gloo): three steps of a learned mixer under DDP, compared on rank 0
with the same steps in one process (the two ranks' losses averaged, as DDP averages their gradients).

Writes ``{"max_diff", "ema_equal", "online_equal"}`` as JSON to the path given after the method name.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mixbench.config import load_config
from mixbench.mixups.learned.base import Progress
from mixbench.models.classifier import build_classifier

STEPS = 3


def build(method: str):
    cfg, _ = load_config(f"configs/digits/{method}.yaml", ["model.backbone.width=8"])
    torch.manual_seed(0)
    return build_classifier(cfg, num_classes=10, in_chans=1, mean=(100.0,), std=(50.0,), input_shape=(1, 16, 16))


def batch(step: int, rank: int) -> dict:
    g = torch.Generator().manual_seed(100 * step + rank)
    return {"inputs": torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8, generator=g),
            "labels": torch.randint(0, 10, (16,), generator=g)}


def optimiser(model) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)


def flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def main() -> None:
    method, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build(method).train()
    model.reseed(1000 + rank, torch.device("cpu"))
    ddp = DistributedDataParallel(model, device_ids=None, broadcast_buffers=False, find_unused_parameters=False)
    opt = optimiser(model)
    ref = build(method).train() if rank == 0 else None
    ref_opt = optimiser(ref) if ref is not None else None
    gens = [torch.Generator().manual_seed(1000 + r) for r in range(world)]
    for step in range(STEPS):
        progress = Progress(step, STEPS)
        model.policy.before_iter(progress)
        loss = sum(ddp(**model.data_preprocessor(batch(step, rank), True), mode="loss").values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.policy.after_step(progress, model)
        if ref is not None:
            ref.policy.before_iter(progress)
            ref_opt.zero_grad()
            for r in range(world):
                ref._generator = gens[r]
                (sum(ref(**ref.data_preprocessor(batch(step, r), True), mode="loss").values()) / world).backward()
            ref_opt.step()
            ref.policy.after_step(progress, ref)
    ema = flat(model.policy.encoder_k.parameters())
    online = flat(p for p in model.parameters() if p.requires_grad)
    gathered = {name: [torch.empty_like(t) for _ in range(world)] for name, t in (("ema", ema), ("online", online))}
    dist.all_gather(gathered["ema"], ema)
    dist.all_gather(gathered["online"], online)
    if rank == 0:
        diff = (flat(model.parameters()) - flat(ref.parameters())).abs().max()
        result = {"max_diff": float(diff),
                  "ema_equal": all(torch.equal(gathered["ema"][0], t) for t in gathered["ema"]),
                  "online_equal": all(torch.equal(gathered["online"][0], t) for t in gathered["online"]),
                  "ema_moved": float((ema - flat(build(method).policy.encoder_k.parameters())).abs().max())}
        with open(out, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
