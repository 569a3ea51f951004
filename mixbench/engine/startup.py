"""Start-up work of mmengine and wandb that no run of mixbench uses, skipped (docs/architecture.md, "Environment notes").

A short run spends more on what happens once per process than on its training loop; four of those costs
produce nothing a mixbench run shows or stores:

1. **The logger's level.** mmengine's ``MMLogger`` sets ``log_level`` on its handlers only, so the logger
   itself reports every level as enabled and work done only for INFO messages runs even when nothing shows
   them: the Runner's environment report (``collect_env``) imports torchvision and mmcv and asks the
   compilers for their versions, about a second per run. :func:`patch_logger_level` gives the logger the
   level of its handlers (what it prints is unchanged), so ``isEnabledFor`` answers truthfully.
2. **The Visualizer's figure.** mmengine's ``Visualizer`` builds a matplotlib figure in its constructor, for
   drawing images; mixbench's Runner draws none (metrics go to ``metrics.jsonl``, TensorBoard and wandb).
   :func:`patch_visualizer_figure` builds the figure on first use, so matplotlib is imported only by a
   caller that draws.
3. **mmcv.** When it wraps the model, the Runner converts SyncBatchNorm layers, mmcv's among them, so it
   imports mmcv to look for its layer class (a few tenths of a second). A model can hold one of mmcv's layers
   only if mmcv was imported to build it; :func:`patch_mmcv_probe` skips the probe when it was not.
4. **wandb's launch inputs.** ``wandb.init`` imports wandb's Launch package (its public API models, about
   half a second) to apply job inputs staged by ``wandb.launch`` calls. Those calls live in that package, so
   when it has not been imported nothing can have been staged; :func:`patch_wandb_launch_inputs` skips the
   import then, and applies staged inputs as before otherwise.

:func:`apply` installs the first three (idempotent; :func:`mixbench.engine.compat.apply` calls it), and
:func:`mixbench.engine.run.init_wandb` the fourth, once it has imported wandb: a run without wandb never
imports it.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

_LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"


def patch_logger_level() -> None:
    """``MMLogger``'s own level becomes the lowest level of its handlers (what reaches them is unchanged)."""
    from mmengine.logging import MMLogger

    if getattr(MMLogger.__init__, "_mixbench", False):
        return
    init = MMLogger.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self.handlers:
            self.setLevel(min(h.level for h in self.handlers))

    __init__._mixbench = True  # type: ignore[attr-defined]
    MMLogger.__init__ = __init__


class _Unbuilt:
    """What the Visualizer's constructor reads as its figure: it asks only for the dpi, which is read again
    from the real figure when it is needed."""

    @staticmethod
    def get_dpi() -> None:
        return None


def _figure(self: Any) -> tuple:
    """(canvas, figure, axes) of a Visualizer, built on the first call after its constructor."""
    if self.__dict__.get("_mixbench_constructing"):
        return None, _Unbuilt, None
    if "_mixbench_figure" not in self.__dict__:
        self.__dict__["_mixbench_figure"] = self._initialize_fig(self.fig_save_cfg)
    return self.__dict__["_mixbench_figure"]


def _lazy(position: int) -> property:
    """A Visualizer attribute read from its lazily built figure; the constructor's assignments are ignored."""
    return property(lambda self: _figure(self)[position], lambda self, value: None)


def patch_visualizer_figure() -> None:
    """mmengine's ``Visualizer`` builds its matplotlib figure when it is first used, not when it is built."""
    from mmengine.visualization import Visualizer

    if hasattr(Visualizer, "_eager_initialize_fig"):
        return
    init, signature = Visualizer.__init__, inspect.signature(Visualizer.__init__)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        image = bound.arguments.pop("image", None)  # drawn once the constructor is done, on the real figure
        self.__dict__["_mixbench_constructing"] = True
        try:
            init(*bound.args, **bound.kwargs)
        finally:
            del self.__dict__["_mixbench_constructing"]
        if image is not None:
            self.set_image(image)

    eager = Visualizer._initialize_fig

    def _initialize_fig(self: Any, fig_cfg: dict) -> tuple:
        return (None, _Unbuilt, None) if self.__dict__.get("_mixbench_constructing") else eager(self, fig_cfg)

    Visualizer._eager_initialize_fig = eager
    Visualizer._initialize_fig = _initialize_fig
    Visualizer.__init__ = __init__
    Visualizer.fig_save_canvas, Visualizer.fig_save, Visualizer.ax_save = _lazy(0), _lazy(1), _lazy(2)
    Visualizer.dpi = property(lambda self: self.fig_save.get_dpi(), lambda self, value: None)


def patch_mmcv_probe() -> None:
    """mmengine's SyncBN reversal asks for mmcv only when mmcv is imported: a model built without it holds
    none of mmcv's layers."""
    from mmengine.model import utils

    probe = utils.mmcv_full_available
    if getattr(probe, "_mixbench", False):
        return

    def mmcv_full_available() -> bool:
        return "mmcv" in sys.modules and probe()

    mmcv_full_available._mixbench = True  # type: ignore[attr-defined]
    utils.mmcv_full_available = mmcv_full_available


def patch_wandb_launch_inputs() -> None:
    """``wandb.init`` imports the Launch package only when Launch inputs can have been staged."""
    try:
        from wandb.sdk.wandb_run import Run
    except ImportError:  # wandb is optional
        return
    apply_inputs = getattr(Run, "_detect_and_apply_job_inputs", None)
    if apply_inputs is None or getattr(apply_inputs, "_mixbench", False):
        return

    @functools.wraps(apply_inputs)
    def detect_and_apply(self: Any) -> None:
        if _LAUNCH_INPUTS in sys.modules:
            apply_inputs(self)

    detect_and_apply._mixbench = True  # type: ignore[attr-defined]
    Run._detect_and_apply_job_inputs = detect_and_apply


def apply() -> None:
    """Install the logger, Visualizer and mmcv patches (idempotent)."""
    patch_logger_level()
    patch_visualizer_figure()
    patch_mmcv_probe()
