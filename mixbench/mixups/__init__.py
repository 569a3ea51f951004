"""Mixup policies. Importing this package registers every policy in ``MIXUPS``."""

import importlib
import pkgutil

from mixbench.mixups.base import MixBatch, MixContext, MixPolicy  # noqa: F401

# Every module in this package registers its policies on import; no central list to keep in sync.
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
