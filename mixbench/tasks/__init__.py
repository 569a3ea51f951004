"""Tasks: what a label is, how mixed targets are formed, the default loss and the metrics reported.

Importing this package registers every task in ``TASKS``; adding a task is adding a module here.
"""

import importlib
import pkgutil

from mixbench.tasks.base import Task  # noqa: F401

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
