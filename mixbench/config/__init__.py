"""Config composition (Hydra), strict validation against the schema and the registries, and the run hash."""

from mixbench.config.compose import ConfigSource, compose, experiment_files, resolve_config_path
from mixbench.config.validate import config_hash, run_dir_of, validate


def load_config(config=None, overrides=()):
    """Compose and validate one run config; returns ``(cfg dict, ConfigSource)``."""
    raw, source = compose(config, overrides)
    return validate(raw, source), source


__all__ = ["ConfigSource", "compose", "config_hash", "experiment_files", "load_config", "resolve_config_path",
           "run_dir_of", "validate"]
