"""Workflow profiles: loading and validation against the package's schema.

A profile is a YAML file (``config/<name>.yaml``). A bad key or value fails
at once with a message naming the key path, before any work starts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

__all__ = ["ConfigError", "schema", "validate_profile", "load_profile"]


class ConfigError(ValueError):
    """A profile does not match the schema."""


def schema() -> dict:
    text = resources.files("bsr").joinpath("data_files/profile_schema.yaml").read_text()
    return yaml.safe_load(text)


def validate_profile(cfg: dict, source: str = "profile") -> dict:
    """Check ``cfg`` against the schema; return it. Raises :class:`ConfigError`
    listing every problem as ``key.path: message``."""
    import jsonschema

    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(cfg).__name__}")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"{where}: {e.message}")
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(lines))
    return cfg


def load_profile(path_or_name) -> dict:
    """Load and validate a profile by path, or by name from ``config/``."""
    p = Path(path_or_name)
    if not p.suffix:
        from .paths import REPO_ROOT

        p = REPO_ROOT / "config" / f"{path_or_name}.yaml"
    if not p.is_file():
        raise ConfigError(f"profile file {p} not found")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    return validate_profile(cfg, source=str(p))
