"""Registries of mixbench components and the one builder that turns a config dict into an object.

Components are chosen by registry key (``type: cutmix``), never by import path, so a config cannot run code.
Each registry is an mmengine :class:`~mmengine.registry.Registry`; registration is a decorator next to the
definition (``@MIXUPS.register_module('cutmix')``). :func:`build` validates the keys of a config against the
signature of the registered class or function, and their values against the ranges it declares
(:mod:`mixbench.ranges`), before calling it, so a typo fails with the closest valid names.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from typing import Any, Mapping

from mmengine.registry import DATASETS as MM_DATASETS
from mmengine.registry import HOOKS as MM_HOOKS
from mmengine.registry import METRICS as MM_METRICS
from mmengine.registry import MODELS as MM_MODELS
from mmengine.registry import TRANSFORMS as MM_TRANSFORMS
from mmengine.registry import Registry

from mixbench.errors import ConfigError
from mixbench.ranges import check_option_ranges

BACKBONES = Registry("backbone", scope="mixbench")
HEADS = Registry("head", scope="mixbench")
MODELS = Registry("model", parent=MM_MODELS, scope="mixbench")
DATASETS = Registry("dataset", parent=MM_DATASETS, scope="mixbench")
TRANSFORMS = Registry("transform", parent=MM_TRANSFORMS, scope="mixbench")
MIXUPS = Registry("mixup", scope="mixbench")
LOSSES = Registry("loss", scope="mixbench")
METRICS = Registry("metric", parent=MM_METRICS, scope="mixbench")
HOOKS = Registry("hook", parent=MM_HOOKS, scope="mixbench")
TASKS = Registry("task", scope="mixbench")

REGISTRIES: dict[str, Registry] = {
    "backbones": BACKBONES,
    "heads": HEADS,
    "models": MODELS,
    "datasets": DATASETS,
    "transforms": TRANSFORMS,
    "mixups": MIXUPS,
    "losses": LOSSES,
    "metrics": METRICS,
    "hooks": HOOKS,
    "tasks": TASKS,
}

# Modules whose import fills the registries (decorators run at import time).
_COMPONENT_MODULES = (
    "mixbench.models",
    "mixbench.datasets",
    "mixbench.mixups",
    "mixbench.losses",
    "mixbench.evaluation",
    "mixbench.engine",
    "mixbench.tasks",
)


def import_components() -> None:
    """Import every component package so that all decorators have registered their entries."""
    for name in _COMPONENT_MODULES:
        importlib.import_module(name)


def closest(name: str, choices: typing.Iterable[str], n: int = 3) -> str:
    """Return ``"did you mean 'a', 'b'?"`` or a list of the valid choices when nothing is close."""
    choices = sorted(choices)
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if near:
        return "did you mean " + ", ".join(f"'{c}'" for c in near) + "?"
    shown = ", ".join(choices[:30]) + (", ..." if len(choices) > 30 else "")
    return f"valid: {shown}"


def lookup(registry: Registry, name: str, where: str = "type") -> Any:
    """Return the class/function registered as ``name`` or raise a one-line :class:`ConfigError`."""
    import_components()
    obj = registry.get(name) if isinstance(name, str) else None
    if obj is None or name not in registry.module_dict:
        raise ConfigError(f"{where}: unknown {registry.name} '{name}'; {closest(str(name), registry.module_dict)}")
    return obj


def _target_signature(obj: Any) -> inspect.Signature:
    return inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)


def accepted_options(obj: Any) -> dict[str, inspect.Parameter]:
    """Keyword options a registered component accepts (``self`` and ``*args`` excluded)."""
    params = dict(_target_signature(obj).parameters)
    params.pop("self", None)
    return {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _accepts_var_kwargs(obj: Any) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in _target_signature(obj).parameters.values())


def _type_ok(value: Any, annotation: Any) -> bool:
    """Loose check of a config value against a simple annotation (int/float/str/bool, Optional, Sequence)."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping)
    return True


def check_options(obj: Any, options: Mapping[str, Any], where: str, source: str = "") -> None:
    """Raise :class:`ConfigError` for an unknown key or a value of the wrong type."""
    accepted = accepted_options(obj)
    hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj) if accepted else {}
    origin = f" (in {source})" if source else ""
    for key, value in options.items():
        if key not in accepted:
            if _accepts_var_kwargs(obj):
                continue
            raise ConfigError(f"{where}.{key}: unknown option{origin}; {closest(key, accepted)}")
        annotation = hints.get(key, accepted[key].annotation)
        if not _type_ok(value, annotation):
            tname = getattr(annotation, "__name__", str(annotation))
            raise ConfigError(f"{where}.{key}: expected {tname}, got {value!r}{origin}")


def build(registry: Registry, cfg: Mapping[str, Any], where: str, source: str = "", **extra: Any) -> Any:
    """Build ``registry[cfg['type']](**rest, **extra)`` after validating the keys of ``cfg``.

    Args:
        registry: the registry to look the type up in.
        cfg: mapping with a ``type`` key and the component's options.
        where: dotted config path used in error messages (e.g. ``"mixup"``).
        source: the file the config came from, for error messages.
        **extra: arguments supplied by the caller rather than the user (e.g. ``num_classes``).
    """
    cfg = dict(cfg)
    if "type" not in cfg:
        raise ConfigError(f"{where}.type: missing; choose one of the registered {registry.name}s")
    obj = lookup(registry, cfg.pop("type"), f"{where}.type")
    check_options(obj, cfg, where, source)
    check_option_ranges(obj, cfg, where, source)
    accepted = accepted_options(obj)
    kwargs = {k: v for k, v in extra.items() if k in accepted or _accepts_var_kwargs(obj)}
    kwargs.update(cfg)
    try:
        return obj(**kwargs)
    except ValueError as exc:  # a component's own check of an option's value: a user mistake, not a bug
        raise ConfigError(_value_error(str(exc), where, source)) from None


def _value_error(message: str, where: str, source: str) -> str:
    """``partner: expected ...`` from a component → ``mixup.partner: expected ... (in FILE)``."""
    key = message.split(":", 1)[0].strip()
    if key.isidentifier():
        message = f"{where}.{message}"
    elif not message.startswith(f"{where}"):
        message = f"{where}: {message}"
    return message + (f" (in {source})" if source else "")


def summary(obj: Any) -> str:
    """First line of a component's docstring, for ``mixbench list``."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
