"""Wide ResNet for 32×32 inputs.

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016); reference code
github.com/szagoruyko/wide-residual-networks and the PyTorch port used by mixup papers
(github.com/xternalz/WideResNet-pytorch, OpenMixup ``WideResNet``). Depth ``6n+4``: a 16-channel 3×3 stem,
three groups of ``n`` pre-activation blocks with ``16k, 32k, 64k`` channels (strides 1, 2, 2), dropout
between the two convolutions of each block, and a final BN-ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.errors import ConfigError
from mixbench.models.backbones.resnet_cifar import init_weights
from mixbench.registry import BACKBONES


class WideBlock(nn.Module):
    """BN-ReLU-conv, dropout, BN-ReLU-conv; a 1×1 projection of the pre-activated input when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(self.drop(self.relu(self.bn2(self.conv1(out)))))
        return out + skip


class WideResNet(nn.Module):
    """WRN-depth-k (see module docstring).

    Args:
        depth: ``6n + 4`` (28 → 4 blocks per group).
        widen_factor: k.
        dropout: dropout probability inside each block.
        in_chans: input channels.
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, in_chans: int = 3):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ConfigError(f"model.backbone.depth: WRN depth must be 6n+4 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        cin, groups = 16, []
        for i, cout in enumerate(widths):
            blocks = [WideBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1, dropout)
                      for j in range(n)]
            groups.append(nn.Sequential(*blocks))
            cin = cout
        self.block1, self.block2, self.block3 = groups
        self.final = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.num_features = cin
        self.num_prefix_tokens = 0
        init_weights(self)

    def mix_points(self) -> list[nn.Module]:
        return [self.block1, self.block2, self.block3]

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.block3(self.block2(self.block1(self.stem(x)))))


@BACKBONES.register_module("wrn28")
def wrn28(in_chans: int = 3, widen_factor: int = 10, dropout: float = 0.0, depth: int = 28) -> WideResNet:
    """Wide ResNet-28-k for 32×32 inputs (k = ``widen_factor``, 64k features); ``depth`` may change 28."""
    return WideResNet(depth, widen_factor, dropout, in_chans)
