"""ResNet and ResNeXt for 32×32 inputs: 3×3 stride-1 stem and no max-pool.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016); Xie et al., "Aggregated Residual
Transformations for Deep Neural Networks" (CVPR 2017). The CIFAR variant (3×3 stem, stages at 32/16/8/4) is the
one used by mixup benchmarks: OpenMixup ``ResNet_CIFAR``/``ResNeXt_CIFAR`` (github.com/Westlake-AI/openmixup,
``openmixup/models/backbones/resnet_mmcls.py``) and github.com/kuangliu/pytorch-cifar.
"""

from __future__ import annotations

from typing import Type

from torch import Tensor, nn

from mixbench.registry import BACKBONES


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or 1×1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(cin, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt, stride here as in torchvision's v1.5), 1×1 expand ×4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64):
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _projection(cin, planes * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetCIFAR(nn.Module):
    """ResNet/ResNeXt with a 3×3 stem; four stages of ``width·{1,2,4,8}`` planes, strides 1, 2, 2, 2.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage.
        in_chans: input channels.
        width: planes of the first stage (64 in the papers; smaller for quick tests).
        groups: cardinality (ResNeXt).
        width_per_group: bottleneck width per group at 64 planes (ResNeXt's "d").
        zero_init_residual: start every residual branch at zero (last BN weight 0).
    """

    def __init__(self, block: Type[BasicBlock | Bottleneck], layers: list[int], in_chans: int = 3,
                 width: int = 64, groups: int = 1, width_per_group: int = 64, zero_init_residual: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        cin, stages = width, []
        for i, depth in enumerate(layers):
            planes = width * 2 ** i
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, planes, 2 if (i > 0 and j == 0) else 1, groups, width_per_group))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features = cin
        self.num_prefix_tokens = 0
        init_weights(self, zero_init_residual)

    def mix_points(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """He-normal convolutions (fan-out), unit/zero BatchNorm; optionally zero the last BN of each residual."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
            if isinstance(m, (BasicBlock, Bottleneck)) and last is not None:
                nn.init.zeros_(last.weight)


@BACKBONES.register_module("resnet18_cifar")
def resnet18_cifar(in_chans: int = 3, width: int = 64, zero_init_residual: bool = False) -> ResNetCIFAR:
    """ResNet-18 for 32×32 inputs (3×3 stem, no max-pool), 512 features."""
    return ResNetCIFAR(BasicBlock, [2, 2, 2, 2], in_chans, width, zero_init_residual=zero_init_residual)


@BACKBONES.register_module("resnet34_cifar")
def resnet34_cifar(in_chans: int = 3, width: int = 64, zero_init_residual: bool = False) -> ResNetCIFAR:
    """ResNet-34 for 32×32 inputs (3×3 stem, no max-pool), 512 features."""
    return ResNetCIFAR(BasicBlock, [3, 4, 6, 3], in_chans, width, zero_init_residual=zero_init_residual)


@BACKBONES.register_module("resnet50_cifar")
def resnet50_cifar(in_chans: int = 3, width: int = 64, zero_init_residual: bool = False) -> ResNetCIFAR:
    """ResNet-50 for 32×32 inputs (3×3 stem, no max-pool, bottlenecks), 2048 features."""
    return ResNetCIFAR(Bottleneck, [3, 4, 6, 3], in_chans, width, zero_init_residual=zero_init_residual)


@BACKBONES.register_module("resnext50_32x4d_cifar")
def resnext50_32x4d_cifar(in_chans: int = 3, width: int = 64, groups: int = 32, width_per_group: int = 4,
                          zero_init_residual: bool = False) -> ResNetCIFAR:
    """ResNeXt-50 (32×4d) for 32×32 inputs (3×3 stem, no max-pool), 2048 features."""
    return ResNetCIFAR(Bottleneck, [3, 4, 6, 3], in_chans, width, groups, width_per_group, zero_init_residual)
