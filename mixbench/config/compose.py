"""Compose a run config with Hydra and turn every composition error into a one-line :class:`ConfigError`.

An experiment file (``configs/<dataset>/<backbone>/<method>.yaml``) is the Hydra primary config; its
``defaults`` pick one option per group with absolute paths (``- /mixup: cutmix``). Overrides use Hydra's
syntax (``mixup=cutmix``, ``mixup.alpha=0.2``, ``+model.backbone.drop_rate=0.1``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from mixbench.errors import ConfigError

GROUPS = ("model", "data", "task", "mixup", "loss", "schedule", "runtime")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = PACKAGE_ROOT / "configs"
DEFAULT_EXPERIMENT = "digits/mixup.yaml"


@dataclass
class ConfigSource:
    """Where a composed config came from, to name the file in error messages."""

    experiment_file: Path
    configs_root: Path
    config_name: str
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)

    def group_file(self, group: str) -> Path | None:
        choice = self.choices.get(group)
        return self.configs_root / group / f"{choice}.yaml" if choice else None

    def file_for(self, key: str) -> str:
        """The place that set ``key`` (dotted): a command-line override, the experiment file or a group file."""
        for ov in self.overrides:
            name = ov.split("=", 1)[0].lstrip("+~")
            if name in self.choices:  # a group choice (mixup=cutmix): the group file holds the values
                continue
            if name == key or key.startswith(name + "."):
                return f"command line '{ov}'"
        parts = key.split(".")
        if _yaml_has(self.experiment_file, parts):
            return str(self.experiment_file)
        top = parts[0]
        for group in (".".join(parts[:2]), top):
            f = self.group_file(group) if group in self.choices else None
            if f is not None:
                sub = parts[len(group.split(".")):]
                if _yaml_has(f, sub):
                    return str(f)
        return str(self.experiment_file)


def _yaml_has(path: Path, parts: Sequence[str]) -> bool:
    try:
        node: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True


def yaml_error(exc: yaml.YAMLError, path: Path | str) -> ConfigError:
    """A one-line ``FILE:LINE:COLUMN: not valid YAML (problem)`` error from a PyYAML parse error."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigError(f"{where}: not valid YAML ({problem})")


def load_yaml(path: Path) -> Any:
    """The parsed content of a YAML file; a syntax error is a one-line :class:`ConfigError` with file:line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path) from None


def is_run_config(path: Path) -> bool:
    """A run dir's ``config.yaml``: the resolved config of a run (no Hydra ``defaults`` list to compose)."""
    if path.name != "config.yaml" or not path.is_file():
        return False
    data = load_yaml(path)
    return isinstance(data, dict) and "defaults" not in data


def compose_run_config(path: Path, overrides: Sequence[str] = ()) -> tuple[dict, ConfigSource]:
    """A run dir's resolved ``config.yaml`` with ``key=value`` overrides (no group choices: it has no groups)."""
    from omegaconf import OmegaConf

    source = ConfigSource(experiment_file=path, configs_root=DEFAULT_CONFIGS, config_name="config",
                          overrides=list(overrides))
    raw = OmegaConf.create(load_yaml(path))
    for ov in overrides:
        key, sep, value = ov.partition("=")
        key = key.lstrip("+")
        if not sep or key.startswith("~") or key in GROUPS or key.startswith("hydra"):
            raise ConfigError(f"{ov}: a run's config.yaml ({path}) takes only key=value overrides of its keys")
        try:
            OmegaConf.update(raw, key, yaml.safe_load(value) if value else None, force_add=True)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{ov}: value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return OmegaConf.to_container(raw, resolve=False), source


def find_configs_root(path: Path) -> Path:
    """Nearest ancestor directory that holds the config groups (``mixup/``, ``model/``...)."""
    for parent in path.resolve().parents:
        if (parent / "mixup").is_dir() and (parent / "model").is_dir():
            return parent
    return DEFAULT_CONFIGS


def experiment_files(root: Path = DEFAULT_CONFIGS) -> list[Path]:
    """Every experiment file under ``root`` (group option files and Hydra's own configs excluded)."""
    skip = set(GROUPS) | {"hydra"}
    return sorted(p for p in root.rglob("*.yaml") if p.relative_to(root).parts[0] not in skip
                  and len(p.relative_to(root).parts) > 1)


def resolve_config_path(arg: str | None) -> Path:
    """The experiment file named on the command line (default: digits mixup)."""
    if not arg:
        return DEFAULT_CONFIGS / DEFAULT_EXPERIMENT
    p = Path(arg)
    for cand in (p, DEFAULT_CONFIGS / p, PACKAGE_ROOT / p):
        if cand.is_file():
            return cand.resolve()
    known = [str(f.relative_to(PACKAGE_ROOT)) for f in experiment_files()]
    near = difflib.get_close_matches(arg, known, n=3, cutoff=0.5)
    hint = ("did you mean " + ", ".join(near) + "?") if near else f"experiment files are under {DEFAULT_CONFIGS}"
    raise ConfigError(f"config: file '{arg}' not found; {hint}")


def _group_options(root: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (root / group).glob("*.yaml")) if (root / group).is_dir() else []


def translate_error(exc: Exception, source: ConfigSource) -> ConfigError:
    """A one-line ConfigError from a Hydra/OmegaConf composition error."""
    msg = str(exc)
    m = re.search(r"Could not find '([^']+)/([^']+)'", msg) or re.search(
        r"In '[^']*': Could not find '([^']+)/([^']+)'", msg)
    if m:
        group, option = m.group(1).strip("/"), m.group(2)
        opts = _group_options(source.configs_root, group)
        near = difflib.get_close_matches(option, opts, n=3, cutoff=0.4)
        hint = ("did you mean " + ", ".join(f"'{o}'" for o in near) + "?") if near else f"valid: {', '.join(opts)}"
        return ConfigError(f"{group}={option}: no such option in {source.configs_root / group}; {hint}")
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return ConfigError(f"{key}: unknown key (command line); {_closest_key_hint(key, parent, source)}")
    m = re.search(r"Key '([^']+)' (?:is not in struct|not in)", msg)
    if m:
        return ConfigError(f"{m.group(1)}: unknown key ({source.experiment_file})")
    first = next((line for line in msg.splitlines() if line.strip()), msg)
    if "Ambiguous value" in first:
        return ConfigError(f"{first.rstrip('.')}: comma lists are sweeps; add -m to run every value")
    return ConfigError(f"{first} (while composing {source.experiment_file})")


def _closest_key_hint(key: str, parent: str, source: ConfigSource) -> str:
    from omegaconf import OmegaConf

    from mixbench.config.schema import TrainCfg

    node = OmegaConf.structured(TrainCfg)
    sub = OmegaConf.select(node, parent) if parent else node
    names = list(sub.keys()) if hasattr(sub, "keys") else []
    leaf = key.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(leaf, names, n=3, cutoff=0.5)
    if near:
        return "did you mean " + ", ".join(f"'{n}'" for n in near) + "?"
    return "prefix with '+' to add a new key" if not names else f"valid: {', '.join(names)}"


def split_overrides(argv: Iterable[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's own overrides (``hydra.*``, ``hydra/launcher=...``) from the run config overrides."""
    run, hydra = [], []
    for a in argv:
        (hydra if a.split("=", 1)[0].lstrip("+~").startswith("hydra") else run).append(a)
    return run, hydra


def compose(config: str | Path | None, overrides: Sequence[str] = ()) -> tuple[dict, ConfigSource]:
    """Compose ``config`` with ``overrides`` into a plain dict (interpolations resolved, not yet validated)."""
    path = config if isinstance(config, Path) else resolve_config_path(config)
    root = find_configs_root(path)
    try:
        name = str(path.relative_to(root).with_suffix(""))
    except ValueError:
        raise ConfigError(f"config: '{path}' is not inside a configs directory with groups "
                          f"{', '.join(GROUPS)}") from None
    source = ConfigSource(experiment_file=path, configs_root=root, config_name=name, overrides=list(overrides))
    overrides = list(overrides)
    for _ in range(len(overrides) + 1):
        try:
            data = _compose_once(root, name, overrides, source)
            source.overrides = list(overrides)
            return data, source
        except _RetryAppend as retry:
            # Hydra refuses to set a key the composed config lacks; retry it as an addition so that the
            # schema and the registry checks report it with the closest valid names.
            overrides = [("+" + o) if o.split("=", 1)[0] == retry.key else o for o in overrides]
    raise ConfigError(f"overrides: could not compose {path}")


class _RetryAppend(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _compose_once(root: Path, name: str, overrides: list[str], source: ConfigSource) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(root), version_base="1.3", job_name="mixbench"):
            cfg = hydra_compose(config_name=name, overrides=overrides, return_hydra_config=True)
            source.choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
                              if v is not None and not k.startswith("hydra")}
            OmegaConf.set_struct(cfg, False)
            cfg.pop("hydra")
            return OmegaConf.to_container(cfg, resolve=True)
    except ConfigError:
        raise
    except yaml.YAMLError as exc:  # a syntax error in the experiment file or in a group file
        raise yaml_error(exc, source.experiment_file) from None
    except Exception as exc:  # Hydra and OmegaConf raise many types; all are user input errors here
        if type(exc).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        m = re.search(r"Could not override '([^']+)'", str(exc))
        if m and m.group(1) in overrides_keys(overrides) and m.group(1) not in GROUPS:
            raise _RetryAppend(m.group(1)) from None
        raise translate_error(exc, source) from None
    finally:
        GlobalHydra.instance().clear()


def overrides_keys(overrides: Sequence[str]) -> set[str]:
    return {o.split("=", 1)[0] for o in overrides if not o.startswith(("+", "~"))}
