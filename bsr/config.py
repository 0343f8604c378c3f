"""Workflow profiles: loading and validation against the package's schema.

A profile is a YAML file (``config/<name>.yaml``). A bad key or value fails
at once with a message naming the key path, before any work starts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .paths import REPO_ROOT

__all__ = ["ConfigError", "schema", "validate_profile", "load_profile", "deep_merge", "parse_override",
           "check_config_keys", "WORKFLOW_CONFIG_KEYS"]


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


WORKFLOW_CONFIG_KEYS = ("profile", "profile_file", "override")


def check_config_keys(config, known=WORKFLOW_CONFIG_KEYS) -> None:
    """Refuse an unknown top-level key of the workflow's ``--config`` (a typo
    such as ``profle=test`` would otherwise be ignored and run the default
    profile). Raises :class:`ConfigError` naming it and the known keys."""
    import difflib

    unknown = sorted(str(k) for k in (config or {}) if k not in known)
    if unknown:
        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, n=1)) else repr(k)
                 for k in unknown]
        raise ConfigError(f"unknown --config key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                          f"known keys: {', '.join(known)}")


def deep_merge(base: dict, over: dict | None) -> dict:
    """``base`` with ``over`` merged in: mappings merge key by key, anything
    else (lists, numbers, strings) replaces. Neither input is modified."""
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(value) -> dict:
    """A command-line override (``snakemake --config override='{seeds: [0]}'``):
    a mapping, or YAML text of one. Anything else is a :class:`ConfigError`."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):   # YAML text: its own types stand
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"override is not valid YAML ({e})") from None
        if not isinstance(value, dict):
            raise ConfigError(f"override must be a mapping such as '{{seeds: [0]}}', got {value!r}")
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"override must be a mapping such as '{{seeds: [0]}}', got {value!r}")
    return _typed(value)         # a mapping from Snakemake's --config: string leaves


_SCALARS = {"true": True, "false": False, "null": None, "~": None}


def _typed(value):
    """Snakemake hands ``--config`` mappings over with every leaf a string
    ('0', '1.0e-3', 'true'). A leaf that reads as a number becomes one, and
    'true'/'false'/'null' become True/False/None; every other string (paths,
    names, 'yes', text with ':' or '#') is kept exactly as given."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        if value.strip().lower() in _SCALARS:
            return _SCALARS[value.strip().lower()]
        try:
            got = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return got if isinstance(got, (int, float)) and not isinstance(got, bool) else value
    return value


def _read_yaml(p: Path, seen: tuple = ()) -> dict:
    """A profile file as a mapping, with its ``extends:`` base (a file path relative to
    it, itself read the same way) merged underneath: the profile's keys win."""
    if not p.is_file():
        raise ConfigError(f"profile file {p} not found" if not seen else f"{seen[-1]}: extends {p}, which is not found")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(cfg, dict) or "extends" not in cfg:
        return cfg
    base = cfg.pop("extends")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{p}: extends must be a file path, got {base!r}")
    path = (p.parent / base).resolve()
    if path in seen or path == p.resolve():
        raise ConfigError(f"{p}: extends {base}, which extends it again")
    below = _read_yaml(path, seen + (p.resolve(),))
    if not isinstance(below, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(below).__name__}")
    merged = deep_merge(below, cfg)
    return {**{k: merged[k] for k in cfg}, **merged}   # the profile's own keys first, in its order


def load_profile(path_or_name, override=None) -> dict:
    """Load and validate a profile by path, or by name from ``config/``.

    A profile may name a base file with ``extends: <path>`` (relative to the
    profile): the base's blocks apply, and the profile's own keys are merged
    over them (``config/cpu.yaml`` and ``config/paper.yaml`` share their runs
    and study blocks this way). ``override`` (a mapping or YAML text) is
    deep-merged into the result before validation, so an override that breaks
    the schema fails the same way.
    """
    p = Path(path_or_name)
    if not p.suffix:
        p = REPO_ROOT / "config" / f"{path_or_name}.yaml"
    cfg = _read_yaml(p)
    over = override if isinstance(override, dict) else parse_override(override)   # a dict is used as given
    if over:
        if not isinstance(cfg, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(cfg).__name__}")
        cfg = deep_merge(cfg, over)
    return validate_profile(cfg, source=str(p) + (" with the command-line override" if over else ""))
