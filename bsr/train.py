"""Training of B-SR: phase 1 (registration + reconstruction), then phase 2 (fusion).

Usage::

    python -m bsr.train --config config/train/quick.yaml [--set key=value ...]
    bsr train --config FILE [--set phase1.steps=200 --set loss.nda=0.5] [--resume | --fresh]

The config is a YAML mapping of :class:`TrainConfig` fields (nested
mappings for ``model``, ``loss``, ``phase1``, ``phase2``, ``data``); an
unknown key fails with a ValueError naming it.

Outputs in ``out_dir``: ``config.yaml`` (resolved config), ``log.csv`` (every
loss term per step, written as it goes), ``last.pt`` (the latest checkpoint,
rewritten every ``ckpt_every`` steps, atomically), ``phase1.pt`` (end of
phase 1) and ``final.pt``. A checkpoint holds the model config and weights
(loadable with :func:`bsr.model.load_checkpoint`), plus optimizer, scaler and
RNG state for resuming: tensors and plain values only, read with
``torch.load(weights_only=True)``. ``bsr train`` resumes only a run of the
same config (``resume="same"``); ``--resume`` continues a changed one.

Determinism: the data order and crops of each epoch, and the PDG's random ops
of each step, come from generators seeded by (seed, phase, epoch/step), so a
run resumed from ``last.pt`` sees exactly the batches and patch ops it would
have seen; on CPU with ``deterministic: true`` the final weights equal those
of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import math
import numbers
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .config import deep_merge
from .io import atomic_path
from .model import (BSR, CHECKPOINT_FORMAT, SIZES, complete_model_config, load_state_checked, model_config,
                    read_checkpoint)
from .objective import VARIANTS, LossConfig, Objective, variant_config

__all__ = ["ModelSpec", "PhaseConfig", "TrainConfig", "NonFiniteLossError", "train", "main",
           "read_log", "LOG_COLUMNS", "build_model_from_config"]

LOG_TERMS = ["total", "nda_di", "nda_an", "edge", "epr", "smooth", "rec", "dec", "ss_field", "ss_aligned",
             "ss_rec", "fusion_int", "fusion_grad", "epe"]
LOG_COLUMNS = ["step", "phase", "phase_step", "epoch", "lr", "time_s"] + LOG_TERMS

DEFAULT_DATA = {"name": "synthetic", "synthetic": {"n": 16, "size": [128, 128], "seed": 0},
                "misalignment": {"kind": "shift", "level": 5}}


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stopped."""


# ----------------------------------------------------------------------------- config

@dataclass
class ModelSpec:
    """``size`` names a preset of :data:`bsr.model.SIZES`; ``unet``/``ae``
    override single values of it; ``fusion_rule`` ("sum" | "mean") too."""

    size: str = "quick"
    unet: dict = field(default_factory=dict)
    ae: dict = field(default_factory=dict)
    fusion_rule: str | None = None

    def resolve(self) -> dict:
        over: dict[str, Any] = {}
        if self.unet:
            over["unet"] = self.unet
        if self.ae:
            over["ae"] = self.ae
        if self.fusion_rule is not None:
            over["fusion_rule"] = self.fusion_rule
        return model_config(self.size, **over)


@dataclass
class PhaseConfig:
    """Length of a phase (``steps``, else ``epochs`` x batches per epoch) and its optimizer."""

    steps: int | None = None
    epochs: float | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01

    def __post_init__(self):
        # YAML 1.1 reads "3e-3" (no dot) as a string: take such strings as numbers, refuse the rest
        for name in ("steps", "epochs", "lr", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    raise ValueError(f"phase {name} must be a number; got {v!r}") from None
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                  or not math.isfinite(v)):
                raise ValueError(f"phase {name} must be a finite number; got {v!r}")
            if name == "steps" and v is not None:
                if v != int(v):
                    raise ValueError(f"phase steps must be a whole number; got {v!r}")
                v = int(v)
            setattr(self, name, v)
        if self.lr is None or self.lr <= 0 or self.weight_decay is None or self.weight_decay < 0:
            raise ValueError(f"phase lr must be > 0 and weight_decay >= 0; got lr={self.lr!r}, "
                             f"weight_decay={self.weight_decay!r}")


@dataclass
class TrainConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    variant: str = "full"                  # full | I | II | III | IV | V (see bsr.objective.VARIANTS)
    loss: dict = field(default_factory=dict)  # LossConfig overrides, applied after the variant
    pdg_n: int = 2                         # N of the PDG (N x N patches)
    data: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_DATA))
    crop: Any = "quarter"                  # "quarter" (half height x half width) | int | [h, w]
    batch_size: int = 8
    phase1: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=60))
    phase2: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=80))
    seed: int = 0
    device: str = "auto"                   # auto | cpu | cuda | cuda:N
    threads: int = 0                       # torch.set_num_threads; 0 = leave as is
    amp: Any = "auto"                      # auto (on for CUDA) | true | false
    amp_dtype: str = "bfloat16"            # bfloat16 | float16 (float16 uses a grad scaler)
    deterministic: bool = True             # torch.use_deterministic_algorithms during training
    grad_checkpoint: bool = False          # activation checkpointing of the AE blocks (less memory, ~1/3 slower)
    grad_clip: float | None = None         # max gradient norm; null = off
    out_dir: str = "runs/bsr"
    log_every: int = 1
    ckpt_every: int = 100
    num_workers: int = 0
    progress: bool = True

    # -- construction -------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        d = copy.deepcopy(d or {})
        if not isinstance(d, dict):
            raise ValueError(f"a training config must be a mapping; got {type(d).__name__}")
        kw = _fields_from(cls, d, "")
        for name, sub in (("model", ModelSpec), ("phase1", PhaseConfig), ("phase2", PhaseConfig)):
            if name in kw:
                if not isinstance(kw[name], dict):
                    raise ValueError(f"config key {name!r} must be a mapping")
                base = dataclasses.asdict(cls.__dataclass_fields__[name].default_factory())
                base.update(_fields_from(sub, kw[name], name + "."))
                try:
                    kw[name] = sub(**base)
                except ValueError as e:
                    raise ValueError(f"config key {name!r}: {e}") from None
        if "data" in kw:
            kw["data"] = _merge_data(kw["data"])
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path, overrides: list[str] | None = None) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text (YAML) file") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a training config must be a mapping; got {type(d).__name__}")
        for item in overrides or []:
            apply_override(d, item)
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        self._check_types()
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        self.loss_config()
        self.model_config()
        if self.pdg_n < 0:
            raise ValueError(f"pdg_n must be >= 0; got {self.pdg_n}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        for name in ("phase1", "phase2"):
            p = getattr(self, name)
            if p.steps is None and p.epochs is None:
                raise ValueError(f"{name}: give steps or epochs")
            if (p.steps is not None and p.steps < 0) or (p.epochs is not None and p.epochs < 0):
                raise ValueError(f"{name}: steps/epochs must be >= 0")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        if self.amp not in ("auto", True, False):
            raise ValueError(f"amp must be auto, true or false; got {self.amp!r}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be bfloat16 or float16; got {self.amp_dtype!r}")
        if self.log_every < 1 or self.ckpt_every < 1:
            raise ValueError("log_every and ckpt_every must be >= 1")
        parse_crop(self.crop)
        if not isinstance(self.data, dict) or "name" not in self.data:
            raise ValueError("data must be a mapping with at least a `name`")
        if not isinstance(self.data["name"], str):
            raise ValueError(f"config key 'data.name' must be a dataset name; got {self.data['name']!r}")

    def _check_types(self) -> None:
        """Each field's type, with the key named (``--set batch_size=abc`` must not fail deep inside)."""
        for name in ("pdg_n", "batch_size", "seed", "threads", "log_every", "ckpt_every", "num_workers"):
            v = getattr(self, name)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"config key {name!r} must be a whole number; got {v!r}")
            setattr(self, name, int(v))
        for name in ("seed", "threads", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"config key {name!r} must be >= 0; got {getattr(self, name)}")
        for name in ("deterministic", "grad_checkpoint", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"config key {name!r} must be true or false; got {getattr(self, name)!r}")
        gc = self.grad_clip
        if gc is not None and (isinstance(gc, bool) or not isinstance(gc, numbers.Real) or not math.isfinite(gc)
                               or gc < 0):
            raise ValueError(f"config key 'grad_clip' must be a number >= 0 or null; got {gc!r}")
        for name in ("variant", "device", "amp_dtype"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"config key {name!r} must be a string; got {getattr(self, name)!r}")
        if not isinstance(self.out_dir, (str, os.PathLike)) or str(self.out_dir) == "":
            raise ValueError(f"config key 'out_dir' must be a folder path; got {self.out_dir!r}")
        if self.loss is not None and not isinstance(self.loss, dict):
            raise ValueError(f"config key 'loss' must be a mapping; got {self.loss!r}")
        types = {f.name: {t.strip() for t in str(f.type).split("|")} for f in dataclasses.fields(LossConfig)}
        for k, v in (self.loss or {}).items():
            want = types.get(k)
            if not want or v is None and "None" in want:
                continue                     # an unknown key is named by LossConfig
            if "float" in want and isinstance(v, str):
                try:                         # YAML 1.1 reads 3e-3 (no dot) as a string
                    v = self.loss[k] = float(v)
                except ValueError:
                    pass
            ok = ((isinstance(v, bool) and "bool" in want) or (isinstance(v, str) and "str" in want)
                  or (not isinstance(v, bool) and isinstance(v, numbers.Integral) and want & {"int", "float"})
                  or (not isinstance(v, bool) and isinstance(v, numbers.Real) and "float" in want)
                  or (isinstance(v, dict) and "dict" in want))
            if not ok:
                raise ValueError(f"config key 'loss.{k}' must be of type {' or '.join(sorted(want))}; got {v!r}")
        m = self.model
        if not isinstance(m.size, str):
            raise ValueError(f"config key 'model.size' must be one of {', '.join(SIZES)}; got {m.size!r}")
        for name in ("unet", "ae"):
            if getattr(m, name) is not None and not isinstance(getattr(m, name), dict):
                raise ValueError(f"config key 'model.{name}' must be a mapping; got {getattr(m, name)!r}")
        if m.fusion_rule is not None and not isinstance(m.fusion_rule, str):
            raise ValueError(f"config key 'model.fusion_rule' must be a string; got {m.fusion_rule!r}")

    def loss_config(self) -> LossConfig:
        return variant_config(self.variant, **(self.loss or {}))

    def model_config(self) -> dict:
        return self.model.resolve()


def _merge_data(data) -> dict:
    """A data mapping without a ``name``, or for ``synthetic``, fills in the
    synthetic defaults; another dataset's mapping is taken as given."""
    if not isinstance(data, dict):
        raise ValueError(f"config key 'data' must be a mapping; got {type(data).__name__}")
    if data.get("name", "synthetic") == "synthetic":
        return copy.deepcopy(deep_merge(DEFAULT_DATA, data))
    return data


def _fields_from(cls, d: dict, prefix: str) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    for k in d:
        if k not in names:
            raise ValueError(f"unknown config key {prefix + str(k)!r}; known keys here: "
                             f"{', '.join(sorted(names))}")
    return dict(d)


def apply_override(d: dict, item: str) -> None:
    """Apply one ``key.path=value`` override (value parsed as YAML) to a dict."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value; got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"--set {key}: the value {raw!r} is not valid YAML ({' '.join(str(e).split())})") from None
    parts = key.strip().split(".")
    cur = d
    for p in parts[:-1]:
        if cur.get(p) is None:
            cur[p] = {}
        if not isinstance(cur[p], dict):
            raise ValueError(f"--set {key}: {p!r} is not a mapping")
        cur = cur[p]
    cur[parts[-1]] = value


def parse_crop(crop) -> str | tuple[int, int]:
    if crop == "quarter":
        return "quarter"
    if isinstance(crop, int) and not isinstance(crop, bool) and crop > 0:
        return (crop, crop)
    if isinstance(crop, (list, tuple)) and len(crop) == 2 and all(isinstance(c, int) and c > 0 for c in crop):
        return (int(crop[0]), int(crop[1]))
    raise ValueError(f"crop must be 'quarter', a positive int or [height, width]; got {crop!r}")


# ----------------------------------------------------------------------------- data

def _min_image_size(data_cfg: dict) -> tuple[int, int]:
    """Smallest (H, W) over the dataset's pairs (image headers only where possible)."""
    from .data import load_pairs

    name = data_cfg["name"]
    if name == "synthetic":
        size = (data_cfg.get("synthetic") or {}).get("size", [256, 256])
        return int(size[0]), int(size[1])
    from PIL import Image

    from .data import dataset_dir, find_pairs, read_split

    ds = dataset_dir(name, data_cfg.get("root"))
    if (ds / "ir").is_dir():
        files = find_pairs(ds / "ir", ds / "vi")
        split = data_cfg.get("split", "train")
        if split and (ds / "splits" / f"{split}.txt").is_file():
            keep = set(read_split(ds, split))
            files = [f for f in files if f[0] in keep]
        sizes = []
        for _, ir_path, _ in files:
            with Image.open(ir_path) as im:
                sizes.append(im.size[::-1])
        return min(s[0] for s in sizes), min(s[1] for s in sizes)
    pairs = load_pairs(name, root=data_cfg.get("root"), split=data_cfg.get("split"), limit=8)
    return min(p.shape[0] for p in pairs), min(p.shape[1] for p in pairs)


def resolve_crop(cfg: TrainConfig) -> tuple[int, int]:
    """Training crop (h, w): ``quarter`` = half height x half width of the smallest image."""
    crop = parse_crop(cfg.crop)
    if crop == "quarter":
        h, w = _min_image_size(cfg.data)
        return max(h // 2, 1), max(w // 2, 1)
    return crop


def make_train_loader(cfg: TrainConfig, crop: tuple[int, int]):
    """The one place the trainer gets its data (a DataLoader of batch dicts)."""
    from .data import make_loader

    return make_loader(cfg.data, crop, cfg.batch_size, cfg.seed, split="train", num_workers=cfg.num_workers,
                       nda=cfg.loss_config().precompute_options(), progress=cfg.progress)


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class BatchStream:
    """Batches of a phase, epoch by epoch, each epoch reseeded from
    (seed, phase, epoch), so the stream can restart at any step."""

    def __init__(self, loader, seed: int, phase: int):
        self.loader, self.seed, self.phase = loader, seed, phase
        self.per_epoch = len(loader)
        if self.per_epoch == 0:
            raise ValueError("the training data give no full batch: lower batch_size or add pairs")

    def iterate(self, start: int):
        epoch, skip = divmod(start, self.per_epoch)
        while True:
            gen = getattr(self.loader, "generator", None)
            if gen is not None:
                gen.manual_seed(_seed_of(self.seed, self.phase, epoch))
            ds = getattr(self.loader, "dataset", None)
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(self.phase * 1_000_000 + epoch)
            for i, batch in enumerate(self.loader):
                if i < skip:
                    continue
                yield epoch, batch
            skip = 0
            epoch += 1


# ----------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict:
    """RNG states as tensors and plain values (a checkpoint loads with ``weights_only=True``)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"kind": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    npst = st["numpy"]
    if isinstance(npst, dict):            # format 2; format 1 stored numpy's own tuple
        key = npst["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        npst = (npst["kind"], key.astype(np.uint32), int(npst["pos"]), int(npst["has_gauss"]),
                float(npst["cached_gaussian"]))
    np.random.set_state(npst)
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _plain(x, where: str = "config"):
    """``x`` as plain dicts, lists, strings, numbers, booleans and None (numpy scalars and
    arrays, tuples and paths converted); anything else is a ValueError naming ``where``."""
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, dict):
        return {(k if type(k) in (str, int) else str(k)): _plain(v, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (str, os.PathLike)):
        return str(x) if isinstance(x, str) else os.fspath(x)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return _plain(x.tolist(), where)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _plain(dataclasses.asdict(x), where)
    raise ValueError(f"{where}: a {type(x).__name__} cannot be stored in a checkpoint (plain values only)")


def _config_dict(cfg: "TrainConfig") -> dict:
    """The config as stored in a checkpoint (plain values only)."""
    return _plain(cfg.to_dict(), "train_config")


def save_checkpoint(path, model: BSR, cfg: TrainConfig, step: int, phase: int, optimizer=None,
                    scaler=None) -> Path:
    """Write a checkpoint atomically (temp file + rename). It holds tensors and plain
    values only, so it loads with ``torch.load(weights_only=True)``."""
    ck = {
        "format": CHECKPOINT_FORMAT,
        "model_config": _plain(model.config, "model_config"),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": _config_dict(cfg),
        "step": int(step),
        "phase": int(phase),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": _rng_state(),
        "torch_version": str(torch.__version__),      # a plain str, not torch's TorchVersion object
    }
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(ck, tmp)
    return path


# ----------------------------------------------------------------------------- log

def read_log(path):
    """The training log as a pandas DataFrame (empty columns dropped)."""
    import pandas as pd

    df = pd.read_csv(path)
    return df.dropna(axis=1, how="all")


def _truncate_log(path: Path, step: int) -> None:
    """Keep the rows of steps < ``step`` (those after the checkpoint are redone)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r.get("step") not in (None, "") and int(r["step"]) < step]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_COLUMNS, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)


# ----------------------------------------------------------------------------- training

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def build_model_from_config(cfg: TrainConfig) -> BSR:
    torch.manual_seed(cfg.seed)
    return BSR(cfg.model_config())


def _make_optimizer(model: BSR, phase: int, pc: PhaseConfig):
    model.set_phase(phase)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=pc.lr, weight_decay=pc.weight_decay)


def _phase_steps(pc: PhaseConfig, per_epoch: int) -> int:
    if pc.steps is not None:
        return int(pc.steps)
    return int(math.ceil(float(pc.epochs) * per_epoch))


def _check_finite(terms: dict, phase: int, phase_step: int, step: int, last_ck: Path | None) -> None:
    for name, v in terms.items():
        if not math.isfinite(v):
            where = f"phase {phase}, step {phase_step} (global step {step})"
            saved = f"last good checkpoint: {last_ck}" if last_ck else "no checkpoint was written"
            raise NonFiniteLossError(
                f"loss term {name!r} is {v} at {where}; training stopped and no checkpoint was written "
                f"from this state ({saved})")


def train(cfg: TrainConfig | dict | str | os.PathLike, resume: bool | str | None = None) -> Path:
    """Train phase 1 then phase 2; return the path of the final checkpoint.

    Args:
        cfg: a :class:`TrainConfig`, a dict, or a YAML path.
        resume: None (default) resumes when ``out_dir/last.pt`` exists; True
            requires it; False starts over (removing the previous log and
            checkpoints of ``out_dir``); ``"if_same"`` resumes only a run of
            exactly this config (step budgets included; only ``out_dir``,
            ``progress``, ``device``, ``threads``, ``num_workers``,
            ``grad_checkpoint`` and the logging and checkpoint intervals may
            differ) and otherwise starts over. The workflow uses
            ``"if_same"``: a job re-run because its config changed must not
            continue the old run's weights. ``"same"`` (``bsr train``
            without ``--resume``/``--fresh``) resumes like ``"if_same"`` but,
            instead of starting over, stops with a ValueError naming the
            changed keys. With None or True a changed config resumes with a
            warning, unless the run has finished: its ``final.pt`` is then not
            a model of this config, and that is a ValueError too.
    """
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_yaml(cfg) if isinstance(cfg, (str, os.PathLike)) else TrainConfig.from_dict(cfg)
    cfg.validate()
    _check_data_root(cfg.data)
    out = Path(cfg.out_dir)
    last_path, final_path, log_path = out / "last.pt", out / "final.pt", out / "log.csv"

    if resume not in (None, True, False, "if_same", "same"):
        raise ValueError(f"resume must be None, True, False, 'if_same' or 'same'; got {resume!r}")
    if resume in ("if_same", "same"):
        why = _differs_from_checkpoint(cfg, last_path)
        if why and resume == "same":
            raise ValueError(f"{last_path}: {why}; use --fresh to start over (or --out for another folder)")
        if why:
            print(f"starting over in {out}: {last_path.name}: {why}")
        resume = False if why else None
    if resume is True and not last_path.is_file():
        raise FileNotFoundError(f"--resume given but {last_path} does not exist")
    if resume is False:
        for p in (last_path, final_path, out / "phase1.pt", log_path):
            if p.is_file():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp = (device.type == "cuda") if cfg.amp == "auto" else bool(cfg.amp)
    amp_dtype = getattr(torch, cfg.amp_dtype)
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _train(cfg, device, amp, amp_dtype, out, last_path, final_path, log_path)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


def _check_data_root(data: dict) -> None:
    """A real dataset needs a data root: ``data.root`` or $BSR_DATA (named as a training config names them)."""
    if data.get("name") == "synthetic":
        return
    root, origin = data.get("root"), "data.root"
    if root in (None, ""):
        root, origin = os.environ.get("BSR_DATA"), "the BSR_DATA environment variable"
        if not root:
            raise ValueError(f"dataset {data.get('name')!r} needs a data root: set data.root in the config "
                             "(or --set data.root=DIR) or the BSR_DATA environment variable to a folder holding "
                             "<dataset>/ir and <dataset>/vi")
    if not Path(str(root)).expanduser().is_dir():
        raise ValueError(f"data root {root} (from {origin}) is not a folder")


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


def _differs_from_checkpoint(cfg: "TrainConfig", last_path: Path) -> str | None:
    """Why the run in ``last_path`` is not a run of ``cfg`` (None: it is, or there is none)."""
    if not last_path.is_file():
        return None
    try:
        ck = read_checkpoint(last_path, map_location="cpu")
    except ValueError as e:   # refused, corrupt or foreign: never resumed
        return str(e).removeprefix(f"{last_path}: ")
    if not isinstance(ck.get("model_config"), dict) or not ck["model_config"]:
        return "the checkpoint holds no model config"
    old_model, new_model = complete_model_config(ck.get("model_config")), _plain(cfg.model_config())
    if _plain(old_model) != new_model:
        keys = _changed_keys(_plain(old_model) if isinstance(old_model, dict) else {}, new_model, set())
        return f"a run of another model config ({', '.join('model.' + k for k in keys) or 'model'} differ)"
    old, new = ck.get("train_config") or {}, _config_dict(cfg)
    changed = _changed_keys(old, new, _PURE_RUN_CONTROL)
    return f"a run of another config (changed: {_describe_changes(changed, old, new)})" if changed else None


def _train(cfg, device, amp, amp_dtype, out, last_path, final_path, log_path) -> Path:
    from .pdg import ProxyDataGenerator

    loss_cfg = cfg.loss_config()
    model = build_model_from_config(cfg).to(device)
    model.set_amp(amp, amp_dtype)
    model.set_grad_checkpoint(cfg.grad_checkpoint)
    pdg = ProxyDataGenerator(cfg.pdg_n) if loss_cfg.use_pdg else None
    objective = Objective(loss_cfg, pdg)

    crop = resolve_crop(cfg)
    loader = make_train_loader(cfg, crop)
    per_epoch = len(loader)
    n1, n2 = _phase_steps(cfg.phase1, per_epoch), _phase_steps(cfg.phase2, per_epoch)
    total_steps = n1 + n2

    start, phase = 0, 1 if n1 > 0 else 2
    optimizer = _make_optimizer(model, phase, cfg.phase1 if phase == 1 else cfg.phase2)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16 and device.type == "cuda")
    resumed = None
    if last_path.is_file():
        ck = _checkpoint_for_resume(last_path)
        if not isinstance(ck.get("model_config"), dict) or not ck["model_config"]:
            raise ValueError(f"{last_path}: the checkpoint holds no model config; use --fresh to start over "
                             "(or --out for another folder)")
        if _plain(complete_model_config(ck["model_config"])) != _plain(model.config):
            raise ValueError(f"{last_path} was written for another model config; use another out_dir or "
                             f"--fresh to start over")
        try:
            start, phase = int(ck["step"]), int(ck["phase"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{last_path}: the checkpoint has no valid step/phase; use --fresh to start "
                             "over") from None
        old_cfg, new_cfg = ck.get("train_config") or {}, _config_dict(cfg)
        changed = _changed_keys(old_cfg, new_cfg, _PURE_RUN_CONTROL)
        if changed and start >= total_steps and final_path.is_file():
            raise ValueError(f"{last_path}: the run finished (step {start}) with another config "
                             f"(changed: {_describe_changes(changed, old_cfg, new_cfg)}), so its final.pt is "
                             "not a model of this one; use --fresh to retrain (or --out for another folder)")
        changed = _changed_keys(old_cfg, new_cfg, _RUN_CONTROL)
        if changed:
            warnings.warn(f"resuming {last_path} with a changed config "
                          f"({_describe_changes(changed, old_cfg, new_cfg)})", stacklevel=2)
        load_state_checked(model, ck.get("model"), last_path)
        if phase == 2 and start < n1:
            raise ValueError(f"{last_path} is in phase 2 at step {start}, but phase 1 now runs to step {n1}; "
                             "use --fresh or another out_dir")
        if phase == 1 and start >= n1:        # phase 1 was shortened: go on with phase 2
            phase, ck["optimizer"] = 2, None
        optimizer = _make_optimizer(model, phase, cfg.phase1 if phase == 1 else cfg.phase2)
        try:
            if ck.get("optimizer") is not None:
                optimizer.load_state_dict(ck["optimizer"])
            if ck.get("scaler") is not None and scaler.is_enabled():
                scaler.load_state_dict(ck["scaler"])
            _set_rng_state(ck["rng"])
        except Exception as e:  # noqa: BLE001 - a damaged or edited checkpoint
            text = (str(e).strip().splitlines() or [""])[0]
            raise ValueError(f"{last_path}: its optimizer or RNG state cannot be restored ({type(e).__name__}: "
                             f"{text}); use --fresh to start over") from None
        resumed = start
        _truncate_log(log_path, start)
        if start >= total_steps and final_path.is_file():
            return final_path

    with open(out / "config.yaml", "w") as f:
        resolved = cfg.to_dict()
        resolved["resolved"] = {"model": model.config, "loss": dataclasses.asdict(loss_cfg), "crop": list(crop),
                                "steps": [n1, n2], "batches_per_epoch": per_epoch,
                                "parameters": model.parameter_counts(), "device": str(device), "amp": amp}
        yaml.safe_dump(resolved, f, sort_keys=False)

    new_log = not log_path.is_file()
    logf = open(log_path, "a", newline="")
    writer = csv.DictWriter(logf, fieldnames=LOG_COLUMNS, restval="", extrasaction="ignore")
    if new_log:
        writer.writeheader()
        logf.flush()

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=start, disable=not cfg.progress, desc="B-SR", dynamic_ncols=True,
               file=sys.stderr)
    if resumed is not None:
        bar.write(f"resuming from {last_path} at step {resumed}")
    pdg_gen = torch.Generator(device="cpu")
    last_saved = last_path if last_path.is_file() else None
    t0 = time.time()
    try:
        step = start
        while step < total_steps:
            phase = 1 if step < n1 else 2
            p_start = 0 if phase == 1 else n1
            p_end = n1 if phase == 1 else total_steps
            if phase == 2 and not all(p.requires_grad is False for p in model.unet.parameters()):
                optimizer = _make_optimizer(model, 2, cfg.phase2)   # phase switch
            model.train()
            stream = BatchStream(loader, cfg.seed, phase).iterate(step - p_start)
            for epoch, batch in stream:
                if step >= p_end:
                    break
                k = step - p_start
                ir = batch["ir"].to(device, non_blocking=True)
                vis = batch["vis"].to(device, non_blocking=True)
                if phase == 1:
                    pdg_gen.manual_seed(_seed_of(cfg.seed, 7, step))
                    outd = model.phase1(ir, vis, pdg, pdg_gen, bidirectional=loss_cfg.bidirectional,
                                        joint=loss_cfg.joint)
                    outd.update({k: v.to(device) for k, v in batch.items() if k.startswith("nda_")})
                    loss, terms = objective.phase1(outd, progress=k / max(n1, 1))
                else:
                    outd = model.phase2(ir, vis)
                    loss, terms = objective.phase2(outd)
                _check_finite(terms, phase, k, step, last_saved)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                if "flow_gt" in batch:
                    with torch.no_grad():
                        fg = batch["flow_gt"].to(device)
                        terms["epe"] = float((outd["phi_p"].detach() - fg).norm(dim=1).mean())
                if step % cfg.log_every == 0 or step == total_steps:
                    row = {"step": step - 1, "phase": phase, "phase_step": k, "epoch": epoch,
                           "lr": optimizer.param_groups[0]["lr"], "time_s": round(time.time() - t0, 3)}
                    row.update(terms)
                    writer.writerow(row)
                    logf.flush()
                bar.update(1)
                bar.set_postfix(phase=phase, loss=f"{terms['total']:.4f}", refresh=False)
                if phase == 1 and step == n1:
                    save_checkpoint(out / "phase1.pt", model, cfg, step, 1, optimizer, scaler)
                if step % cfg.ckpt_every == 0 or step == total_steps or step == n1:
                    # the phase recorded is that of the *next* step, so a resume rebuilds the right optimizer
                    next_phase = 1 if step < n1 else 2
                    save_checkpoint(last_path, model, cfg, step, next_phase,
                                    optimizer if next_phase == phase else None, scaler)
                    last_saved = last_path
    finally:
        bar.close()
        logf.close()
    import shutil

    with atomic_path(final_path, suffix=".pt") as tmp:
        shutil.copyfile(last_path, tmp)
    return final_path


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsr train", description="Train B-SR (phase 1, then phase 2).")
    ap.add_argument("--config", required=True, help="training config (YAML)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set phase1.steps=100 (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="resume from OUT/last.pt (required to exist), even with a changed config")
    g.add_argument("--fresh", action="store_true", help="start over, removing OUT's log and checkpoints")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.epilog = ("Without --resume or --fresh, a run in OUT is resumed only if it has the same config; "
                 "otherwise the command stops and names the changed keys.")
    args = ap.parse_args(argv)
    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("progress=false")
    cfg = TrainConfig.from_yaml(args.config, overrides)
    if args.out:
        cfg.out_dir = args.out       # as given (not parsed as YAML)
    resume = True if args.resume else (False if args.fresh else "same")
    try:
        path = train(cfg, resume=resume)
    except NonFiniteLossError as e:
        print(f"bsr train: {e}", file=sys.stderr)
        return 3
    print(path)
    return 0


if __name__ == "__main__":      # errors reported as by `bsr train`: one line, no traceback
    from .cli import main as _cli_main

    sys.exit(_cli_main(["train", *sys.argv[1:]]))
