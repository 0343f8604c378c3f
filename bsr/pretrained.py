"""Models that ship with the package: ``bsr.load_pretrained()``.

The weights live in ``bsr/weights/`` (package data). Each entry of
:data:`MODELS` names its file and the SHA-256 of its bytes; the checksum is
verified before the file is read, so a damaged or swapped file is refused
instead of loaded. ``docs/model_card.md`` describes each model: its data,
recipe, the command that retrains it, and its measured accuracy.

:func:`assemble` writes such a file from a U-Net trained by
:mod:`bsr.training.pretrain` and an auto-encoder from a :mod:`bsr.training` checkpoint.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import torch
import yaml

from .datasets.readers import file_sha256
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, write_torch
from .model import BSR
from .refine import Refiner

__all__ = ["MODELS", "DEFAULT", "load_pretrained", "weights_path", "verified_path", "sha256", "assemble"]

DEFAULT = "roadscene"

MODELS: dict[str, dict] = {
    "roadscene": {
        "file": "bsr_roadscene.pt",
        "sha256": "da3a6a27a961d1a3aeae92c26e02f2410ddee50a06b16a95384b0305aae63ca3",
        "about": "registration: the global ECC affine stage, then a per-pair MIND refinement (bsr.refine; the "
                 "local U-Net ships switched off: it measured worse on validation, docs/model_card.md); fusion: a "
                 "CPU-sized auto-encoder (12.8 k parameters) trained on aligned RoadScene train pairs",
    },
}


sha256 = file_sha256   # the SHA-256 of a file's bytes (bsr.datasets.readers.file_sha256)


def weights_path(name: str | None = None) -> Path:
    """The file of a shipped model (checked to exist)."""
    name = DEFAULT if name is None else name
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; shipped: {', '.join(MODELS)}")
    path = Path(str(resources.files("bsr").joinpath("weights", MODELS[name]["file"])))
    if not path.is_file():
        raise FileNotFoundError(f"the weights of pretrained model {name!r} are missing ({path}); "
                                f"reinstall the package")
    return path


def load_pretrained(name: str | None = None, map_location="cpu", refine=None) -> BSR:
    """The shipped model ``name`` (default :data:`DEFAULT`) as a :class:`bsr.model.BSR` in eval mode.

    ``model.register(ir, vis)`` returns ``(phi_p, phi_n)``; ``model.fuse(ir, vis)``
    returns ``(fused, ir_registered, phi_p)``; :func:`bsr.fuse.fuse_pair` takes it.
    ``refine``: ``None`` keeps the shipped setting (the ``roadscene`` model: the per-pair MIND
    refinement on, about 0.6 s per RoadScene pair on one thread; docs/model_card.md); ``False``
    switches it off (the global stage alone, about 0.1 s); ``True`` or a dict of
    :class:`bsr.refine.Refiner` settings sets it.
    """
    model = load_checkpoint(verified_path(name), map_location=map_location)
    if refine is not None:
        model.set_refine(refine)
    return model


def verified_path(name: str | None = None) -> Path:
    """:func:`weights_path`, after checking the file's SHA-256 against :data:`MODELS`."""
    path = weights_path(name)
    expected = MODELS[DEFAULT if name is None else name]["sha256"]
    got = sha256(path)
    if expected is None or got != expected:
        raise ValueError(f"{path}: checksum mismatch (sha256 {got}, expected {expected}); the file is damaged "
                         f"or was replaced; reinstall the package")
    return path


def assemble(unet_path, ae_checkpoint, out, global_stage: dict | None = None, local: bool = True,
             local_grid: int | None = None, refine=None) -> Path:
    """Write a shipped-model checkpoint: the U-Net of ``unet_path`` (``bsr.training.pretrain``'s or
    ``bsr.training.after_global``'s ``unet.pt`` or ``last.pt``, or a shipped model's file), the
    auto-encoder of ``ae_checkpoint`` (a :mod:`bsr.training` checkpoint, or a shipped model's file), the
    ``global_stage`` config, the ``local`` switch (model option ``local``) and ``local_grid`` (default: the
    one the U-Net was trained with) and ``refine`` (model option ``refine``: ``None``/``False``, ``True`` or a
    dict of :class:`bsr.refine.Refiner` settings)."""
    u = torch.load(unet_path, map_location="cpu", weights_only=True)
    if isinstance(u, dict) and u.get("format") == CHECKPOINT_FORMAT:   # a shipped model: its U-Net
        donor = load_checkpoint(unet_path)
        u = {"format": "bsr-unet/1", "unet": donor.unet.state_dict(), "unet_config": donor.config["unet"],
             "local_grid": donor.config.get("local_grid"), "config_yaml": u.get("recipe_yaml", "")}
    if not isinstance(u, dict) or u.get("format") not in ("bsr-unet/1", "bsr-pretrain/1"):
        raise ValueError(f"{unet_path}: not a U-Net file of bsr.training.pretrain")
    recipe = yaml.safe_load(u.get("config_yaml") or "{}") or {}
    if "unet_config" not in u:   # a training checkpoint (last.pt): the U-Net config follows from its recipe
        from .training.pretrain import build_unet, resolve

        u["unet_config"] = build_unet(resolve({k: v for k, v in recipe.items() if k != "stage"}))[1]
    if local_grid is None:
        local_grid = u.get("local_grid", (recipe.get("stage") or {}).get("grid"))
    ae_model = load_checkpoint(ae_checkpoint)
    cfg = copy.deepcopy(ae_model.config)
    cfg["unet"] = copy.deepcopy(u["unet_config"])
    cfg["global"] = copy.deepcopy(global_stage)
    cfg["local"] = bool(local)
    cfg["local_grid"] = local_grid
    refiner = Refiner.from_config(refine)
    cfg["refine"] = None if refiner is None else refiner.to_config()
    model = BSR(cfg)
    model.unet.load_state_dict(u["unet"])
    model.ae.load_state_dict(ae_model.ae.state_dict())
    ck = {"format": CHECKPOINT_FORMAT, "model_config": cfg,
          "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
          "recipe_yaml": u.get("config_yaml", "")}
    return write_torch(ck, out)
