"""Any timm model as a mixbench backbone (features from ``forward_features``; never downloads weights).

timm: github.com/huggingface/pytorch-image-models. The model is created with ``num_classes=0`` (no
classifier); ``pretrained`` weights come only from a local ``checkpoint`` file, loaded by timm's own
pretrained loader (which adapts ``in_chans`` and drops the classifier weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mixbench.errors import ConfigError
from mixbench.registry import BACKBONES, closest

_CONTAINERS = ("stages", "layers", "blocks", "features")


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The model's stages in forward order: children of ``stages``/``layers``/``blocks``, else ``layer1..4``."""
    for attr in _CONTAINERS:
        container = getattr(model, attr, None)
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container) > 0:
            return list(container)
    layers = [getattr(model, f"layer{i}") for i in range(1, 5) if isinstance(getattr(model, f"layer{i}", None),
                                                                              nn.Module)]
    if layers:
        return layers
    info = getattr(model, "feature_info", None)
    if isinstance(info, list):
        return [model.get_submodule(f["module"]) for f in info if f.get("module")]
    return []


class TimmBackbone(nn.Module):
    """Wraps a timm model: ``forward`` = ``forward_features`` (NHWC outputs are returned as NCHW)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self.channels_last_output = getattr(model, "output_fmt", "NCHW") == "NHWC"
        self._stages = stage_modules(model)

    def mix_points(self) -> list[nn.Module]:
        return list(self._stages)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.model.forward_features(x)
        if self.channels_last_output and feats.dim() == 4:
            feats = feats.permute(0, 3, 1, 2)
        return feats


@BACKBONES.register_module("timm")
def timm_backbone(name: str, in_chans: int = 3, pretrained: bool = False, checkpoint: str | None = None,
                  **kwargs: Any) -> TimmBackbone:
    """Any timm model by ``name`` (e.g. ``vit_tiny_patch16_224``); extra options go to ``timm.create_model``.

    Args:
        name: a timm model name (``timm.list_models()``).
        in_chans: input channels.
        pretrained: load weights from ``checkpoint`` (a local file; nothing is ever downloaded).
        checkpoint: path of a timm/PyTorch state dict (``.pth``/``.bin``/``.safetensors``).
        **kwargs: forwarded to ``timm.create_model`` (``img_size``, ``drop_path_rate``...).
    """
    import timm

    if name not in timm.list_models():
        raise ConfigError(f"model.backbone.name: unknown timm model '{name}'; {closest(name, timm.list_models())}")
    if pretrained and not checkpoint:
        raise ConfigError("model.backbone.pretrained: timm weights are never downloaded; set "
                          "model.backbone.checkpoint to a local weights file")
    extra: dict[str, Any] = {}
    if pretrained:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.backbone.checkpoint: file not found: {path}")
        extra["pretrained_cfg_overlay"] = {"file": str(path)}
    try:
        model = timm.create_model(name, pretrained=bool(pretrained), num_classes=0, in_chans=in_chans,
                                  **extra, **kwargs)
    except TypeError as err:  # an option the model does not take
        raise ConfigError(f"model.backbone: timm model '{name}' rejected its options: {err}") from None
    return TimmBackbone(model)
