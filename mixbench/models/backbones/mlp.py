"""A multilayer perceptron for tabular data stored as N×F×1×1 (C-Mixup's regression ``Learner``)."""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.registry import BACKBONES


class MLP(nn.Module):
    """``depth`` blocks of Linear → LeakyReLU(``negative_slope``); output N×hidden, mix points after each block.

    C-Mixup's tabular learner (``src/models.py``) is this MLP with two blocks of 128 and slope 0.1, followed by
    a linear output layer (mixbench's ``linear`` head); its manifold variant mixes after the first block.

    Args:
        in_chans: input features (the channels of an N×F×1×1 batch).
        hidden: width of every block.
        depth: number of blocks.
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, in_chans: int, hidden: int = 128, depth: int = 2, negative_slope: float = 0.1):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ValueError(f"depth/hidden: expected ints >= 1, got depth={depth}, hidden={hidden}")
        widths = [in_chans] + [hidden] * depth
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.LeakyReLU(negative_slope))
                                    for a, b in zip(widths[:-1], widths[1:]))
        self.num_features = hidden
        self.num_prefix_tokens = 0

    def mix_points(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for block in self.blocks:
            h = block(h)
        return h


@BACKBONES.register_module("mlp")
def mlp(in_chans: int, hidden: int = 128, depth: int = 2, negative_slope: float = 0.1) -> MLP:
    """MLP for tabular features (N×F×1×1), C-Mixup's regression learner (2 × 128, LeakyReLU 0.1)."""
    return MLP(in_chans, hidden, depth, negative_slope)
