"""Datasets and loaders. Importing this package registers every dataset in ``DATASETS``."""

import importlib
import pkgutil

from mixbench.datasets.base import ImageDataset, TensorImageDataset  # noqa: F401
from mixbench.datasets.loaders import build_loader  # noqa: F401

# Every module in this package registers its datasets on import; no central list to keep in sync.
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
