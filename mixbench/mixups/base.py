"""The mixup policy contract shared by every policy (docs/architecture.md, "Policy contract").

A policy takes a whole batch already on the training device and returns a :class:`MixBatch`:

* ``inputs``: the mixed images (N, C, H, W), in the same space as the given inputs (mixbench feeds policies
  normalised float images; a policy never assumes a value range unless it says so);
* ``indices[k]`` (N,) int64: which batch sample source ``k`` is for each row; ``indices[0]`` is the anchor
  (identity);
* ``weights[k]`` (N,) float: the per-sample label weight of source ``k``;
* ``targets`` (N, K): what the loss sees, built lazily from ``labels``, ``indices`` and ``weights`` by the
  task's target builder (classification: Σ_k weights[k] · onehot(labels[indices[k]]); regression: Σ_k
  weights[k] · labels[indices[k]]). A policy never builds targets itself; a batch made outside a model (tests,
  pictures) has soft one-hot targets until the model binds its task's builder (:meth:`MixBatch.bind`);
* ``mask`` (N, 1, H, W) optional: 1 where the pixel comes from the anchor;
* ``layer``: ``None`` to mix at the input, or a stage index for feature-level mixing (ManifoldMix); the
  classifier then applies :meth:`MixBatch.mix_features` at that stage.

λ is always a per-sample tensor. For mask policies the label weight is the realised anchor area. All
randomness comes from ``ctx.generator``; no host synchronisation happens inside a policy.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

PARTNERS = ("perm", "flip", "roll")
# ``MixPolicy.tasks`` of the policies whose targets follow only from indices and weights (pixel/feature mixing).
ANY_TARGETS = ("classification", "regression")


@dataclass
class MixContext:
    """Everything a policy may read besides the batch.

    Attributes:
        generator: the only source of randomness; lives on the batch's device.
        epoch: current epoch (0-based).
        iter: global iteration (0-based).
        progress: fraction of training done, in [0, 1] (progressive schedules).
        signals: lazily computed model signals, keyed by name (``"saliency"``, ``"features"``,
            ``"attention"``...). The classifier fills only the ones a policy declares in ``needs``;
            each value is a zero-argument callable computed on first use and cached by the provider.
        model: the classifier, for policies that need more than a declared signal (read-only use).
        owned: the inputs are a fresh tensor that belongs to this call (in training the preprocessor has just
            made it), so a policy may write the mixed pixels into it instead of building a new batch. Default
            ``False``: a direct caller's tensor is never modified.
    """

    generator: torch.Generator
    epoch: int = 0
    iter: int = 0
    progress: float = 0.0
    signals: dict[str, Callable[..., Any]] = field(default_factory=dict)
    model: Any = None
    owned: bool = False

    def signal(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in self.signals:
            raise KeyError(f"signal '{name}' was not provided; declare it in the policy's `needs`")
        return self.signals[name](*args, **kwargs)


TargetBuilder = Callable[[Tensor, Sequence[Tensor], Sequence[Tensor]], Tensor]


class OneHotTargets:
    """Soft one-hot targets over ``num_classes`` classes (the classification task's builder)."""

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)

    def __call__(self, labels: Tensor, indices: Sequence[Tensor], weights: Sequence[Tensor]) -> Tensor:
        return soft_targets(labels, indices, weights, self.num_classes)

    def __repr__(self) -> str:
        return f"OneHotTargets({self.num_classes})"


@dataclass
class MixBatch:
    """A mixed batch and the parts that produced it (see module docstring).

    ``targets`` is computed on first access by ``builder`` from ``labels``/``indices``/``weights`` and then
    passed through ``transform`` (e.g. label smoothing); assigning ``targets`` replaces the cached value.
    :func:`dataclasses.replace` drops the cache, so a copy with new weights gets new targets.
    """

    inputs: Tensor
    labels: Tensor
    indices: list[Tensor]
    weights: list[Tensor]
    mask: Tensor | None = None
    layer: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    builder: TargetBuilder | None = None
    transform: Callable[[Tensor], Tensor] | None = None
    _targets: Tensor | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def targets(self) -> Tensor:
        if self._targets is None:
            if self.builder is None:
                raise RuntimeError("MixBatch has no target builder: bind the task's builder first")
            t = self.builder(self.labels, self.indices, self.weights)
            self._targets = t if self.transform is None else self.transform(t)
        return self._targets

    @targets.setter
    def targets(self, value: Tensor) -> None:
        self._targets = value

    @property
    def num_sources(self) -> int:
        return len(self.indices)

    def bind(self, builder: TargetBuilder) -> "MixBatch":
        """Copy whose targets come from ``builder`` (the model's task), computed on first access."""
        return replace(self, builder=builder)

    def source_targets(self, k: int) -> Tensor:
        """Targets of source ``k`` alone (weight 1), e.g. the unmixed targets of the anchor or the partner."""
        idx = self.indices[k]
        return self.builder(self.labels, [idx], [torch.ones(idx.shape[0], device=idx.device)])

    def mix_features(self, h: Tensor) -> Tensor:
        """Feature-level mixing for ``layer`` policies: Σ_k w_k · h[index_k] (weights broadcast over dims)."""
        out = None
        for idx, w in zip(self.indices, self.weights):
            term = expand_as(w.to(h.dtype), h) * h[idx]
            out = term if out is None else out + term
        return out

    def with_weights(self, weights: Sequence[Tensor]) -> "MixBatch":
        """Copy with new per-sample label weights (relabelling after the forward); targets rebuilt lazily."""
        return replace(self, weights=list(weights))


def expand_as(w: Tensor, x: Tensor) -> Tensor:
    """Reshape a (N,) tensor so it broadcasts against ``x`` of shape (N, ...)."""
    return w.reshape((-1,) + (1,) * (x.dim() - 1))


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return F.one_hot(labels.long(), num_classes).to(dtype)


def soft_targets(labels: Tensor, indices: Sequence[Tensor], weights: Sequence[Tensor], num_classes: int) -> Tensor:
    """targets = Σ_k weights[k] · onehot(labels[indices[k]]), in float32 whatever the input precision."""
    n = labels.shape[0]
    targets = torch.zeros(n, num_classes, device=labels.device, dtype=torch.float32)
    for idx, w in zip(indices, weights):
        targets.scatter_add_(1, labels[idx].long().view(n, 1), w.float().view(n, 1))
    return targets


def positive(name: str, value: float) -> float:
    """``value`` as a float if it is > 0 (a Beta/Gamma/Dirichlet concentration), else a ``ValueError`` naming
    the option (the registry turns it into a one-line config error)."""
    if not float(value) > 0:
        raise ValueError(f"{name}: expected a value > 0, got {value}")
    return float(value)


def non_negative(name: str, value: float) -> float:
    """``value`` as a float if it is ≥ 0 (a weight, or an α where 0 turns the policy off as in timm), else a
    ``ValueError`` naming the option: a negative α is a mistake, not another way to say "off"."""
    if not float(value) >= 0:
        raise ValueError(f"{name}: expected a value ≥ 0, got {value}")
    return float(value)


def in_interval(name: str, value: float, lo: float = 0.0, hi: float = 1.0) -> float:
    """``value`` as a float if ``lo ≤ value ≤ hi`` (a share or a momentum by default), else a ``ValueError``."""
    if not lo <= float(value) <= hi:
        raise ValueError(f"{name}: expected a value in [{lo}, {hi}], got {value}")
    return float(value)


def count(name: str, value: int, lo: int) -> int:
    """``value`` as an int if it is an integer ≥ ``lo`` (a layer index, a number of sources), else a
    ``ValueError``."""
    if isinstance(value, bool) or int(value) != value or value < lo:
        raise ValueError(f"{name}: expected an integer ≥ {lo}, got {value}")
    return int(value)


def one_of(name: str, value: str, options: tuple[str, ...]) -> str:
    """``value`` if it is one of ``options``, else a ``ValueError`` listing them."""
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(options)}, got {value!r}")
    return value


def pair_batch(inputs: Tensor, labels: Tensor, num_classes: int, index: Tensor, weight: Tensor,
               partner_weight: Tensor | None = None, batch_type: type[MixBatch] = MixBatch, **fields: Any) -> MixBatch:
    """The two-source batch of most policies: source 0 the anchor (identity), source 1 the partner ``index``,
    label weights ``weight`` (N,) and ``partner_weight`` (default ``1 − weight``); ``fields`` (``mask``,
    ``layer``, ``extras``) go to the batch as they are."""
    anchor = torch.arange(labels.shape[0], device=labels.device)
    weights = [weight, 1.0 - weight if partner_weight is None else partner_weight]
    return batch_type(inputs=inputs, labels=labels, indices=[anchor, index], weights=weights,
                      builder=OneHotTargets(num_classes), **fields)


def partner_index(n: int, scheme: str, generator: torch.Generator, device: torch.device) -> Tensor:
    """Partner of each sample: ``perm`` (random permutation), ``flip`` (j = n-1-i), ``roll`` (j = i-1).

    With ``flip`` and odd ``n`` the middle sample is its own partner, so it stays unmixed (its targets
    remain its own one-hot); timm refuses odd batches instead.
    """
    if scheme == "perm":
        return torch.randperm(n, generator=generator, device=device)
    if scheme == "flip":
        return torch.arange(n - 1, -1, -1, device=device)
    if scheme == "roll":
        return torch.roll(torch.arange(n, device=device), 1)
    raise ValueError(f"partner: expected one of {PARTNERS}, got {scheme!r}")


def uniform(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(tuple(shape), generator=generator, device=device)


def sample_gamma(concentration: float, shape: Sequence[int], generator: torch.Generator,
                 device: torch.device, proposals: int = 16) -> Tensor:
    """Gamma(concentration, 1) samples drawn only from ``generator``, vectorised, without host syncs.

    Marsaglia & Tsang (2000) with a fixed number of proposals per sample; the first accepted proposal is
    kept. For concentration ≥ 1 each proposal is accepted with probability > 0.95, so 16 proposals all
    failing has probability < 1e-20 (the last proposal is then kept). Concentration < 1 uses the boost
    Gamma(a) = Gamma(a + 1) · U^(1/a).
    """
    a = float(concentration)
    if a <= 0:
        raise ValueError(f"alpha: expected > 0, got {a}")
    boost = a < 1.0
    d = (a + 1.0 if boost else a) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    shape = tuple(shape)
    z = torch.randn(shape + (proposals,), generator=generator, device=device)
    u = torch.rand(shape + (proposals,), generator=generator, device=device)
    v = (1.0 + c * z) ** 3
    ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-30)))
    ok[..., -1] = True
    first = torch.argmax(ok.to(torch.uint8), dim=-1, keepdim=True)
    g = (d * v).gather(-1, first).squeeze(-1)
    if boost:
        ub = torch.rand(shape, generator=generator, device=device)
        g = g * ub.clamp_min(1e-30).pow(1.0 / a)
    return g


def sample_beta(alpha: float, n: int, generator: torch.Generator, device: torch.device,
                beta: float | None = None) -> Tensor:
    """(n,) samples of Beta(alpha, beta) (beta defaults to alpha) from ``generator``; float32."""
    b = alpha if beta is None else beta
    x = sample_gamma(alpha, (n,), generator, device)
    y = sample_gamma(b, (n,), generator, device)
    return (x / (x + y).clamp_min(1e-30)).clamp(0.0, 1.0)


class MixPolicy:
    """Base class of every registered mixup policy.

    Subclasses implement :meth:`mix` for the case where mixing is applied; :meth:`__call__` handles the
    probability of applying, λ granularity and the untouched fallback. Class attributes:

    * ``needs``: model signals the policy reads from ``ctx.signals`` (the classifier computes only these);
    * ``relabels``: ``True`` when the policy implements :meth:`relabel` (second step after the forward);
    * ``tasks``: the tasks (``TASKS`` keys) the policy supports. A policy whose targets follow only from its
      indices and weights works for any task (:data:`ANY_TARGETS`); one that reads class scores (saliency,
      CAM, attention) or builds class-specific terms is classification-only, the default.
    """

    needs: tuple[str, ...] = ()
    relabels: bool = False
    tasks: tuple[str, ...] = ("classification",)

    def __init__(self, alpha: float = 1.0, prob: float = 1.0, partner: str = "perm", *, check_alpha: bool = True):
        """``check_alpha``: reject α ≤ 0 here, at build time, since Beta(α, α) needs α > 0; subclasses where
        α = 0 means "off" or α may be unused pass ``False``, and then only a negative α is rejected."""
        if check_alpha:
            positive("alpha", alpha)
        else:
            non_negative("alpha", alpha)
        if partner not in PARTNERS:
            raise ValueError(f"partner: expected one of {PARTNERS}, got {partner!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob: expected a value in [0, 1], got {prob}")
        self.alpha = float(alpha)
        self.prob = float(prob)
        self.partner = partner

    # -- helpers for subclasses -------------------------------------------------------------------
    def sample_lam(self, n: int, ctx: MixContext, device: torch.device) -> Tensor:
        """One λ ~ Beta(α, α) per batch, broadcast to (n,)."""
        return sample_beta(self.alpha, 1, ctx.generator, device).expand(n).contiguous()

    def partner_index(self, n: int, ctx: MixContext, device: torch.device) -> Tensor:
        return partner_index(n, self.partner, ctx.generator, device)

    # -- the contract --------------------------------------------------------------------------------
    def mix(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        raise NotImplementedError

    def capture(self, model: Any) -> contextlib.AbstractContextManager[dict]:
        """Context the classifier enters around the training forward; a policy that needs something from
        that forward (attention maps) installs hooks here and fills the yielded dict. Default: nothing."""
        return contextlib.nullcontext({})

    def relabel(self, batch: MixBatch, outputs: dict[str, Any], ctx: MixContext) -> MixBatch:
        """Second step after the forward (TransMix-style); default: unchanged.

        ``outputs`` holds ``logits``, ``features`` (backbone output) and whatever :meth:`capture` recorded.
        Extra loss terms go into ``batch.extras["losses"]`` (name -> scalar tensor); the classifier adds them.
        """
        return batch

    def train_losses(self, model: Any, inputs: Tensor, labels: Tensor, ctx: MixContext) -> dict[str, Tensor] | None:
        """The whole loss of a training step, for a policy that owns it (learned mixers: several forwards,
        several loss terms, one key each); ``None`` (the default): the classifier's own step."""
        return None

    def __call__(self, inputs: Tensor, labels: Tensor, num_classes: int, ctx: MixContext) -> MixBatch:
        if self.prob >= 1.0:
            return self.mix(inputs, labels, num_classes, ctx)
        return apply_with_prob(self, inputs, labels, num_classes, ctx)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


def identity_batch(inputs: Tensor, labels: Tensor, num_classes: int) -> MixBatch:
    """The unmixed batch: one source, weight 1."""
    n = labels.shape[0]
    idx = torch.arange(n, device=labels.device)
    w = torch.ones(n, device=labels.device)
    return MixBatch(inputs=inputs, labels=labels, indices=[idx], weights=[w], builder=OneHotTargets(num_classes))


def apply_with_prob(policy: MixPolicy, inputs: Tensor, labels: Tensor, num_classes: int,
                    ctx: MixContext) -> MixBatch:
    """Apply ``policy`` to the whole batch with probability ``policy.prob`` (one draw per batch), without a
    host sync: the mixed batch is computed and blended with the original by a 0/1 tensor. The blend reads the
    original, so the policy never mixes it in place here (``ctx.owned`` is cleared)."""
    mixed = policy.mix(inputs, labels, num_classes, replace(ctx, owned=False))
    on = (torch.rand((), generator=ctx.generator, device=inputs.device) < policy.prob)
    n = labels.shape[0]
    keep = on.to(inputs.dtype)
    x = torch.lerp(inputs, mixed.inputs, keep) if mixed.layer is None else inputs
    weights = [w * on.to(w.dtype) for w in mixed.weights]
    weights[0] = weights[0] + (1 - on.to(weights[0].dtype))
    mask = None
    if mixed.mask is not None:
        mask = torch.where(on, mixed.mask, torch.ones_like(mixed.mask))
    out = replace(mixed, inputs=x, weights=weights, mask=mask)
    out.extras = dict(mixed.extras, applied=on.expand(n))
    return out
