"""The four known breakages of mmengine 0.10.7 on current torch/setuptools, and their workarounds (docs/architecture.md, "Environment notes").

1. **Checkpoints.** torch ≥ 2.6 defaults ``torch.load(weights_only=True)``, and mmengine's checkpoints pickle
   a ``HistoryBuffer`` (numpy arrays, plus references to its own methods, which only full unpickling can
   rebuild), so mmengine's loader fails on them. Full unpickling runs whatever code a file names, so mixbench
   never does it: :func:`patch_history_buffer` leaves the method references out of the pickle (``__setstate__``
   restores them anyway), and :func:`load_checkpoint`, which :func:`patch_checkpoint_loader` installs as
   mmengine's local-file loader, loads with ``weights_only=True`` and allows only :data:`SAFE_GLOBALS`;
   :func:`rewrite_legacy_checkpoint` converts a run dir's checkpoints written before that patch.
   :class:`MixCheckpointHook` writes each checkpoint to a temporary file and renames it, names it in
   ``last_checkpoint``, and only then deletes the outdated ones, so a kill never leaves a run without a
   complete checkpoint (mmengine deletes first and writes in place).
2. **CPU DDP.** ``launcher='pytorch'`` calls ``torch.cuda.set_device`` unconditionally and the default model
   wrapper passes ``device_ids=[LOCAL_RANK]``. mixbench initialises the process group itself before the
   Runner (:mod:`mixbench.engine.dist`), :func:`patch_dist_init` makes mmengine's own init skip the CUDA
   call on machines without CUDA, and :func:`ddp_wrapper_cfg` gives ``device_ids=None`` on CPU.
3. **AMP.** ``AmpOptimWrapper`` asserts a GPU and always uses a GradScaler, also for bf16 where it is not
   needed. :class:`MixAmpOptimWrapper` autocasts on any device and uses a GradScaler only for fp16 on CUDA.
4. **pkg_resources.** setuptools ≥ 82 removed it; ``mmengine.utils.is_installed``/``get_installed_path``
   (used for ``pkg::`` config bases and the hub) import it. :func:`patch_package_utils` swaps in
   ``importlib.metadata`` versions when ``pkg_resources`` cannot be imported.

:func:`apply` installs the patches once, with the start-up savings of :mod:`mixbench.engine.startup`; it is
idempotent.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
from typing import Any, Iterator

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS, OPTIM_WRAPPERS
from torch import nn

from mixbench.engine import startup
from mixbench.results.record import atomic_write_text

# numpy >= 2 moved the array/scalar rebuild functions from numpy.core to numpy._core
_multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray

_APPLIED = False


# -- 1. checkpoints --------------------------------------------------------------------------------------------
# What mmengine's checkpoints pickle besides tensors and builtins: the message hub's HistoryBuffers and the
# numpy arrays, scalars and (numeric) dtypes in them. None of these can run code while being rebuilt.
_NUMERIC_DTYPES = sorted({type(np.dtype(c)) for c in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]},
                         key=lambda t: t.__name__)
SAFE_GLOBALS: list[Any] = [HistoryBuffer, np.ndarray, np.dtype, *_NUMERIC_DTYPES, _multiarray._reconstruct,
                           _multiarray.scalar]


def load_checkpoint(filename: str, map_location: Any = None) -> Any:
    """Load a checkpoint file without running code from it (``weights_only=True`` with :data:`SAFE_GLOBALS`).

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        pickle.UnpicklingError: the file names a global outside the allow-list (a foreign or malicious file).
    """
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(filename, map_location=map_location, weights_only=True)


def _publish(part: str, path: str) -> None:
    """Make the complete file ``part`` appear as ``path`` in one step (fsync, then an atomic rename)."""
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, path)


def rewrite_legacy_checkpoint(path: str) -> bool:
    """Re-save in the weights-only format a checkpoint an older mixbench wrote in a run dir; True if it did.

    Those files hold mmengine's pickled ``getattr(HistoryBuffer, name)`` method references, which a
    weights-only load refuses. The caller passes only files of the run dir it resumes (written by mixbench),
    and only a file whose globals are :data:`SAFE_GLOBALS` plus ``getattr`` is unpickled in full, once; any
    other file is left alone and stays refused.
    """
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS} | {"builtins.getattr"}
    try:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint (truncated, foreign): nothing to rewrite
        return False
    if "builtins.getattr" not in names or not names <= allowed:
        return False
    patch_history_buffer()
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    part = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.part")
    torch.save(ckpt, part)
    _publish(part, path)
    return True


def patch_checkpoint_loader() -> None:
    """Make mmengine's resume and ``load_from`` read local files with :func:`load_checkpoint`."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_checkpoint, force=True)


def _history_buffer_state(self: HistoryBuffer) -> dict:
    # mmengine's __getstate__ adds the statistics methods (pickled as getattr(HistoryBuffer, name), which
    # weights_only refuses) and mutates the live object; __setstate__ re-registers the defaults itself, and
    # custom ones are registered on the class at import time.
    return {k: v for k, v in self.__dict__.items() if k != "statistics_methods"}


def patch_history_buffer() -> None:
    """Pickle ``HistoryBuffer`` without its method references, so checkpoints load under ``weights_only``."""
    HistoryBuffer.__getstate__ = _history_buffer_state


@HOOKS.register_module("MixCheckpointHook", force=True)
class MixCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` in a crash-safe order: write ``.epoch_N.pth.part``, fsync, rename it to
    ``epoch_N.pth``, write ``last_checkpoint`` atomically, and only then delete the outdated checkpoints.

    A kill at any point leaves the previous complete checkpoint in place (also with ``max_keep_ckpts=1``),
    and ``epoch_N.pth`` is never a partial file. Checkpoints are local files in the run dir.
    """

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: dict) -> None:
        outdated: list[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids[0])
            self.keep_ckpt_ids.append(step)  # the deque's maxlen drops the oldest id
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = os.path.join(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        part = f".{filename}.part"
        runner.save_checkpoint(self.out_dir, part, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():  # Runner.save_checkpoint writes on the main process only
            return
        _publish(os.path.join(self.out_dir, part), self.last_ckpt)
        atomic_write_text(os.path.join(runner.work_dir, "last_checkpoint"), self.last_ckpt)
        for old in outdated:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.out_dir, self.filename_tmpl.format(old)))


# -- 2. distributed on CPU ---------------------------------------------------------------------------------------
def patch_dist_init() -> None:
    """Make mmengine's ``_init_dist_pytorch`` skip ``torch.cuda.set_device`` when CUDA is not available."""
    import mmengine.dist.utils as dist_utils

    original = dist_utils._init_dist_pytorch
    if getattr(original, "_mixbench", False):
        return

    def init_dist_pytorch(backend: str, init_backend: str = "torch", **kwargs: Any) -> None:
        if torch.cuda.is_available():
            return original(backend, init_backend=init_backend, **kwargs)
        if backend == "nccl":
            backend = "gloo"  # nccl needs GPUs; gloo is the CPU backend
        torch.distributed.init_process_group(backend=backend, **kwargs)

    init_dist_pytorch._mixbench = True  # type: ignore[attr-defined]
    dist_utils._init_dist_pytorch = init_dist_pytorch


def ddp_wrapper_cfg(device: torch.device) -> dict:
    """mmengine ``model_wrapper_cfg`` for DDP: CPU modules must not get ``device_ids``."""
    cfg: dict[str, Any] = {"type": "MMDistributedDataParallel", "broadcast_buffers": False,
                           "find_unused_parameters": False}
    cfg["device_ids"] = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return cfg


# -- 3. AMP ----------------------------------------------------------------------------------------------------
_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


@OPTIM_WRAPPERS.register_module("MixAmpOptimWrapper", force=True)
class MixAmpOptimWrapper(OptimWrapper):
    """Optimiser wrapper with autocast on CUDA or CPU; a GradScaler only for fp16 on CUDA (bf16 needs none).

    Args:
        dtype: ``"bf16"`` or ``"fp16"``.
        **kwargs: passed to :class:`mmengine.optim.OptimWrapper` (``optimizer``, ``clip_grad``...).
    """

    def __init__(self, dtype: str = "bf16", **kwargs: Any):
        super().__init__(**kwargs)
        if dtype not in _DTYPES:
            raise ValueError(f"runtime.amp: expected bf16 or fp16, got {dtype!r}")
        self.cast_dtype = _DTYPES[dtype]
        self.device_type = "cuda" if torch.cuda.is_available() else "cpu"
        use_scaler = self.cast_dtype == torch.float16 and self.device_type == "cuda"
        self.loss_scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs: Any) -> None:
        if self.loss_scaler is None:
            return super().step(**kwargs)
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()

    def state_dict(self) -> dict:
        state = self.optimizer.state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop("loss_scaler", None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        self.optimizer.load_state_dict(state_dict)

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        device_type = next((p.device.type for p in model.parameters()), self.device_type)
        with super().optim_context(model), torch.autocast(device_type=device_type, dtype=self.cast_dtype):
            yield


# -- 4. pkg_resources --------------------------------------------------------------------------------------------
def is_installed(package: str) -> bool:
    """``mmengine.utils.is_installed`` without pkg_resources."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def get_installed_path(package: str) -> str:
    """``mmengine.utils.get_installed_path`` without pkg_resources."""
    try:
        dist = importlib.metadata.distribution(package)
        top = (dist.read_text("top_level.txt") or package).split()[0]
        path = os.path.join(str(dist.locate_file("")), top)
        if os.path.exists(path):
            return path
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise importlib.metadata.PackageNotFoundError(package)
    return os.path.dirname(spec.origin)


def patch_package_utils(force: bool = False) -> None:
    """Install the importlib versions where mmengine looks them up (only if pkg_resources is missing)."""
    if not force and importlib.util.find_spec("pkg_resources") is not None:
        return
    import mmengine.config.config as mm_config
    import mmengine.hub.hub as mm_hub
    import mmengine.utils as mm_utils
    import mmengine.utils.package_utils as pu

    for mod in (pu, mm_utils, mm_config, mm_hub):
        if hasattr(mod, "is_installed"):
            mod.is_installed = is_installed
        if hasattr(mod, "get_installed_path"):
            mod.get_installed_path = get_installed_path


# Warnings mmengine logs on every run that say nothing about the user's run.
# The last one is the optimiser constructor skipping the frozen momentum encoder of a learned mixer, per parameter.
_NOISE = ("has no metainfo", '"FileClient" will be deprecated', '"HardDiskBackend" is the alias',
          "is skipped since its requires_grad=False")


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in _NOISE)


def quiet_logger() -> None:
    """Drop mmengine's fixed deprecation/metainfo warnings from its logger (all other messages pass)."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    if not any(isinstance(f, _NoiseFilter) for f in logger.filters):
        logger.addFilter(_NoiseFilter())


def apply() -> None:
    """Install every workaround (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    patch_history_buffer()
    patch_checkpoint_loader()
    patch_dist_init()
    patch_package_utils()
    startup.apply()
    _APPLIED = True
