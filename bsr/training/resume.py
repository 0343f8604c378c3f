"""Resuming a run: is the run in ``out_dir/last.pt`` a run of this config, and its state restored.

Keys that never change what a run computes (:data:`_PURE_RUN_CONTROL`) may
differ in every resume mode; a plain resume may also lengthen the phases or
switch AMP without a warning (:data:`_RUN_CONTROL`), and resumes any other
change with a warning, unless the run has finished.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..checkpoint import load_state_checked, plain_values, read_checkpoint, set_rng_state, stored_train_config
from ..model import complete_model_config

__all__ = ["differs_from_checkpoint", "resume_point", "restore_state"]

# keys that never change what a run computes (``resume="if_same"`` ignores them) ...
_PURE_RUN_CONTROL = {"out_dir", "progress", "device", "threads", "log_every", "ckpt_every", "num_workers",
                     "grad_checkpoint"}
# ... and those a plain resume may also change without a warning (longer phases, AMP);
# other changes (a phase's lr or weight decay included) resume with a warning
_RUN_CONTROL = _PURE_RUN_CONTROL | {"amp", "phase1.steps", "phase1.epochs", "phase2.steps", "phase2.epochs"}

_ABSENT = object()


def _changed_keys(old: dict, new: dict, ignore: set) -> list[str]:
    """Dotted config keys (``phase1.lr``; none named in ``ignore``) whose values differ."""
    def walk(a, b, prefix):
        for k in sorted(set(a) | set(b), key=str):
            key = f"{prefix}{k}"
            if key in ignore:
                continue
            va, vb = a.get(k, _ABSENT), b.get(k, _ABSENT)
            if isinstance(va, dict) and isinstance(vb, dict):
                yield from walk(va, vb, key + ".")
            elif va != vb:
                yield key
    return list(walk(old or {}, new or {}, ""))


def _describe_changes(keys: list[str], old: dict, new: dict, most: int = 6) -> str:
    """``phase1.lr 0.0001 -> 0.001, seed 0 -> 5`` (values shown where short)."""
    def get(d, key):
        for part in key.split("."):
            d = d.get(part, _ABSENT) if isinstance(d, dict) else _ABSENT
        return d

    def show(v):
        return "(none)" if v is _ABSENT else repr(v)

    parts = []
    for k in keys[:most]:
        text = f"{k} {show(get(old, k))} -> {show(get(new, k))}"
        parts.append(text if len(text) <= 80 else k)
    if len(keys) > most:
        parts.append(f"and {len(keys) - most} more")
    return ", ".join(parts)


def _checkpoint_for_resume(last_path: Path) -> dict:
    """The checkpoint to resume from, or a one-line ValueError that suggests --fresh."""
    try:
        return read_checkpoint(last_path, map_location="cpu")   # RNG states must stay on the CPU
    except ValueError as e:
        raise ValueError(f"{e}; use --fresh to start over (or --out for another folder)") from None


def differs_from_checkpoint(cfg, last_path: Path) -> str | None:
    """Why the run in ``last_path`` is not a run of the :class:`TrainConfig` ``cfg``
    (None: it is, or there is none)."""
    if not last_path.is_file():
        return None
    try:
        ck = read_checkpoint(last_path, map_location="cpu")
    except ValueError as e:   # refused, corrupt or foreign: never resumed
        return str(e).removeprefix(f"{last_path}: ")
    if not isinstance(ck.get("model_config"), dict) or not ck["model_config"]:
        return "the checkpoint holds no model config"
    old_model, new_model = complete_model_config(ck.get("model_config")), plain_values(cfg.model_config())
    if plain_values(old_model) != new_model:
        keys = _changed_keys(plain_values(old_model) if isinstance(old_model, dict) else {}, new_model, set())
        return f"a run of another model config ({', '.join('model.' + k for k in keys) or 'model'} differ)"
    old, new = ck.get("train_config") or {}, stored_train_config(cfg)
    changed = _changed_keys(old, new, _PURE_RUN_CONTROL)
    return f"a run of another config (changed: {_describe_changes(changed, old, new)})" if changed else None


def resume_point(cfg, model, last_path: Path, final_path: Path, n1: int, total_steps: int) -> tuple[dict, int, int]:
    """The checkpoint ``last_path`` checked against this run, with its weights loaded into
    ``model``: ``(checkpoint, step, phase)``, the phase being that of the next step.

    Every problem is a one-line ValueError that names the file and the way out
    (``--fresh``); a changed config resumes with a warning (see the module's
    docstring), but a finished run is never handed back as a model of another one.
    """
    ck = _checkpoint_for_resume(last_path)
    if not isinstance(ck.get("model_config"), dict) or not ck["model_config"]:
        raise ValueError(f"{last_path}: the checkpoint holds no model config; use --fresh to start over "
                         "(or --out for another folder)")
    if plain_values(complete_model_config(ck["model_config"])) != plain_values(model.config):
        raise ValueError(f"{last_path} was written for another model config; use another out_dir or "
                         f"--fresh to start over")
    try:
        start, phase = int(ck["step"]), int(ck["phase"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{last_path}: the checkpoint has no valid step/phase; use --fresh to start "
                         "over") from None
    old_cfg, new_cfg = ck.get("train_config") or {}, stored_train_config(cfg)
    changed = _changed_keys(old_cfg, new_cfg, _PURE_RUN_CONTROL)
    if changed and start >= total_steps and final_path.is_file():
        raise ValueError(f"{last_path}: the run finished (step {start}) with another config "
                         f"(changed: {_describe_changes(changed, old_cfg, new_cfg)}), so its final.pt is "
                         "not a model of this one; use --fresh to retrain (or --out for another folder)")
    changed = _changed_keys(old_cfg, new_cfg, _RUN_CONTROL)
    if changed:   # stacklevel 3: reported at the call in train()
        warnings.warn(f"resuming {last_path} with a changed config "
                      f"({_describe_changes(changed, old_cfg, new_cfg)})", stacklevel=3)
    load_state_checked(model, ck.get("model"), last_path)
    if phase == 2 and start < n1:
        raise ValueError(f"{last_path} is in phase 2 at step {start}, but phase 1 now runs to step {n1}; "
                         "use --fresh or another out_dir")
    if phase == 1 and start >= n1:        # phase 1 was shortened: go on with phase 2
        phase, ck["optimizer"] = 2, None
    return ck, start, phase


def restore_state(ck: dict, optimizer, scaler, last_path: Path) -> None:
    """The optimizer, grad-scaler and RNG states of the checkpoint ``ck`` (of ``last_path``) restored.

    The optimizer keeps the learning rates and weight decays it was built with (the
    config's): a run continued with a changed ``lr`` goes on at the new one."""
    try:
        if ck.get("optimizer") is not None:
            settings = [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
            optimizer.load_state_dict(ck["optimizer"])
            for g, (lr, wd) in zip(optimizer.param_groups, settings):
                g["lr"], g["weight_decay"] = lr, wd
        if ck.get("scaler") is not None and scaler.is_enabled():
            scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
    except Exception as e:  # noqa: BLE001 - a damaged or edited checkpoint
        text = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"{last_path}: its optimizer or RNG state cannot be restored ({type(e).__name__}: "
                         f"{text}); use --fresh to start over") from None
