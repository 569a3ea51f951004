"""AttentiveMix (Attentive CutMix): keep the anchor's most attended grid cells, fill the rest from the partner.

Walawalkar et al., "Attentive CutMix: An Enhanced Data Augmentation Approach for Deep Learning Based Image
Classification", ICASSP 2020 (arXiv:2003.13048). Reference: xden2331/attentive_cutmix
``attentive_transform.py``; OpenMixup ``augments/attentivemix.py`` ("AttentiveMix+", the variant here).

The feature map comes from a frozen extractor (signal ``features``, no grad): the model being trained (eval
mode) when ``extractor`` is None, or a local checkpoint of a torchvision architecture (OpenMixup uses an
ImageNet ResNet-18 on inputs upsampled to 224 — pass ``extractor`` and ``feat_size: 224``). Nothing is ever
downloaded. The channel-mean map (h×w) ranks the cells; k = clip(⌊h·w·λ⌋, 1, h·w) with λ ~ Beta(α, α) per
batch; those k cells keep the anchor (M = 1), the others come from the partner; the label weight is the
realised mean(M). OpenMixup's docs say λ ~ Beta(α, 8) but its code draws Beta(α, α), as here; its per-sample
Python loop is a batched top-k here.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.errors import ConfigError
from mixbench.mixups._ops import blend
from mixbench.mixups._tokens import rank_select
from mixbench.mixups.base import MixBatch, MixContext, MixPolicy, pair_batch, sample_beta
from mixbench.ranges import COUNT, POSITIVE
from mixbench.registry import MIXUPS


class FrozenExtractor(nn.Module):
    """A torchvision classification model without its pooling and classifier, frozen, from a local file."""

    def __init__(self, arch: str, checkpoint: str):
        super().__init__()
        import torchvision

        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"mixup.extractor: no such checkpoint file '{checkpoint}' (a local torchvision "
                              f"'{arch}' state dict; nothing is downloaded)")
        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"mixup.extractor_arch: unknown torchvision model '{arch}'")
        net = torchvision.models.get_model(arch, weights=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        # the pooling and classifier are dropped, so their keys may be absent; a body key that is absent means a
        # checkpoint of another layout (e.g. "module."/"backbone." prefixes), which would leave random weights
        kept = list(net.named_children())[:-2]
        missing = net.load_state_dict(state, strict=False).missing_keys
        missing = [k for k in missing if k.split(".", 1)[0] in dict(kept)]
        if missing:
            raise ConfigError(f"mixup.extractor: '{checkpoint}' is not a torchvision '{arch}' state dict "
                              f"({len(missing)} weights missing, e.g. '{missing[0]}')")
        self.body = nn.Sequential(*(m for _, m in kept))
        first = next(m for m in self.body.modules() if isinstance(m, nn.Conv2d))
        self.in_chans = first.in_channels
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenExtractor":
        return super().train(False)  # always frozen

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.in_chans:
            x = x.mean(1, keepdim=True).expand(-1, self.in_chans, -1, -1)
        return self.body(x)


def attentive_mask(fmap: Tensor, lam: Tensor, height: int, width: int) -> Tensor:
    """(N, 1, H, W) anchor mask: the top-k cells of the channel-mean map, k = clip(⌊h·w·λ⌋, 1, h·w)."""
    n, _, h, w = fmap.shape
    k = torch.floor(lam.double() * h * w).long().clamp(1, h * w)
    keep = rank_select(fmap.float().mean(1).flatten(1), k.expand(n)).float().view(n, 1, h, w)
    return F.interpolate(keep, size=(height, width), mode="nearest")


@MIXUPS.register_module("attentivemix")
class AttentiveMix(MixPolicy):
    """AttentiveMix+ (OpenMixup variant of Walawalkar et al., ICASSP 2020): top-k feature cells keep the anchor.

    Args:
        alpha: Beta(α, α) of λ (OpenMixup 2).
        extractor: local checkpoint of a frozen feature extractor; ``None`` = the model being trained.
        extractor_arch: torchvision architecture of ``extractor`` (OpenMixup: resnet18).
        feat_size: resize inputs to this side before the extractor (OpenMixup 224); ``None`` = as they are.
        prob: probability of mixing a batch. partner: ``perm`` (reference).
    """

    needs = ("features",)

    ranges = {"alpha": POSITIVE, "feat_size": COUNT}

    def __init__(self, alpha: float = 2.0, extractor: str | None = None, extractor_arch: str = "resnet18",
                 feat_size: int | None = None, prob: float = 1.0, partner: str = "perm"):
        super().__init__(alpha=alpha, prob=prob, partner=partner)
        self.extractor = extractor
        self.extractor_arch = extractor_arch
        self.feat_size = feat_size
        self._net = FrozenExtractor(extractor_arch, extractor) if extractor else None

    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        n, dev = labels.shape[0], inputs.device
        lam = sample_beta(self.alpha, 1, ctx.generator, dev)
        index = self.partner_index(n, ctx, dev)
        if self._net is not None:
            self._net.to(dev)
        fmap = ctx.signal("features", extractor=self._net, size=self.feat_size)
        return self.mix_with(inputs, labels, num_classes, fmap, lam, index)

    def mix_with(self, inputs: Tensor, labels: Tensor, num_classes: int, fmap: Tensor, lam: Tensor,
                 index: Tensor) -> MixBatch:
        h, w = inputs.shape[-2:]
        mask = attentive_mask(fmap, lam, h, w)
        x = blend(inputs, index, mask)
        ratio = mask.flatten(1).mean(1)
        return pair_batch(x, labels, num_classes, index, ratio, mask=mask)
