"""Synthetic label noise on a training split: ``data.label_noise: {type, rate, seed}``.

Each generator flips exactly ``round(rate · n_c)`` of the samples of every class c (the samples chosen at
random), so the realised rate and the transition matrix are the nominal ones up to that rounding:

* ``symmetric``: to a different class, the destinations of each class's flipped samples spread evenly over the
  other C − 1 classes (T = (1 − r)·I + r/(C − 1)·(1 − I); EchoAlign's ``noisify_multiclass_symmetric``
  convention, the true class never drawn);
* ``pairflip``: c → (c + 1) mod C (T[c, c] = 1 − r, T[c, c + 1] = r);
* ``asymmetric``: the class-dependent map of the dataset (digits/MNIST 7→1, 2→7, 5↔6, 3→8; CIFAR-10
  truck→automobile, bird→airplane, deer→horse, cat↔dog); classes outside the map keep their labels;
* ``overlap``: a fixed random map m(c) ≠ c drawn once from the seed, each class c flipped to m(c)
  (Chidambaram & Ge 2024, "class overlap" protocol).

The noise depends only on ``(labels, type, rate, seed)``, not on the run seed: every method and seed of a
suite trains on the same corrupted labels. Test labels are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

NOISE_TYPES = ("symmetric", "pairflip", "asymmetric", "overlap")
_KEYS = ("type", "rate", "seed")
# Class-dependent maps of the asymmetric protocol, by dataset type (source class -> noisy class).
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    "digits": {7: 1, 2: 7, 5: 6, 6: 5, 3: 8},
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
}


@dataclass
class LabelNoise:
    """Noisy labels of a split and which samples were flipped (``flipped``: sorted int64 indices)."""

    labels: Tensor
    flipped: Tensor
    type: str
    rate: float
    seed: int

    def summary(self) -> dict[str, Any]:
        n = int(self.labels.numel())
        return {"type": self.type, "rate": self.rate, "seed": self.seed, "n": n,
                "n_flipped": int(self.flipped.numel()), "realised_rate": self.flipped.numel() / max(n, 1)}


def check_noise(spec: Mapping[str, Any]) -> None:
    """Raise ``ValueError("key: ...")`` for an unknown key, type, or a rate outside [0, 1)."""
    for key in spec:
        if key not in _KEYS:
            raise ValueError(f"{key}: unknown option; expected one of {', '.join(_KEYS)}")
    if spec.get("type") not in NOISE_TYPES:
        raise ValueError(f"type: expected one of {', '.join(NOISE_TYPES)}, got {spec.get('type')!r}")
    rate = spec.get("rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"rate: expected a number in [0, 1), got {rate!r}")
    if not isinstance(spec.get("seed", 0), int):
        raise ValueError(f"seed: expected an int, got {spec.get('seed')!r}")


def class_map(kind: str, num_classes: int, generator: torch.Generator, dataset: str = "") -> dict[int, int]:
    """The deterministic destination of each flipped class for ``pairflip``, ``asymmetric`` and ``overlap``."""
    if kind == "pairflip":
        return {c: (c + 1) % num_classes for c in range(num_classes)}
    if kind == "asymmetric":
        if dataset not in ASYMMETRIC_MAPS:
            raise ValueError(f"type: asymmetric noise needs a class map; dataset '{dataset}' has none "
                             f"(maps exist for {', '.join(ASYMMETRIC_MAPS)})")
        return ASYMMETRIC_MAPS[dataset]
    # overlap: for each class one uniformly drawn other class
    shift = torch.randint(1, num_classes, (num_classes,), generator=generator)
    return {c: int((c + shift[c]) % num_classes) for c in range(num_classes)}


def add_label_noise(labels: Tensor, num_classes: int, spec: Mapping[str, Any], dataset: str = "") -> LabelNoise:
    """Flip labels per :mod:`this module's <mixbench.datasets.noise>` protocols; ``labels`` is not modified."""
    check_noise(spec)
    kind, rate, seed = spec["type"], float(spec["rate"]), int(spec.get("seed", 0))
    g = torch.Generator().manual_seed(seed)
    labels = labels.long().cpu()
    noisy = labels.clone()
    mapping = None if kind == "symmetric" else class_map(kind, num_classes, g, dataset)
    for c in range(num_classes):
        if mapping is not None and c not in mapping:
            continue
        members = torch.nonzero(labels == c).flatten()
        k = int(round(rate * members.numel()))
        chosen = members[torch.randperm(members.numel(), generator=g)[:k]]
        if mapping is not None:
            noisy[chosen] = mapping[c]
        else:  # even spread over the other classes, in a random order
            others = torch.tensor([o for o in range(num_classes) if o != c])
            dest = others[torch.randperm(others.numel(), generator=g)].repeat(k // others.numel() + 1)[:k]
            noisy[chosen] = dest
    flipped = torch.nonzero(noisy != labels).flatten()
    return LabelNoise(noisy, flipped, kind, rate, seed)
