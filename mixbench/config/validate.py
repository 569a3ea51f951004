"""Strict validation of a composed config, and its hash (docs/architecture.md, "Configs").

Every check raises a one-line :class:`ConfigError` that names the key, the value and the file it came from
(or the closest valid names), so the CLI can print it and exit with status 2. :func:`validate` checks the
config alone; :func:`check_data` also looks at the data it names. Both run before any run state exists.
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
from mixbench.config.schema import (
    CHOICES,
    DEFAULT_TASK,
    NON_SEMANTIC_KEYS,
    RANGES,
    TrainCfg,
)
from mixbench.config.task import check_task, fill_task_defaults
from mixbench.datasets.augment import ResizedCrop
from mixbench.datasets.base import split_size
from mixbench.datasets.splits import heldout_size
from mixbench.errors import ConfigError
from mixbench.ranges import option_range
from mixbench.registry import (
    BACKBONES,
    DATASETS,
    HEADS,
    LOSSES,
    MIXUPS,
    MODELS,
    accepted_options,
    build,
    check_options,
    closest,
    import_components,
    lookup,
)


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


def check_ranges(cfg: Mapping[str, Any], source: ConfigSource) -> None:
    """Every numeric key of the schema, and the conventional options of the components, within its range."""
    for key, allowed in RANGES.items():
        value = _get(cfg, key)
        if value is not None:
            allowed.check(key, value, source.file_for(key))
    s = cfg["schedule"]
    if s["min_lr"] > s["lr"]:
        raise ConfigError(f"schedule.min_lr={s['min_lr']!r}: expected ≤ schedule.lr={s['lr']!r} "
                          f"(in {source.file_for('schedule.min_lr')})")
    for group, node in (("model.backbone", cfg["model"]["backbone"]), ("model.head", cfg["model"]["head"]),
                        ("mixup", cfg["mixup"]), ("loss", cfg["loss"])):
        for option, value in (node.items() if isinstance(node, Mapping) else ()):
            # a value of the wrong type is reported by the component's signature check instead
            allowed = option_range(option)
            if allowed is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                key = f"{group}.{option}"
                allowed.check(key, value, source.file_for(key))


def check_resized_crop(cfg: Mapping[str, Any], source: ConfigSource) -> None:
    """``data.random_resized_crop`` is well formed and does not meet a padded crop (it replaces it)."""
    d, where = cfg["data"], f"(in {source.file_for('data.random_resized_crop')})"
    try:
        crop = ResizedCrop.from_config(d["random_resized_crop"])
        if crop is not None:
            crop.check_padding(d["crop_padding"])
    except ConfigError as exc:
        raise ConfigError(f"{exc} {where}") from None


def check_paths(cfg: Mapping[str, Any], source: ConfigSource) -> None:
    """``work_dir`` is a path and ``experiment`` one name inside it, so every run dir stays in ``work_dir``."""
    if not str(cfg["work_dir"]).strip():
        raise ConfigError(f"work_dir={cfg['work_dir']!r}: expected a directory path, got an empty value "
                          f"(in {source.file_for('work_dir')})")
    name = str(cfg["experiment"])
    if (not name.strip() or name in (".", "..") or "/" in name or os.sep in name
            or (os.altsep and os.altsep in name) or os.path.isabs(name)):
        raise ConfigError(f"experiment={name!r}: expected a name (one path component: no '/', no '..', not "
                          f"empty), the run dir is <work_dir>/<experiment>/... (in {source.file_for('experiment')})")


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
    # Option values are checked by the components themselves; the policy and the loss are cheap to build, so a
    # bad value fails here, before a run dir exists (the model's options are checked when it is built). The
    # loss gets a stand-in class count: the real one is known only once the data is read, and no check uses it.
    for group, registry, extra in (("mixup", MIXUPS, {}), ("loss", LOSSES, {"num_classes": 2})):
        try:
            build(registry, cfg[group], group, **extra)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source.file_for(re.split('[:=]', str(exc), maxsplit=1)[0])})") from None
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
    if root is not None and not os.path.isdir(os.path.expanduser(str(root))):
        raise ConfigError(f"data.root={root!r}: expected a directory, got a file (in {source.file_for('data.root')})")
    if "root" not in accepted_options(ds) and root is not None:
        raise ConfigError(f"data.root: dataset '{data['type']}' takes no root (in {source.file_for('data.root')})")


def validate(raw: Mapping[str, Any], source: ConfigSource) -> dict:
    """The validated config as a plain dict with every default filled in."""
    cfg = apply_schema(raw, source)
    check_choices(cfg, source)
    check_ranges(cfg, source)
    check_resized_crop(cfg, source)
    check_paths(cfg, source)
    fill_task_defaults(cfg, source)
    check_components(cfg, source)
    check_task(cfg, source)
    return cfg


def check_data(cfg: Mapping[str, Any], source: ConfigSource, *, world_size: int = 1, train: bool = True) -> None:
    """The data a validated config names, before a run starts: the layout of ``data.root`` for every split
    it uses and, for training, at least one full batch per process (the training loader drops the last
    incomplete batch, so a larger batch would train on no image at all).

    Args:
        cfg: a config returned by :func:`validate`.
        source: where it came from, for the messages.
        world_size: processes the training split is sharded over (each gets ``⌊n / world_size⌋`` images).
        train: check the training split too (``False`` for evaluation, which reads only ``val``).
    """
    d = cfg["data"]
    factory = lookup(DATASETS, d["type"], f"data.type (in {source.file_for('data.type')})")
    sizes = {}
    for split in ("train", "val") if train else ("val",):
        try:
            sizes[split] = split_size(factory, split, d["root"], d["params"])
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source.file_for('data.root')})") from None
    if train:
        _check_holdout(d, sizes["train"], world_size, source)
        per_process = sizes["train"] // world_size
        if d["batch_size"] > per_process:
            share = f"{per_process} per process over {world_size} processes" if world_size > 1 else str(per_process)
            raise ConfigError(f"data.batch_size={d['batch_size']}: larger than the training split "
                              f"({share} images), so no full batch is left to train on; expected ≤ {per_process} "
                              f"(in {source.file_for('data.batch_size')})")


def _check_holdout(d: Mapping[str, Any], n: int, world_size: int, source: ConfigSource) -> None:
    """A fractional ``data.holdout`` leaves at least one held-out sample and a full batch per process."""
    fraction = d.get("holdout")
    if isinstance(fraction, str) or fraction is None:  # 'dataset': the dataset's own held-out split
        return
    held = heldout_size(n, float(fraction))
    per_process = (n - held) // world_size
    where = f"(in {source.file_for('data.holdout')})"
    if held == 0:
        raise ConfigError(f"data.holdout={fraction}: the training split has {n} image(s), none left to hold out; "
                          f"expected a training split of at least 2 images {where}")
    if d["batch_size"] > per_process:
        share = f", {per_process} per process over {world_size} processes" if world_size > 1 else ""
        raise ConfigError(f"data.holdout={fraction}: holds out {held} of the {n} training images and leaves "
                          f"{n - held}{share}, fewer than data.batch_size={d['batch_size']}, so no full batch is "
                          f"left to train on; expected a smaller holdout or batch {where}")


UNSET_IS_ABSENT = ("data.resize", "data.randaugment", "data.holdout", "data.label_noise",
                   "data.random_resized_crop")


def semantic_view(cfg: Mapping[str, Any], world_size: int = 1) -> dict:
    """The config without the keys that do not change what a run computes (see ``NON_SEMANTIC_KEYS``), plus
    the number of processes of a multi-process run.

    ``data.batch_size`` is per process, so the world size sets the global batch (and the per-process batch
    norm statistics and data shards): it changes the result and is hashed as ``world_size``. It is added
    only when it is above 1, which keeps the hash of every single-process run as it was.
    """
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
    if world_size > 1:
        out["world_size"] = world_size
    if out.get("task") == DEFAULT_TASK:
        out.pop("task")
    _add_behaviour(out.get("mixup"))
    return out


def _add_behaviour(node: Any) -> None:
    """Add ``behaviour: N`` to a policy's node (and its sub-policies') when its registered class computes
    differently from the version earlier runs were recorded with (``behaviour`` > 1): a changed default needs
    a new hash even though no key of the config changed, while every other policy's hash stays as it was."""
    if not isinstance(node, dict):
        return
    import_components()
    policy = MIXUPS.module_dict.get(node.get("type"))
    if getattr(policy, "behaviour", 1) > 1:
        node["behaviour"] = policy.behaviour
    for sub in node.get("policies") or ():
        _add_behaviour(sub)


def config_hash(cfg: Mapping[str, Any], length: int = 10, *, world_size: int = 1) -> str:
    """Stable short hash of the semantic config and world size: same run → same run dir on every machine and
    rank; the same config run on a different number of processes gets its own."""
    text = json.dumps(semantic_view(cfg, world_size), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_dir_of(cfg: Mapping[str, Any], world_size: int = 1) -> str:
    """``<work_dir>/<experiment>/<config_hash>-s<seed>`` of a run on ``world_size`` processes (no clock)."""
    h = config_hash(cfg, world_size=world_size)
    return os.path.join(cfg["work_dir"], cfg["experiment"], f"{h}-s{cfg['seed']}")
