"""Any torchvision classification model as a mixbench backbone (random init, classifier removed).

torchvision: github.com/pytorch/vision (``torchvision.models``). ``weights=None`` always: nothing is downloaded.
Features are the last feature map before global pooling for the CNN families (ResNet/ResNeXt/Wide-ResNet,
RegNet, and every model with a ``features`` trunk: VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt, MNASNet,
Swin, ...), the encoder tokens for ViT, and the pooled vector (classifier replaced by identity) for the rest.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.errors import ConfigError
from mixbench.registry import BACKBONES, closest

_PROBE_SIZES = (64, 224, 299)


def _replace_first_conv(model: nn.Module, in_chans: int) -> None:
    """Rebuild the first ``Conv2d`` (the stem) for ``in_chans`` input channels."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(in_chans, child.out_channels, child.kernel_size, child.stride, child.padding,
                                child.dilation, child.groups, child.bias is not None, child.padding_mode)
                setattr(parent, child_name, new)
                return


def _resnet_features(m: nn.Module, x: Tensor) -> Tensor:
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def _vit_tokens(m: nn.Module, x: Tensor) -> Tensor:
    x = m._process_input(x)
    x = torch.cat([m.class_token.expand(x.shape[0], -1, -1), x], dim=1)
    return m.encoder(x)


def _with_params(modules: Any) -> list[nn.Module]:
    """Modules that compute something learnable (skips ReLU/pooling entries of ``features`` trunks)."""
    return [m for m in modules if any(True for _ in m.parameters())]


def _plan(model: nn.Module) -> tuple[Callable[[nn.Module, Tensor], Tensor], list[nn.Module], int]:
    """How to compute features for this model family: (features fn, mix points, prefix tokens)."""
    if all(hasattr(model, a) for a in ("layer4", "fc", "maxpool")):
        return _resnet_features, [model.layer1, model.layer2, model.layer3, model.layer4], 0
    if hasattr(model, "trunk_output") and hasattr(model, "stem"):
        return (lambda m, x: m.trunk_output(m.stem(x))), list(model.trunk_output), 0
    if hasattr(model, "encoder") and hasattr(model, "class_token"):
        return _vit_tokens, list(model.encoder.layers), 1
    if hasattr(model, "features") and hasattr(model, "permute") and hasattr(model, "norm"):  # Swin
        return (lambda m, x: m.permute(m.norm(m.features(x)))), list(model.features), 0
    if isinstance(getattr(model, "features", None), nn.Sequential):
        relu_after = type(model).__name__ == "DenseNet"  # DenseNet applies its final ReLU in forward
        fn = (lambda m, x: F.relu(m.features(x))) if relu_after else (lambda m, x: m.features(x))
        return fn, _with_params(model.features.children()), 0
    return _pooled_fallback(model)


def _pooled_fallback(model: nn.Module) -> tuple[Callable[[nn.Module, Tensor], Tensor], list[nn.Module], int]:
    for attr in ("fc", "classifier", "head", "heads"):
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Identity())
            break
    if hasattr(model, "aux_logits"):  # Inception/GoogLeNet: plain tensor output in train mode too
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)
    points = _with_params(model.children())  # registration order, which is forward order in torchvision
    return (lambda m, x: m(x)), points, 0


class TorchvisionBackbone(nn.Module):
    """Wraps a torchvision classifier so that ``forward`` returns features (see module docstring)."""

    def __init__(self, model: nn.Module, probe_chans: int):
        super().__init__()
        self.model = model
        self._features, self._points, self.num_prefix_tokens = _plan(model)
        self.num_features = self._probe(probe_chans)

    def _probe(self, chans: int) -> int:
        """Feature width from one forward in eval mode (the classifier's in_features is not always it)."""
        was_training, errors = self.training, []
        self.eval()
        try:
            fixed = getattr(self.model, "image_size", None)  # ViT only runs at its configured size
            for size in ((fixed,) if isinstance(fixed, int) else _PROBE_SIZES):
                try:
                    with torch.no_grad():
                        out = self.forward(torch.zeros(1, chans, size, size))
                    return int(out.shape[1] if out.dim() in (2, 4) else out.shape[-1])
                except (RuntimeError, ValueError, AssertionError) as err:
                    errors.append(f"{size}px: {err}")
        finally:
            self.train(was_training)
        raise ConfigError(f"model.backbone: could not run torchvision model on a probe input ({errors[-1]})")

    def mix_points(self) -> list[nn.Module]:
        return list(self._points)

    def forward(self, x: Tensor) -> Tensor:
        return self._features(self.model, x)


@BACKBONES.register_module("torchvision")
def torchvision_backbone(name: str, in_chans: int = 3, **kwargs: Any) -> TorchvisionBackbone:
    """Any torchvision classification model by ``name`` (e.g. ``resnet50``), random init, no classifier.

    Args:
        name: a name from ``torchvision.models.list_models(torchvision.models)``.
        in_chans: input channels (the stem convolution is rebuilt when not 3).
        **kwargs: forwarded to the model builder (``image_size`` for ViT, ``dropout``...).
    """
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ConfigError(f"model.backbone.name: unknown torchvision model '{name}'; {closest(name, names)}")
    if "weights" in kwargs:
        raise ConfigError("model.backbone.weights: torchvision weights are never downloaded; models start random")
    try:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model.backbone: torchvision model '{name}' rejected its options: {err}") from None
    if in_chans != 3:
        _replace_first_conv(model, in_chans)
    return TorchvisionBackbone(model, in_chans)
