"""Strict validation of a composed config, and its hash (docs/architecture.md, "Configs").

Every check raises a one-line :class:`ConfigError` that names the key, the value and the file it came from
(or the closest valid names), so the CLI can print it and exit with status 2.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from typing import Any, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mixbench.config.compose import ConfigSource
from mixbench.config.schema import CHOICES, DEFAULT_TASK, NON_SEMANTIC_KEYS, TrainCfg
from mixbench.config.task import check_task, fill_task_defaults
from mixbench.errors import ConfigError
from mixbench.registry import (BACKBONES, DATASETS, HEADS, LOSSES, MIXUPS, MODELS, accepted_options,
                               build, check_options, closest, lookup)


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for p in dotted.split("."):
        node = node[p]
    return node


def _unyaml_booleans(raw: Mapping[str, Any]) -> dict:
    """YAML 1.1 reads a bare ``off``/``on`` as a boolean; map them back for the string choice keys."""
    out = copy.deepcopy(dict(raw))
    for key, allowed in CHOICES.items():
        *parents, leaf = key.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), bool):
            word = "on" if node[leaf] else "off"
            if word in allowed:
                node[leaf] = word
    return out


def apply_schema(raw: Mapping[str, Any], source: ConfigSource) -> dict:
    """Merge ``raw`` into :class:`TrainCfg`: unknown keys and wrong types fail here."""
    raw = _unyaml_booleans(raw)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainCfg), raw)
        return OmegaConf.to_container(merged, resolve=True)
    except (ConfigKeyError, ValidationError, OmegaConfBaseException) as exc:
        key = getattr(exc, "full_key", None) or ""
        where = source.file_for(key) if key else str(source.experiment_file)
        if isinstance(exc, ConfigKeyError) or "not in" in str(exc):
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.structured(TrainCfg)
            sub = OmegaConf.select(node, parent) if parent else node
            names = list(sub.keys()) if hasattr(sub, "keys") else []
            raise ConfigError(f"{key}: unknown key (in {where}); {closest(leaf, names)}") from None
        try:
            value = _get(raw, key)
        except (KeyError, TypeError):
            value = None
        m = re.search(r"converted to (\w+)", str(exc))
        expected = f"expected {m.group(1).lower()}" if m else str(exc).splitlines()[0]
        raise ConfigError(f"{key}={value!r}: wrong type (in {where}); {expected}") from None


def check_choices(cfg: Mapping[str, Any], source: ConfigSource) -> None:
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            near = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.4)
            hint = f"did you mean '{near[0]}'?" if near else f"valid: {', '.join(allowed)}"
            raise ConfigError(f"{key}={value!r}: not a valid choice (in {source.file_for(key)}); {hint}")
    for key in ("data.batch_size", "schedule.epochs", "runtime.checkpoint_interval", "eval.median_last_k"):
        if _get(cfg, key) < 1:
            raise ConfigError(f"{key}={_get(cfg, key)}: expected ≥ 1 (in {source.file_for(key)})")


def check_components(cfg: Mapping[str, Any], source: ConfigSource) -> None:
    """Registry names and component options, checked before anything is built."""
    for where, registry, node in (("model.backbone", BACKBONES, cfg["model"]["backbone"]),
                                  ("model.head", HEADS, cfg["model"]["head"]),
                                  ("mixup", MIXUPS, cfg["mixup"]),
                                  ("loss", LOSSES, cfg["loss"])):
        if not isinstance(node, Mapping) or "type" not in node:
            raise ConfigError(f"{where}.type: missing (in {source.file_for(where)}); "
                              f"{closest('', registry.module_dict)}")
        file = source.file_for(f"{where}.type")
        obj = lookup(registry, node["type"], f"{where}.type (in {file})")
        for key, value in node.items():
            if key != "type":
                check_options(obj, {key: value}, where, source.file_for(f"{where}.{key}"))
    # Option values are checked by the components themselves; the policy is cheap to build, so a bad value
    # fails here, before a run dir exists (the model and loss are checked the same way when they are built).
    try:
        build(MIXUPS, cfg["mixup"], "mixup")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {source.file_for(str(exc).split(':', 1)[0])})") from None
    lookup(MODELS, cfg["model"]["type"], f"model.type (in {source.file_for('model.type')})")
    data = cfg["data"]
    ds = lookup(DATASETS, data["type"], f"data.type (in {source.file_for('data.type')})")
    params = data["params"]
    reserved = {"split", "root"} & set(params)
    if reserved:
        raise ConfigError(f"data.params.{reserved.pop()}: set by mixbench, not a parameter "
                          f"(in {source.file_for('data.params')})")
    for key, value in params.items():
        check_options(ds, {key: value}, "data.params", source.file_for(f"data.params.{key}"))
    root = data["root"]
    if root is not None and not os.path.exists(os.path.expanduser(str(root))):
        raise ConfigError(f"data.root={root!r}: path does not exist (in {source.file_for('data.root')})")
    if "root" not in accepted_options(ds) and root is not None:
        raise ConfigError(f"data.root: dataset '{data['type']}' takes no root (in {source.file_for('data.root')})")


def validate(raw: Mapping[str, Any], source: ConfigSource) -> dict:
    """The validated config as a plain dict with every default filled in."""
    cfg = apply_schema(raw, source)
    check_choices(cfg, source)
    fill_task_defaults(cfg, source)
    check_components(cfg, source)
    check_task(cfg, source)
    return cfg


UNSET_IS_ABSENT = ("data.resize", "data.randaugment", "data.holdout", "data.label_noise")


def semantic_view(cfg: Mapping[str, Any]) -> dict:
    """The config without the keys that do not change what a run computes (see ``NON_SEMANTIC_KEYS``)."""
    out = copy.deepcopy(dict(cfg))
    for dotted in NON_SEMANTIC_KEYS:
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    # optional keys added after runs were recorded: unset, they leave the hash of older configs unchanged
    for dotted in UNSET_IS_ABSENT:
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        if node.get(leaf, 0) is None:
            node.pop(leaf)
    if out.get("task") == DEFAULT_TASK:
        out.pop("task")
    return out


def config_hash(cfg: Mapping[str, Any], length: int = 10) -> str:
    """Stable short hash of the semantic config: same config → same run dir on every machine and rank."""
    text = json.dumps(semantic_view(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_dir_of(cfg: Mapping[str, Any]) -> str:
    """``<work_dir>/<experiment>/<config_hash>-s<seed>`` — never depends on the clock."""
    return os.path.join(cfg["work_dir"], cfg["experiment"], f"{config_hash(cfg)}-s{cfg['seed']}")
