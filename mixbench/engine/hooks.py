"""Runner hooks: per-epoch seeding for exact resume, metrics sinks (metrics.jsonl, TensorBoard, wandb), the
non-finite-loss guard and the progress bar.

``metrics.jsonl`` is the source of truth of a run (docs/architecture.md, "Run directory and record"): one JSON object per line, with ``kind``
``train`` (every ``log_interval`` iterations), ``epoch`` (training time and images of one epoch) or ``val``
(metrics after an epoch). TensorBoard and wandb receive the same numbers and are never read back.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import torch
import torch.distributed as tdist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mixbench.engine.report import read_metrics
from mixbench.mixups.learned.base import Progress
from mixbench.registry import HOOKS


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


def epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """A seed per (run seed, epoch, rank, stream) so that any epoch can be replayed exactly after a resume."""
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729 + stream * 15_485_863) % (2**63 - 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NonFiniteLoss(FloatingPointError):
    """A non-finite loss on some rank; raised on every rank in the same iteration (see :func:`loss_check`)."""


def loss_check(loss: torch.Tensor) -> tuple[float, int | None]:
    """This rank's loss and the highest rank whose loss is not finite (None when every rank's is).

    In a multi-process run the flags of all ranks meet in one ``all_reduce``, so that a NaN on one rank stops
    every rank in the same iteration; the loss and the reduced flag come back in one host transfer, the one
    the loss read already cost.
    """
    loss = loss.float().reshape(())
    if not (tdist.is_available() and tdist.is_initialized()):
        value = float(loss)
        return value, (None if math.isfinite(value) else 0)
    flag = torch.where(torch.isfinite(loss), 0.0, float(tdist.get_rank() + 1))
    tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
    value, worst = torch.stack([loss, flag]).tolist()
    return value, (int(worst) - 1 if worst else None)


@HOOKS.register_module("epoch_seed")
class EpochSeedHook(Hook):
    """Reseed the global torch RNG and the classifier's mixing generator at the start of every epoch, and tell
    the classifier the training progress before every iteration (for progressive policies)."""

    priority = "VERY_HIGH"

    def __init__(self, seed: int, rank: int = 0):
        self.seed = seed
        self.rank = rank

    def before_train_epoch(self, runner: Any) -> None:
        loader = runner.train_loop.dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(runner.epoch)
        torch.manual_seed(epoch_seed(self.seed, runner.epoch, self.rank, 0))
        model = unwrap(runner.model)
        device = next(model.parameters()).device
        model.reseed(epoch_seed(self.seed, runner.epoch, self.rank, 1), device)

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        model = unwrap(runner.model)
        model.progress = {"epoch": runner.epoch, "iter": runner.iter,
                          "progress": runner.iter / max(runner.max_iters, 1)}


@HOOKS.register_module("learned_mixer")
class LearnedMixerHook(Hook):
    """The per-iteration callbacks of a learned mixer (docs/architecture.md, "Training step: stateful policies").

    Before each iteration: ``policy.before_iter(progress)`` (annealed loss weights), then the lr and weight
    decay of the mixer's own optimiser group, which overwrite whatever mmengine's schedulers (stepped after
    the previous iteration) left in those groups. After the optimiser step: ``policy.after_step(progress,
    model)`` (the momentum-encoder update). Everything is a function of the iteration, so resume is exact.
    """

    priority = "NORMAL"

    def __init__(self) -> None:
        self._group_ids: set[int] | None = None

    @staticmethod
    def _progress(runner: Any) -> Progress:
        return Progress(iter=runner.iter, max_iters=runner.max_iters, epoch=runner.epoch)

    def _groups(self, runner: Any, policy: Any) -> list[dict]:
        if self._group_ids is None:
            self._group_ids = {id(p) for p in policy.group_parameters()}
        groups = [g for g in runner.optim_wrapper.param_groups
                  if g["params"] and all(id(p) in self._group_ids for p in g["params"])]
        if not groups and self._group_ids:
            raise RuntimeError("the learned mixer's parameters are in no optimiser group of their own")
        return groups

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        policy = unwrap(runner.model).policy
        progress = self._progress(runner)
        policy.before_iter(progress)
        if policy.has_own_group:
            options = policy.group_options(progress)
            for group in self._groups(runner, policy):
                group.update(options)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        model = unwrap(runner.model)
        model.policy.after_step(self._progress(runner), model)


@HOOKS.register_module("metrics_sink")
class MetricsHook(Hook):
    """Write metrics.jsonl (rank 0), mirror to TensorBoard and wandb, and stop on a non-finite loss.

    Args:
        run_dir: the run directory.
        log_interval: iterations between ``train`` lines.
        world_size: processes in the job (images per step = batch × world size).
        is_main: only the main rank writes files.
        tensorboard: also write TensorBoard events to ``run_dir/tb``.
        wandb_run: an initialised wandb run (or ``None``).
    """

    priority = "LOW"

    def __init__(self, run_dir: str, log_interval: int = 50, world_size: int = 1, is_main: bool = True,
                 tensorboard: bool = False, wandb_run: Any = None):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.run_dir = run_dir
        self.log_interval = max(1, log_interval)
        self.world_size = world_size
        self.is_main = is_main
        self.tensorboard = tensorboard
        self.wandb_run = wandb_run
        self._tb = None
        self._t_epoch = self._t_val = 0.0
        self._images = 0

    # -- sinks -------------------------------------------------------------------------------------------------
    def before_run(self, runner: Any) -> None:
        if self.is_main and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(os.path.join(self.run_dir, "tb"))

    def _write(self, row: dict, step: int) -> None:
        if not self.is_main:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
        except OSError as exc:  # a failed flush (full disk) does not say which file: the record's error should
            raise OSError(exc.errno, exc.strerror, self.path) from None
        scalars = {f"{row['kind']}/{k}": v for k, v in row.items()
                   if k not in ("kind", "epoch", "iter") and isinstance(v, (int, float))}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self.wandb_run is not None:
            self.wandb_run.log({**scalars, "epoch": row["epoch"]}, step=step)

    def after_run(self, runner: Any) -> None:
        if self._tb is not None:
            self._tb.close()

    # -- training ----------------------------------------------------------------------------------------------
    def before_train(self, runner: Any) -> None:
        """After a resume, validate the checkpoint's epoch if the killed run did not get to log it.

        Checkpoints are saved at the end of the training epoch, before validation, so a run killed in between
        would miss one validation row; running it here keeps the record identical to an uninterrupted run.
        """
        from mixbench.engine.dist import broadcast_object

        epoch = runner.epoch
        if epoch == 0 or epoch % runner.train_loop.val_interval != 0 or runner.val_loop is None:
            return
        have = self._logged_val_epochs() if self.is_main else None
        have = broadcast_object(have)
        if epoch not in have:
            runner.val_loop.run()

    def _logged_val_epochs(self) -> set:
        return {r["epoch"] for r in read_metrics(self.path) if r.get("kind") == "val"}

    def before_train_epoch(self, runner: Any) -> None:
        _sync(unwrap(runner.model).data_preprocessor.device)
        self._t_epoch = time.perf_counter()
        self._images = 0

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        labels = data_batch["labels"] if isinstance(data_batch, dict) else None
        self._images += (int(labels.shape[0]) if labels is not None else 0) * self.world_size
        device = unwrap(runner.model).data_preprocessor.device
        loss = outputs["loss"].detach() if outputs and "loss" in outputs else torch.tensor(math.nan, device=device)
        value, bad_rank = loss_check(loss)
        where = f"at epoch {runner.epoch + 1}, iteration {runner.iter + 1}"
        if not math.isfinite(value):
            raise NonFiniteLoss(f"loss is {value} {where}")
        if bad_rank is not None:  # stop with the rank that saw it, so that no rank waits for the others
            raise NonFiniteLoss(f"loss is not finite on rank {bad_rank} {where}")
        last = batch_idx + 1 == len(runner.train_loop.dataloader)
        if (runner.iter + 1) % self.log_interval == 0 or last:
            row = {"kind": "train", "epoch": runner.epoch + 1, "iter": runner.iter + 1,
                   "lr": float(runner.optim_wrapper.get_lr()["lr"][0])}
            row.update({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in outputs.items()})
            self._write(row, runner.iter + 1)

    def after_train_epoch(self, runner: Any) -> None:
        _sync(unwrap(runner.model).data_preprocessor.device)
        seconds = time.perf_counter() - self._t_epoch
        self._write({"kind": "epoch", "epoch": runner.epoch + 1, "train_s": seconds, "images": self._images,
                     "images_per_s": self._images / max(seconds, 1e-9)}, runner.iter)

    def before_val_epoch(self, runner: Any) -> None:
        self._t_val = time.perf_counter()

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        row = {"kind": "val", "epoch": runner.epoch, "val_s": time.perf_counter() - self._t_val}
        row.update({k: float(v) for k, v in (metrics or {}).items()})
        self._write(row, runner.iter)


@HOOKS.register_module("progress_bar")
class ProgressHook(Hook):
    """A tqdm bar per epoch on the main rank with the running loss."""

    priority = "LOWEST"

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None

    def before_train_epoch(self, runner: Any) -> None:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=len(runner.train_loop.dataloader), leave=False, file=sys.stderr,
                             desc=f"epoch {runner.epoch + 1}/{runner.max_epochs}", dynamic_ncols=True)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if outputs and "loss" in outputs and (batch_idx % 10 == 0):
                self._bar.set_postfix(loss=f"{float(outputs['loss'].detach()):.3f}")

    def after_train_epoch(self, runner: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        if self.enabled and metrics:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(f"epoch {runner.epoch}/{runner.max_epochs}  {shown}", file=sys.stderr, flush=True)
