"""Distributed launch: ``torchrun`` and SLURM ``srun`` environments, gloo on CPU and nccl on CUDA.

mixbench initialises the process group itself, before mmengine's Runner is built, so that CPU-only DDP works
(see :mod:`mixbench.engine.compat`). Launch conventions:

* ``torchrun --standalone --nproc_per_node=N tools/train.py CONFIG ...`` (reads ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
* ``srun --ntasks=N --ntasks-per-node=G python tools/train.py CONFIG ...`` (reads ``SLURM_PROCID``,
  ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODELIST``; the first host of the node list is the master).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mixbench.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """First host name of a SLURM node list (``node[03-05,7]`` → ``node03``), via scontrol when present."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.split()
            if out:
                return out[0]
        except (subprocess.SubprocessError, OSError):
            pass
    head = nodelist.split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist
    m = re.match(r"([^\[,]+)\[([^\]]+)\]", head)
    if not m:
        return head
    first = m.group(2).split(",")[0].split("-")[0]
    return m.group(1) + first


def detect(launcher: str = "auto", env: dict | None = None) -> DistInfo:
    """Read the launcher's environment (``auto``: torchrun first, then SLURM with more than one task)."""
    env = os.environ if env is None else env
    if launcher in ("auto", "pytorch") and "WORLD_SIZE" in env and "RANK" in env:
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "pytorch")
    if launcher == "pytorch":
        raise ConfigError("runtime.launcher=pytorch: RANK/WORLD_SIZE not set; start the run with torchrun")
    if launcher in ("auto", "slurm") and "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        return DistInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                        "slurm")
    if launcher == "slurm":
        raise ConfigError("runtime.launcher=slurm: SLURM_PROCID/SLURM_NTASKS not set; start the run with srun")
    return DistInfo()


def select_device(name: str, info: DistInfo) -> torch.device:
    """``auto``: the local GPU of this rank when CUDA is available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"runtime.device={name!r}: CUDA is not available on this machine")
        index = int(name.split(":")[1]) if ":" in name else info.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if name != "cpu":
        raise ConfigError(f"runtime.device={name!r}: expected auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def init(launcher: str, backend: str, device: torch.device, info: DistInfo) -> None:
    """Initialise the default process group for a multi-process run (no-op for one process)."""
    if not info.distributed or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if info.launcher == "slurm":
        os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_NODELIST", "localhost")))
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(info.rank), str(info.world_size)
        os.environ["LOCAL_RANK"] = str(info.local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size,
                            device_id=device if device.type == "cuda" else None)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s object on every rank (identity for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
