"""Learned mixers: policies with parameters of their own (docs/architecture.md, "Training step: stateful
policies"). Importing this package registers every learned mixer in ``MIXUPS``."""

import importlib
import pkgutil

from mixbench.mixups.learned.base import LearnedMixer, ModelContext, Progress  # noqa: F401

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base" and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
