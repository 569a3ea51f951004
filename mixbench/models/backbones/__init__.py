"""Backbones (interface B), one family per module. Importing this package registers all of them."""

import importlib
import pkgutil

# Every module in this package registers its backbones on import; no central list to keep in sync.
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
