"""Tiny models and a reference train step for the dynamic-policy tests (interface C of the classifier)."""

from __future__ import annotations

from torch import nn

from mixbench.mixups.base import MixContext
from mixbench.models.signals import build_signals


class TinyViT(nn.Module):
    """timm VisionTransformer returning tokens (N, L, C), like the ``timm`` backbone entry."""

    def __init__(self, img_size: int = 16, patch_size: int = 4, in_chans: int = 1, dim: int = 32, depth: int = 2,
                 heads: int = 2, fused: bool | None = None):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=dim,
                                     depth=depth, num_heads=heads, num_classes=0)
        if fused is not None:
            for m in self.vit.modules():
                if hasattr(m, "fused_attn"):
                    m.fused_attn = fused
        self.num_features = dim
        self.num_prefix_tokens = self.vit.num_prefix_tokens

    def forward(self, x):
        return self.vit.forward_features(x)


class TinyCNN(nn.Module):
    def __init__(self, in_chans: int = 1, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
                                   nn.ReLU())
        self.num_features = 2 * width

    def mix_points(self):
        return [self.stem, self.stage]

    def forward(self, x):
        return self.stage(self.stem(x))


class Head(nn.Module):
    def __init__(self, dim: int, num_classes: int, prefix: int = 0):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)
        self.prefix = prefix

    def forward(self, f):
        if f.dim() == 4:
            f = f.mean((2, 3))
        elif f.dim() == 3:
            f = f[:, 0] if self.prefix else f.mean(1)
        return self.fc(f)


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = Head(backbone.num_features, num_classes, getattr(backbone, "num_prefix_tokens", 0))


def vit(num_classes: int = 10, **kw) -> Classifier:
    return Classifier(TinyViT(**kw), num_classes)


def cnn(num_classes: int = 10, **kw) -> Classifier:
    return Classifier(TinyCNN(**kw), num_classes)


def train_step(model: Classifier, policy, loss_fn, x, y, num_classes: int, generator, progress: float = 0.0):
    """One step as the classifier runs it: signals → policy → capture+forward (+feature mix) → relabel → loss."""
    ctx = MixContext(generator=generator, progress=progress, model=model)
    ctx.signals = build_signals(model, x, y, policy.needs)
    batch = policy(x, y, num_classes, ctx)
    handle = None
    if batch.layer is not None:
        target = model.backbone.mix_points()[batch.layer - 1]
        handle = target.register_forward_hook(lambda m, i, o: batch.mix_features(o))
    try:
        with policy.capture(model) as captured:
            feats = model.backbone(batch.inputs)
            logits = model.head(feats)
    finally:
        if handle is not None:
            handle.remove()
    batch = policy.relabel(batch, {"logits": logits, "features": feats, **captured}, ctx)
    loss = loss_fn(logits, batch).mean()
    for extra in batch.extras.get("losses", {}).values():
        loss = loss + extra
    return loss, batch, logits
