"""Per-sample regression losses on mixed float targets: MSE (C-Mixup's loss) and L1.

Like every loss in ``LOSSES`` they map ``(outputs (N, D), batch) -> (N,)``; the per-sample value is the mean
over the D outputs, so the model's mean equals PyTorch's ``MSELoss``/``L1Loss`` with ``reduction="mean"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from mixbench.registry import LOSSES

if TYPE_CHECKING:
    from mixbench.mixups.base import MixBatch


def _flat(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    n = outputs.shape[0]
    return outputs.float().reshape(n, -1), targets.float().reshape(n, -1)


class RegressionLoss:
    """Base of the regression losses: no options (an explicit signature, so the builder passes none)."""

    tasks = ("regression",)

    def __init__(self) -> None:
        super().__init__()


@LOSSES.register_module("mse")
class MeanSquaredError(RegressionLoss):
    """Per-sample mean squared error between the outputs and the (mixed) float targets."""

    def __call__(self, outputs: Tensor, batch: MixBatch) -> Tensor:
        y_hat, y = _flat(outputs, batch.targets)
        return (y_hat - y).pow(2).mean(1)


@LOSSES.register_module("l1")
class MeanAbsoluteError(RegressionLoss):
    """Per-sample mean absolute error between the outputs and the (mixed) float targets."""

    def __call__(self, outputs: Tensor, batch: MixBatch) -> Tensor:
        y_hat, y = _flat(outputs, batch.targets)
        return (y_hat - y).abs().mean(1)
