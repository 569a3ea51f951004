"""Config composition (Hydra), strict validation against the schema and the registries, and the run hash."""

from pathlib import Path

from mixbench.config.compose import (
    ConfigSource,
    compose,
    compose_run_config,
    experiment_files,
    is_run_config,
    resolve_config_path,
)
from mixbench.config.validate import check_data, config_hash, run_dir_of, validate


def load_config(config=None, overrides=()):
    """Compose and validate one run config; returns ``(cfg dict, ConfigSource)``.

    ``config`` is an experiment file (composed with Hydra) or a run dir's resolved ``config.yaml``.
    """
    if config is not None and is_run_config(Path(config)):
        raw, source = compose_run_config(Path(config).resolve(), overrides)
    else:
        raw, source = compose(config, overrides)
    return validate(raw, source), source


__all__ = ["ConfigSource", "check_data", "compose", "config_hash", "experiment_files", "load_config",
           "resolve_config_path", "run_dir_of", "validate"]
