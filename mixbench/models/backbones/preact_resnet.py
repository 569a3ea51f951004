"""Pre-activation ResNet for 32×32 inputs.

He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016). CIFAR variant (3×3 stem, no max-pool)
as in the mixup reference code: github.com/facebookresearch/mixup-cifar10 (``models/preact_resnet.py``) and
OpenMixup's ``PreActResNet``. A final BN-ReLU normalises the features before pooling.
"""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.models.backbones.resnet_cifar import init_weights
from mixbench.registry import BACKBONES


class PreActBlock(nn.Module):
    """BN-ReLU-conv ×2; the projection shortcut reads the pre-activated input."""

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut = (nn.Conv2d(cin, planes, 1, stride, bias=False)
                         if stride != 1 or cin != planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet with four stages of ``width·{1,2,4,8}`` planes (strides 1, 2, 2, 2).

    Args:
        layers: blocks per stage.
        in_chans: input channels.
        width: planes of the first stage.
    """

    def __init__(self, layers: list[int], in_chans: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        cin, stages = width, []
        for i, depth in enumerate(layers):
            planes = width * 2 ** i
            blocks = []
            for j in range(depth):
                blocks.append(PreActBlock(cin, planes, 2 if (i > 0 and j == 0) else 1))
                cin = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.final = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.num_features = cin
        self.num_prefix_tokens = 0
        init_weights(self)

    def mix_points(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.final(x)


@BACKBONES.register_module("preact_resnet18")
def preact_resnet18(in_chans: int = 3, width: int = 64) -> PreActResNet:
    """Pre-activation ResNet-18 for 32×32 inputs, 512 features."""
    return PreActResNet([2, 2, 2, 2], in_chans, width)
