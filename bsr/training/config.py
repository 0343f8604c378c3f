"""Training configs: the dataclasses, the one way a config is changed, and the crop size.

A training config is a YAML mapping of :class:`TrainConfig` fields (nested
mappings for ``model``, ``loss``, ``phase1``, ``phase2``, ``data``); an
unknown key fails with a ValueError naming it. Every change to a config goes
through :func:`with_overrides` (``--set key=value`` on the command line, the
parameters of notebook 02) before :meth:`TrainConfig.from_dict` checks it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import deep_merge
from ..model import SIZES, model_config
from ..objective import VARIANTS, LossConfig, variant_config

__all__ = ["ModelSpec", "PhaseConfig", "TrainConfig", "DEFAULT_DATA", "apply_override", "with_overrides",
           "parse_crop", "resolve_crop", "check_data_root"]

DEFAULT_DATA = {"name": "synthetic", "synthetic": {"n": 16, "size": [128, 128], "seed": 0},
                "misalignment": {"kind": "shift", "level": 5}}


@dataclass
class ModelSpec:
    """``size`` names a preset of :data:`bsr.model.SIZES`; ``unet``/``ae``
    override single values of it; ``fusion_rule`` ("sum" | "mean" | "absmax") too."""

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
    """Length of a phase (``steps``, else ``epochs`` x batches per epoch) and its optimizer.

    ``crop`` and ``batch_size``, when given, replace the run's own for this
    phase (``null``: the run's). ``train_encoder`` (phase 2 only; not the
    paper's, which freezes the encoder there): the auto-encoder's encoder
    trains in phase 2 beside the decoder, at ``encoder_lr`` (``null``: ``lr``).
    """

    steps: int | None = None
    epochs: float | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    crop: Any = None
    batch_size: int | None = None
    train_encoder: bool = False
    encoder_lr: float | None = None

    def __post_init__(self):
        # YAML 1.1 reads "3e-3" (no dot) as a string: take such strings as numbers, refuse the rest
        for name in ("steps", "epochs", "lr", "weight_decay", "encoder_lr"):
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
        if self.crop is not None:
            parse_crop(self.crop)
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or not isinstance(self.batch_size, numbers.Integral)
                                            or self.batch_size < 1):
            raise ValueError(f"phase batch_size must be a whole number >= 1 or null; got {self.batch_size!r}")
        if not isinstance(self.train_encoder, bool):
            raise ValueError(f"phase train_encoder must be true or false; got {self.train_encoder!r}")
        if self.lr is None or self.lr <= 0 or self.weight_decay is None or self.weight_decay < 0:
            raise ValueError(f"phase lr must be > 0 and weight_decay >= 0; got lr={self.lr!r}, "
                             f"weight_decay={self.weight_decay!r}")
        if self.encoder_lr is not None and (self.encoder_lr <= 0 or not self.train_encoder):
            raise ValueError(f"phase encoder_lr must be > 0 and needs train_encoder: true; "
                             f"got encoder_lr={self.encoder_lr!r}, train_encoder={self.train_encoder!r}")


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
        return cls.from_dict(with_overrides(d, overrides))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def crop_of(self, phase: int):
        """The crop setting of phase 1 or 2: its own ``crop``, else the run's."""
        own = getattr(self, f"phase{phase}").crop
        return self.crop if own is None else own

    def batch_size_of(self, phase: int) -> int:
        """The batch size of phase 1 or 2: its own ``batch_size``, else the run's."""
        return getattr(self, f"phase{phase}").batch_size or self.batch_size

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
        if self.phase1.train_encoder:
            raise ValueError("phase1.train_encoder applies to phase 2 only (phase 1 trains everything)")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        if self.amp not in ("auto", True, False):
            raise ValueError(f"amp must be auto, true or false; got {self.amp!r}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be bfloat16 or float16; got {self.amp_dtype!r}")
        if self.log_every < 1 or self.ckpt_every < 1:
            raise ValueError("log_every and ckpt_every must be >= 1")
        crop = parse_crop(self.crop_of(1))   # the PDG runs in phase 1
        if (crop != "quarter" and self.pdg_n >= 2 and self.loss_config().use_pdg
                and (crop[0] % self.pdg_n or crop[1] % self.pdg_n)):
            raise ValueError(f"crop {crop[0]}x{crop[1]} is not divisible by the PDG grid N = {self.pdg_n} "
                             f"(pdg_n): choose a crop divisible by {self.pdg_n}")
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


def with_overrides(base: dict, overrides: dict | list[str] | None = None) -> dict:
    """A copy of the config mapping ``base`` with ``overrides`` applied.

    ``overrides`` maps dotted keys (``"phase1.lr"``) to values, or is a list of
    ``key=value`` strings (``--set``; each value read as YAML). A value replaces
    what is at its key, a mapping included (``{"data": {...}}`` replaces the
    whole data mapping, ``{"data.root": ...}`` one key of it); mappings on the
    way that are missing are created.
    """
    d = copy.deepcopy(base)
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            _set_key(d, key, value, f"override {key}")
    else:
        for item in overrides or []:
            apply_override(d, item)
    return d


def apply_override(d: dict, item: str) -> None:
    """Apply one ``key.path=value`` override (value parsed as YAML) to a dict."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value; got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ValueError(f"--set {key}: the value {raw!r} is not valid YAML ({' '.join(str(e).split())})") from None
    _set_key(d, key, value, f"--set {key}")


def _set_key(d: dict, key: str, value, what: str) -> None:
    """``d[a][b][c] = value`` for the dotted key ``a.b.c`` (``what`` names the change in errors)."""
    parts = key.strip().split(".")
    cur = d
    for p in parts[:-1]:
        if cur.get(p) is None:
            cur[p] = {}
        if not isinstance(cur[p], dict):
            raise ValueError(f"{what}: {p!r} is not a mapping")
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


# ----------------------------------------------------------------------------- crop size and data root

def _min_image_size(data_cfg: dict) -> tuple[int, int]:
    """Smallest (H, W) over the dataset's pairs (image headers only where possible)."""
    from ..datasets.readers import load_pairs

    name = data_cfg["name"]
    if name == "synthetic":
        size = (data_cfg.get("synthetic") or {}).get("size", [256, 256])
        return int(size[0]), int(size[1])
    from PIL import Image

    from ..datasets.readers import dataset_dir, find_pairs, read_split

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


def resolve_crop(cfg: TrainConfig, phase: int | None = None) -> tuple[int, int]:
    """Training crop (h, w) of the run, or of ``phase`` (1 or 2; its own ``crop``
    where given): ``quarter`` = half height x half width of the smallest image,
    each side rounded down to a multiple of the PDG grid N when the PDG branch is on
    (its N x N patches must tile the crop; RoadScene's smallest quarter is 89 x 175)."""
    crop = parse_crop(cfg.crop_of(phase) if phase in (1, 2) else cfg.crop)
    if crop == "quarter":
        h, w = _min_image_size(cfg.data)
        g = cfg.pdg_n if cfg.pdg_n >= 2 and cfg.loss_config().use_pdg else 1
        return max(h // 2 // g * g, g), max(w // 2 // g * g, g)
    return crop


def check_data_root(data: dict) -> None:
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
