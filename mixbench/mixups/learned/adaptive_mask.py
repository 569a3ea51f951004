"""AdAutoMix's mask generator over n sources (Qin, Jin et al., ICLR 2024; authors' code
``openmixup/models/heads/Ada_mix_pine.py::AdaptiveMask``, OpenMixup ``heads/adaptive_mask.py``).

With f_j (N, C, h, w) the stage features of source j (the features of the clean batch, indexed by the source's
partner indices), 1×1 convolutions give queries q_j = ReLU(W_q f_j), keys k_j = ReLU(W_k f_j) (C → C/r, the
reference's ``ConvModule``, whose default activation is a ReLU) and a value v_j = W_v f_j (C → 1). Source j
attends to the keys of every *other* source:

    A_j = softmax_over_positions( Σ_{i≠j} q_j k_iᵀ / √(C/r) )      (N, hw, hw)
    m_j = A_j v_j                                                   (N, hw) → (N, 1, h, w)

The n maps are upsampled to the input size and a softmax **over the sources** turns them into masks
M_j ∈ [0, 1] with Σ_j M_j = 1 at every pixel; the mixed image is Σ_j M_j ⊙ x_j.

``lam_concat`` appends to f_j a constant channel holding source j's label weight (the reference's option; off
in every released config, so the generator then does not see λ). Attention is computed in float32, as in the
reference, so that autocast does not overflow the logits.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UPSAMPLING = ("nearest", "bilinear", "bicubic")


def source_logits(queries: Sequence[Tensor], keys: Sequence[Tensor], values: Sequence[Tensor],
                  scale: float) -> Tensor:
    """Per-source mask logits (N, n, hw) from flattened queries/keys (N, d, hw) and values (N, 1, hw).

    Σ_{i≠j} q_j k_iᵀ = q_j (Σ_i k_i − k_j)ᵀ, so the key sum is formed once.
    """
    total = torch.stack(list(keys)).sum(0)
    maps = []
    for q, k, v in zip(queries, keys, values):
        scores = torch.einsum("ndp,ndr->npr", q, total - k) * scale  # (N, hw_query, hw_key)
        maps.append(torch.einsum("npr,nr->np", scores.softmax(dim=-1), v[:, 0]))
    return torch.stack(maps, dim=1)


class AdaptiveMask(nn.Module):
    """The n-source mask generator (see the module docstring).

    Args:
        in_channels: channels of the stage features.
        reduction: C / (query and key channels).
        use_scale: divide the attention logits by √(C/r).
        upsampling: interpolation of the h×w maps to the input size (``bilinear`` in the released CIFAR configs).
        lam_concat: append each source's label weight as a constant channel.
    """

    def __init__(self, in_channels: int, reduction: int = 2, use_scale: bool = True, upsampling: str = "bilinear",
                 lam_concat: bool = False):
        super().__init__()
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling: expected one of {', '.join(UPSAMPLING)}, got {upsampling!r}")
        self.lam_concat = bool(lam_concat)
        self.upsampling = upsampling
        width = int(in_channels) + int(self.lam_concat)
        self.inter_channels = max(int(in_channels) // int(reduction), 1)
        self.scale = self.inter_channels ** -0.5 if use_scale else 1.0
        self.query = nn.Sequential(nn.Conv2d(width, self.inter_channels, 1), nn.ReLU())
        self.key = nn.Sequential(nn.Conv2d(width, self.inter_channels, 1), nn.ReLU())
        self.value = nn.Conv2d(width, 1, 1)
        for conv in (self.query[0], self.key[0], self.value):  # the reference's normal(0, 0.01) init, zero bias
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: Sequence[Tensor], weights: Tensor, size: Sequence[int]) -> Tensor:
        """Masks (N, n, H, W) that sum to 1 over the n sources.

        Args:
            feats: n feature maps (N, C, h, w), one per source.
            weights: (n,) label weight of each source (read only with ``lam_concat``).
            size: (H, W) of the images to mix.
        """
        if len(feats) < 2:
            raise ValueError(f"AdaptiveMask mixes at least 2 sources, got {len(feats)}")
        n, _, h, w = feats[0].shape
        queries, keys, values = [], [], []
        for j, f in enumerate(feats):
            f = f.float()
            if self.lam_concat:
                f = torch.cat([f, weights[j].float().expand(n, 1, h, w)], dim=1)
            queries.append(self.query(f).flatten(2).float())
            keys.append(self.key(f).flatten(2).float())
            values.append(self.value(f).flatten(2).float())
        with torch.autocast(feats[0].device.type, enabled=False):
            logits = source_logits(queries, keys, values, self.scale).view(n, len(feats), h, w)
        logits = F.interpolate(logits, size=tuple(size), mode=self.upsampling)
        return logits.softmax(dim=1)
