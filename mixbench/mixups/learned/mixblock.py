"""The MixBlock of AutoMix and SAMix (OpenMixup ``heads/pmix_block.py::PixelMixBlock``, the authors' code)
and its mask losses.

From a stage feature map f (N, C, h, w), a partner permutation π and λ, the block computes the **partner**
weight of every pixel:

* ``x_a = f``, ``x_b = f[π]``; optional λ encoding: ``lam_concat`` appends a constant λ channel to x_a and
  1 − λ to x_b (AutoMix on ImageNet); ``lam_mul`` scales them by λ' and 1 − λ' (with ``lam_residual``:
  ``x·(1 + λ'·lam_mul)``), λ' = (4/3·λ³ − 2λ² + k'λ)/(k' − 2/3) with k' = ``lam_mul_k`` + 1 (SAMix; λ' = λ
  when ``lam_mul_k < 0``);
* value ``v = value(x_b)`` (N, hw, 1): a 1×1 conv, or SAMix's ConvNeck (1×1 conv → BN → ELU → 1×1 conv);
* ``q = query(x_a)``, ``k = query(x_b)`` with one shared 1×1 conv C → C/r; with ``x_qk_concat`` both come
  from ``cat(x_a, x_b)`` through a query and a separate key conv (SAMix);
* ``P = softmax(q·kᵀ/√(C/r))`` (N, hw, hw); ``s = sigmoid(up(P·v))``, upsampled to the input size
  (``nearest`` in AutoMix, ``bilinear`` in SAMix). The attention and the sigmoid run in float32 whatever the
  autocast dtype, as the reference forces.

The mixed image is ``x·(1 − s) + x[π]·s``. The reference upsamples by a fixed factor (2^(2+layer) on ImageNet
ResNets, 2^layer on CIFAR ones); here the factor is the probed ratio of input to stage size, which is the same
on those backbones and right on any other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UPSAMPLING = ("nearest", "bilinear", "bicubic")
VALUE_NETS = ("conv", "convneck")
MASK_LOSSES = ("L1", "L1+Variance")


def rescale_lam(lam: Tensor, k: float) -> Tensor:
    """SAMix's λ' = (4/3·λ³ − 2λ² + (k+1)·λ) / (k + 1 − 2/3): λ'(0) = 0, λ'(1) = 1, λ'(½) = ½."""
    k1 = k + 1.0
    return (4.0 / 3.0 * lam.pow(3) - 2.0 * lam.pow(2) + k1 * lam) / (k1 - 2.0 / 3.0)


class ConvNeck(nn.Module):
    """SAMix's value net: 1×1 conv (no bias) → BN → ELU → 1×1 conv (no bias) to one channel."""

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ELU(),
                                  nn.Conv2d(hidden, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class PixelMixBlock(nn.Module):
    """Pixel-wise MixBlock (see the module docstring).

    Args:
        in_channels: channels of the stage feature map.
        reduction: q/k channel reduction r (C/r inner channels).
        use_scale: divide q·kᵀ by √(C/r).
        upsampling: ``nearest``, ``bilinear`` or ``bicubic``.
        lam_concat: append λ / 1 − λ channels to x_a / x_b.
        lam_mul: strength of the λ multiplication (0: off; SAMix 1).
        lam_mul_k: k of the λ rescaling (< 0: λ' = λ).
        lam_residual: residual form of the λ multiplication.
        value_net: ``conv`` (1×1 conv) or ``convneck`` (SAMix).
        value_hidden: hidden channels of the ConvNeck (``None``: C/2, OpenMixup's 256 → 128).
        x_qk_concat: q and k from ``cat(x_a, x_b)`` with a separate key conv.
    """

    def __init__(self, in_channels: int, reduction: int = 2, use_scale: bool = True, upsampling: str = "nearest",
                 lam_concat: bool = False, lam_mul: float = 0.0, lam_mul_k: float = -1.0, lam_residual: bool = False,
                 value_net: str = "conv", value_hidden: int | None = None, x_qk_concat: bool = False):
        super().__init__()
        self.inter_channels = max(in_channels // reduction, 1)
        self.use_scale = use_scale
        self.upsampling = upsampling
        self.lam_concat, self.lam_mul, self.lam_mul_k, self.lam_residual = lam_concat, lam_mul, lam_mul_k, lam_residual
        self.x_qk_concat = x_qk_concat
        qk_in = 2 * in_channels if x_qk_concat else in_channels + int(lam_concat)
        v_in = in_channels + int(lam_concat)
        if value_net == "convneck":
            self.value: nn.Module = ConvNeck(v_in, value_hidden or max(in_channels // 2, 1))
        else:
            self.value = nn.Conv2d(v_in, 1, 1)
        self.query = nn.Conv2d(qk_in, self.inter_channels, 1)
        self.key = nn.Conv2d(qk_in, self.inter_channels, 1) if x_qk_concat else None
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.01) -> None:
        """The reference's init: normal(0, 0.01) convs with zero bias, BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def encode_lam(self, x_a: Tensor, x_b: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        """The λ encoding of the two feature maps (``lam_mul`` / ``lam_concat``); ``lam`` is (N,)."""
        n, _, h, w = x_a.shape
        lam4 = lam.to(x_a.dtype).view(n, 1, 1, 1)
        if self.lam_mul > 0:
            lam_r = rescale_lam(lam4, self.lam_mul_k) if self.lam_mul_k >= 0 else lam4
            if self.lam_residual:
                x_a = x_a * (1 + lam_r * self.lam_mul)
                x_b = x_b * (1 + (1 - lam_r) * self.lam_mul)
            else:
                x_a, x_b = x_a * lam_r, x_b * (1 - lam_r)
        if self.lam_concat:
            block = lam4.expand(n, 1, h, w)
            x_a, x_b = torch.cat([x_a, block], 1), torch.cat([x_b, 1 - block], 1)
        return x_a, x_b

    def forward(self, feats: Tensor, lam: Tensor, index: Tensor, size: tuple[int, int]) -> Tensor:
        """Partner weight s (N, 1, H, W) in [0, 1] for features ``feats`` (N, C, h, w), λ (N,), partner
        ``index`` (N,) and the input ``size`` (H, W)."""
        n, _, h, w = feats.shape
        x_a, x_b = self.encode_lam(feats, feats[index], lam)
        v = self.value(x_b).reshape(n, 1, h * w).transpose(1, 2)  # (N, hw, 1)
        if self.x_qk_concat:
            x_a = x_b = torch.cat([x_a, x_b], 1)
        q = self.query(x_a).reshape(n, self.inter_channels, h * w).transpose(1, 2)  # (N, hw, C/r)
        k = (self.key or self.query)(x_b).reshape(n, self.inter_channels, h * w)  # (N, C/r, hw)
        with torch.autocast(device_type=feats.device.type, enabled=False):
            logits = q.float() @ k.float()
            if self.use_scale:
                logits = logits / math.sqrt(self.inter_channels)
            s = (logits.softmax(-1) @ v.float()).reshape(n, 1, h, w)
            s = F.interpolate(s, size=size, mode=self.upsampling)
            return torch.sigmoid(s)


def mask_loss(s: Tensor, lam: Tensor, margin: float, mode: str = "L1") -> Tensor:
    """The reference's mask loss on the partner weights ``s`` (N, 1, H, W) for the batch's λ (a scalar tensor).

    With m the mean of s over the whole batch: ``L1`` = max(|1 − m − λ| − margin, 0) (the anchor area 1 − m
    within ``margin`` of λ costs nothing); ``L1+Variance`` (SAMix) subtracts 2·mean((s − m)²), rewarding
    masks that are far from a constant blend.
    """
    m = s.float().mean()
    loss = torch.clamp((1 - m - lam.float()).abs() - margin, min=0.0)
    if mode == "L1+Variance":
        loss = loss - 2 * (s.float() - m).pow(2).mean()
    return loss
