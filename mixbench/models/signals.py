"""Model signals for the policies that read the model (docs/architecture.md, "Policy contract", interface C).

The classifier calls :func:`build_signals` once per training step with the normalised batch and the names a
policy declared in ``needs``; each entry is a callable computed on first use and cached, so a policy that does
not call it costs nothing. Signals:

* ``saliency()`` → (N, H, W): ``sqrt(mean_c (∂CE/∂x)²)``, the PuzzleMix / Co-Mixup input-gradient saliency,
  computed with the model in eval mode (BatchNorm statistics untouched) and without accumulating parameter
  gradients (``torch.autograd.grad`` w.r.t. the input only).
* ``features(extractor=None, size=None, mode="eval")`` → (N, C, h, w): the backbone output of the current
  model, or of a frozen ``extractor`` module, under ``no_grad``. ViT tokens are reshaped to a patch grid.
* ``cam(mode="train")`` → (N, h, w): class activation map of each sample's own label, from the current
  backbone's feature map and ``head.fc`` (SnapMix). The SnapMix reference runs this pass in train mode.
* ``attention()`` → dict ``cls`` (N, P) class-token→patch and ``patch`` (N, P) patch→patch (mean over heads
  and query patches) attention of the last block, and ``logits`` (N, K), from an extra eval-mode no-grad
  forward on the unmixed batch (SMMix, TokenMix/MixPro as in OpenMixup).

Attention is rebuilt from the last block's q/k (a hook on its ``qkv`` projection), so it works whether or not
timm uses fused attention (``scaled_dot_product_attention`` never materialises the map).
:func:`capture_attention` installs the same hook around the *training* forward (TransMix, MixPro PAL).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixbench.errors import ConfigError

SIGNALS = ("saliency", "features", "cam", "attention")


# -- model access ------------------------------------------------------------------------------------------
def backbone_of(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def head_of(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if head is None:
        raise ConfigError(f"mixup: {type(model).__name__} has no `head`; this policy needs a classifier head")
    return head


def logits_of(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(features, logits) of ``model`` on ``x``: the classifier's ``features``/``logits`` methods when it has
    them (mixbench's classifier passes ``num_prefix_tokens`` to the head), else ``head(backbone(x))``."""
    if callable(getattr(model, "features", None)) and callable(getattr(model, "logits", None)):
        feats = model.features(x)
        return feats, model.logits(feats)
    feats = backbone_of(model)(x)
    return feats, head_of(model)(feats)


def num_prefix_tokens(model: nn.Module) -> int:
    """Class/register tokens in front of the patch tokens (0 for CNNs), read from the backbone."""
    for m in backbone_of(model).modules():
        n = getattr(m, "num_prefix_tokens", None)
        if isinstance(n, int):
            return n
    return 0


def tokens_to_map(feats: Tensor, prefix: int) -> Tensor:
    """Reshape ViT tokens (N, L, C) to a patch grid (N, C, g, g); feature maps pass through."""
    if feats.dim() == 4:
        return feats
    if feats.dim() != 3:
        raise ConfigError(f"mixup: expected a feature map (N,C,h,w) or tokens (N,L,C), got shape {tuple(feats.shape)}")
    tok = feats[:, prefix:]
    g = math.isqrt(tok.shape[1])
    if g * g != tok.shape[1]:
        raise ConfigError(f"mixup: {tok.shape[1]} patch tokens do not form a square grid")
    return tok.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], g, g)


@contextlib.contextmanager
def module_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Temporarily put every submodule in train/eval mode, restoring each one's own flag afterwards
    (``model.train()`` alone would also switch frozen submodules that are meant to stay in eval)."""
    flags = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


# -- attention -----------------------------------------------------------------------------------------------
def last_attention(model: nn.Module) -> nn.Module:
    """The last timm-style attention module (has ``qkv``, ``num_heads`` and ``scale``) of the backbone."""
    found = None
    for m in backbone_of(model).modules():
        if isinstance(getattr(m, "qkv", None), nn.Linear) and hasattr(m, "num_heads") and hasattr(m, "scale"):
            found = m
    if found is None:
        raise ConfigError("mixup: this policy reads ViT attention; the backbone has no timm attention block "
                          "(use a ViT/DeiT backbone, e.g. model=vit_digits)")
    return found


def attention_from_qkv(attn: nn.Module, qkv: Tensor, prefix: int, want: Sequence[str]) -> dict[str, Tensor]:
    """Post-softmax attention statistics recomputed from a block's qkv projection output (B, L, 3·D).

    Returns the requested entries: ``cls`` (B, P) class-token→patch attention averaged over heads (not
    renormalised: it sums to 1 − a_cls→cls, as in TransMix); ``patch`` (B, P) patch→patch attention
    averaged over heads and over the patch queries (SMMix).
    """
    b, length, _ = qkv.shape
    heads = attn.num_heads
    head_dim = getattr(attn, "head_dim", qkv.shape[-1] // 3 // heads)
    q, k, _ = qkv.reshape(b, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q = getattr(attn, "q_norm", nn.Identity())(q)
    k = getattr(attn, "k_norm", nn.Identity())(k)
    q, k = q.float() * attn.scale, k.float()
    out: dict[str, Tensor] = {}
    if "cls" in want:
        if prefix < 1:
            raise ConfigError("mixup: class-token attention needs a backbone with a class token")
        a = torch.softmax(q[:, :, :1] @ k.transpose(-2, -1), dim=-1)  # (B, H, 1, L)
        out["cls"] = a.mean(1)[:, 0, prefix:]
    if "patch" in want:
        a = torch.softmax(q[:, :, prefix:] @ k.transpose(-2, -1), dim=-1)  # (B, H, P, L)
        out["patch"] = a[..., prefix:].mean(dim=(1, 2))
    return out


@contextlib.contextmanager
def capture_attention(model: nn.Module, want: Sequence[str] = ("cls",)) -> Iterator[dict[str, Tensor]]:
    """Record last-block attention during a forward of ``model``: yields a dict filled after the forward.

    The hook reads the qkv projection output (detached, no graph) and recomputes q·kᵀ for the requested
    rows only, so it adds one small matmul per step and no backward cost.
    """
    attn = last_attention(model)
    prefix = num_prefix_tokens(model)
    store: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        with torch.no_grad():
            store.update(attention_from_qkv(attn, output.detach(), prefix, want))

    handle = attn.qkv.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


# -- signal providers ----------------------------------------------------------------------------------------
def input_saliency(model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
    """PuzzleMix saliency: ``sqrt(mean_c (∂ mean-CE / ∂x)²)`` with the model in eval mode; (N, H, W), detached."""
    with module_mode(model, False), torch.enable_grad():
        x = inputs.detach().requires_grad_(True)
        _, logits = logits_of(model, x)
        loss = F.cross_entropy(logits.float(), labels)
        (grad,) = torch.autograd.grad(loss, x)
    return grad.float().pow(2).mean(1).sqrt()


def feature_map(model: nn.Module, inputs: Tensor, extractor: nn.Module | None = None,
                size: int | None = None, mode: str = "eval") -> Tensor:
    """Backbone feature map (N, C, h, w) of the current model or of a frozen ``extractor``, no grad."""
    net = extractor if extractor is not None else backbone_of(model)
    x = inputs if size is None or inputs.shape[-1] == size else F.interpolate(
        inputs, size=(size, size), mode="bilinear", align_corners=False)
    with torch.no_grad(), module_mode(net, mode == "train"):
        feats = net(x)
    prefix = num_prefix_tokens(model) if extractor is None else getattr(extractor, "num_prefix_tokens", 0)
    return tokens_to_map(feats, prefix).float()


def class_activation(model: nn.Module, inputs: Tensor, labels: Tensor, mode: str = "train") -> Tensor:
    """CAM of each sample's label: Σ_c W[y, c]·F_c + b[y] from the backbone map and ``head.fc``; (N, h, w)."""
    fc = getattr(head_of(model), "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ConfigError("mixup: CAM needs a head with an `fc` nn.Linear (head type: linear)")
    fmap = feature_map(model, inputs, mode=mode)
    w = fc.weight.detach().float()[labels]  # (N, C)
    cam = torch.einsum("nchw,nc->nhw", fmap, w)
    if fc.bias is not None:
        cam = cam + fc.bias.detach().float()[labels].view(-1, 1, 1)
    return cam


def clean_attention(model: nn.Module, inputs: Tensor) -> dict[str, Tensor]:
    """Extra eval-mode no-grad forward on the unmixed batch: ``cls``, ``patch`` attention and ``logits``."""
    with torch.no_grad(), module_mode(model, False), capture_attention(model, ("cls", "patch")) as att:
        _, logits = logits_of(model, inputs)
    return dict(att, logits=logits.detach().float())


def _cached(fn: Callable[..., Any]) -> Callable[..., Any]:
    memo: dict[Any, Any] = {}

    def call(*args: Any, **kwargs: Any) -> Any:
        key = (tuple(id(a) if isinstance(a, nn.Module) else a for a in args),
               tuple(sorted((k, id(v) if isinstance(v, nn.Module) else v) for k, v in kwargs.items())))
        if key not in memo:
            memo[key] = fn(*args, **kwargs)
        return memo[key]

    return call


def build_signals(classifier: nn.Module, inputs: Tensor, labels: Tensor,
                  needs: Sequence[str]) -> dict[str, Callable[..., Any]]:
    """Lazily computed, cached signals for the names in ``needs`` (see the module docstring)."""
    providers: dict[str, Callable[..., Any]] = {
        "saliency": lambda: input_saliency(classifier, inputs, labels),
        "features": lambda extractor=None, size=None, mode="eval": feature_map(classifier, inputs, extractor,
                                                                               size, mode),
        "cam": lambda mode="train": class_activation(classifier, inputs, labels, mode),
        "attention": lambda: clean_attention(classifier, inputs),
    }
    out = {}
    for name in needs:
        if name not in providers:
            raise ValueError(f"unknown signal {name!r}; available: {', '.join(SIGNALS)}")
        out[name] = _cached(providers[name])
    return out
