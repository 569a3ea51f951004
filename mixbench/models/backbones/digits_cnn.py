"""A small CNN for the offline digits set (16×16 grey images), fast enough for CPU end-to-end runs."""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.registry import BACKBONES


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitsCNN(nn.Module):
    """Three conv stages (width, 2·width, 4·width channels; the last two stride 2); output N×4w×H/4×W/4.

    Args:
        in_chans: input channels (1 for digits).
        width: channels of the first stage.
        dropout: spatial dropout before the last stage (0 disables).
    """

    def __init__(self, in_chans: int = 1, width: int = 32, dropout: float = 0.0):
        super().__init__()
        self.stage1 = nn.Sequential(conv_bn_relu(in_chans, width), conv_bn_relu(width, width))
        self.stage2 = conv_bn_relu(width, 2 * width, stride=2)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.stage3 = conv_bn_relu(2 * width, 4 * width, stride=2)
        self.num_features = 4 * width
        self.num_prefix_tokens = 0

    def mix_points(self) -> list[nn.Module]:
        return [self.stage1, self.stage2, self.stage3]

    def forward(self, x: Tensor) -> Tensor:
        return self.stage3(self.drop(self.stage2(self.stage1(x))))


@BACKBONES.register_module("digits_cnn")
def digits_cnn(in_chans: int = 1, width: int = 32, dropout: float = 0.0) -> DigitsCNN:
    """Small 3-stage CNN for 16×16 digits (≈0.1M parameters at width 32)."""
    return DigitsCNN(in_chans, width, dropout)
