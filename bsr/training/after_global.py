"""Training of the local stage after the global stage (``config/pretrain/roadscene_local.yaml``).

:mod:`bsr.training.pretrain` trains the U-Net on misaligned crops as they
are. In the released model the U-Net sees something else: the IR already
warped by the global stage's affine map (:mod:`bsr.global_stage`). This
trainer gives it exactly that, and the objective that the per-pair
refinement :mod:`bsr.refine` measured to gain (experiments/NOTES.md,
section 11), so that a network learns to do in one pass what the refinement
does in 60 optimiser steps:

* a pool of ``pool_per_pair`` misalignments per training pair, each with the
  global stage's matrix ``M`` fitted once to the whole misaligned pair (ECC,
  about 0.2 s; a per-sample ECC would double the step);
* per sample, a crop of the visible image and of the IR warped by ``M``;
* the U-Net's fields averaged onto a grid of ``grid`` px and upsampled
  bilinearly (model option ``local_grid``): the refinement's parametrisation;
* MIND compared only where the whole field ``compose(phi_g, r)`` samples
  inside the misaligned IR and where that IR holds content (not the border
  padding of the simulated misalignment): the whole-field mask;
* diffusion on the grid, as the refinement's ``smooth``; the paper's second
  direction and inverse consistency as in :mod:`bsr.training.pretrain`;
* optionally (``stage.teacher``, ``loss.distill``) distillation of the
  refinement itself: each pool entry also holds the residual that
  :class:`bsr.refine.Refiner` fits to the whole misaligned pair after the
  global stage (about 14 s per RoadScene pair on one thread), and the loss
  adds ``distill`` times the mean absolute difference (px) between the
  U-Net's forward field and that residual, on the crop. The teacher is
  self-supervised (MIND), so no ground truth enters the loss.

The ground truth is used only for the validation EPE, on sets of
:mod:`bsr.datasets.benchsets` drawn on the validation pairs held out of the
train split. Outputs as :mod:`bsr.training.pretrain` (``log.csv``,
``val.csv``, ``last.pt`` for resuming, ``unet.pt``), plus ``pool.pt``.

Usage::

    python -m bsr.training.after_global --config config/pretrain/roadscene_local.yaml [--set steps=100 ...]
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from ..datasets import misalign
from ..datasets.benchsets import make_set
from ..global_stage import GlobalStage, affine_field
from ..io import atomic_path
from ..refine import Refiner
from ..metrics.registration import endpoint_error
from ..similarity import diffusion, inverse_consistency, mind_loss
from ..warp import coarse_field, compose, identity_grid, warp
from .pretrain import DEFAULTS as _BASE, _lr, _merge_strict, _restore, _save, _split, build_unet, run_cli
from .pretrain import resolve as _resolve_base

__all__ = ["DEFAULTS", "resolve", "build_pool", "crop_size", "train", "main"]

DEFAULTS: dict = {**_BASE, "out_dir": "runs/roadscene_local",
                  "stage": {"global": {"method": "ecc", "max_side": 640}, "grid": 16, "pool_per_pair": 4,
                            "zero_head": True, "teacher": None,
                            "val_sets": ["shift5_right", "dilate30", "dilate50", "affine_elastic"]}}
DEFAULTS["loss"] = {**_BASE["loss"], "smooth": 0.1, "distill": 0.0}
LOG = ["step", "lr", "time_s", "total", "sim_p", "sim_n", "smooth", "inverse", "distill"]
MARGIN = 10   # px left out of the validation EPE, as the benchmark (benchmarks/released_model.py)


def resolve(cfg: dict | None) -> dict:
    """Defaults merged with ``cfg``; unknown keys refused by name."""
    cfg = dict(cfg or {})
    stage = _merge_strict(DEFAULTS["stage"], cfg.pop("stage", None) or {}, "stage.")
    base = _merge_strict({k: v for k, v in DEFAULTS.items() if k != "stage"}, cfg)
    distill = base["loss"].pop("distill")
    out = _resolve_base(base)
    if isinstance(distill, bool) or not isinstance(distill, (int, float)) or not 0 <= distill < float("inf"):
        raise ValueError(f"loss.distill must be a finite number >= 0; got {distill!r}")
    out["loss"]["distill"] = float(distill)
    if distill > 0 and not stage["teacher"]:
        raise ValueError("loss.distill > 0 needs a teacher: set stage.teacher (true, or bsr.refine.Refiner settings)")
    Refiner.from_config(stage["teacher"])
    grid = stage["grid"]
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"stage.grid must be a whole number of px >= 1; got {grid!r}")
    if isinstance(stage["pool_per_pair"], bool) or not isinstance(stage["pool_per_pair"], int) \
            or stage["pool_per_pair"] < 1:
        raise ValueError(f"stage.pool_per_pair must be a whole number >= 1; got {stage['pool_per_pair']!r}")
    GlobalStage.from_config(stage["global"])
    out["stage"] = stage
    return out


def _sample(image: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``image`` (1, C, H, W) at absolute pixel positions ``pos`` (1, 2, h, w), border padding."""
    h, w = image.shape[-2:]
    grid = torch.stack((pos[:, 0] * (2.0 / max(w - 1, 1)) - 1.0, pos[:, 1] * (2.0 / max(h - 1, 1)) - 1.0), -1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def _inside(pos: torch.Tensor, h: int, w: int, margin: float) -> torch.Tensor:
    ok = ((pos[:, 0] >= margin) & (pos[:, 0] <= w - 1 - margin)
          & (pos[:, 1] >= margin) & (pos[:, 1] <= h - 1 - margin))
    return ok[:, None].float()


def _apply(m: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Affine matrix ``m`` (2, 3) applied to positions ``pos`` (1, 2, h, w)."""
    m = m.to(pos.dtype)
    return torch.einsum("ij,bjhw->bihw", m[:, :2], pos) + m[:, 2].view(1, 2, 1, 1)


def build_pool(pairs, cfg: dict, rng: np.random.Generator) -> list[dict]:
    """``pool_per_pair`` misalignments per pair, each with the global stage's matrix on the whole pair."""
    fam = misalign.Family.from_dict(cfg["misalignment"])
    stage = GlobalStage.from_config(cfg["stage"]["global"])
    teacher = Refiner.from_config(cfg["stage"]["teacher"])
    pool = []
    total = len(pairs) * cfg["stage"]["pool_per_pair"]
    desc = "global stage and teacher on the pool" if teacher else "global stage on the pool"
    with tqdm(total=total, disable=not cfg["progress"], desc=desc, file=sys.stderr) as bar:
        for i, p in enumerate(pairs):
            h, w = p.ir.shape
            ir = torch.from_numpy(p.ir)[None, None]
            vis = torch.from_numpy(p.vis)[None, None]
            for _ in range(cfg["stage"]["pool_per_pair"]):
                prm = misalign.draw(fam, h, w, rng)
                mis = misalign.misaligned_crop(ir, prm, (0, 0, h, w))
                m = stage.matrices(mis, vis)
                entry = {"pair": i, "kind": prm["kind"], "matrix": torch.as_tensor(prm["matrix"]),
                         "elastic": None if prm["elastic"] is None else torch.as_tensor(prm["elastic"]),
                         "global": m[0]}
                if teacher:   # the refinement's residual on the whole pair (half precision: px to 1e-3)
                    entry["teacher"] = teacher.residual(mis, vis, affine_field(m, h, w))[0].half()
                pool.append(entry)
                bar.update(1)
    return pool


def crop_size(pairs, crop: int) -> int:
    """The square crop of a batch: ``crop``, or the smallest side among ``pairs`` where that is smaller
    (the pairs of a batch differ in size; their crops must not)."""
    return min([int(crop)] + [min(p.ir.shape) for p in pairs])


def _item(pair, entry: dict, crop: int, rng: np.random.Generator) -> dict:
    """One training crop: the visible crop, the IR after the global stage, what the loss samples from."""
    h, w = pair.ir.shape
    prm = {"matrix": entry["matrix"].numpy(), "elastic": None if entry["elastic"] is None
           else entry["elastic"].numpy()}
    ir = torch.from_numpy(pair.ir)[None, None]
    mis = misalign.misaligned_crop(ir, prm, (0, 0, h, w))
    # where the simulated misaligned IR holds content (its misalignment sampled inside the IR)
    content = _inside(identity_grid(h, w) + misalign.sampling_field(prm, h, w), h, w, 0.0)
    ch, cw = min(crop, h), min(crop, w)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    p = identity_grid(ch, cw)
    p[:, 0] += x0
    p[:, 1] += y0
    q = _apply(entry["global"], p)
    src = torch.cat((mis, content), 1)
    g = _sample(src, q)
    teacher = None if "teacher" not in entry else entry["teacher"][None, :, y0:y0 + ch, x0:x0 + cw].float()
    return {"src": src, "global": entry["global"], "p": p, "mis_g": g[:, :1], "teacher": teacher,
            "valid_g": (g[:, 1:] > 0.999).float() * _inside(q, h, w, 0.0),
            "vis": torch.from_numpy(np.ascontiguousarray(pair.vis[y0:y0 + ch, x0:x0 + cw]))[None, None]}


def _objective(unet, items: list[dict], grid: int, lc: dict) -> dict:
    mis_g = torch.cat([it["mis_g"] for it in items])
    vis = torch.cat([it["vis"] for it in items])
    out = unet(mis_g.contiguous(memory_format=torch.channels_last), vis.contiguous(memory_format=torch.channels_last))
    out = out.float().contiguous()
    (phi_p, g_p), (phi_n, g_n) = coarse_field(out[:, :2], grid, coarse=True), coarse_field(out[:, 2:4], grid, coarse=True)
    warped, masks = [], []
    for i, it in enumerate(items):        # the whole field, from the misaligned IR (pairs differ in size)
        h, w = it["src"].shape[-2:]
        pos = _apply(it["global"], it["p"] + phi_p[i:i + 1])
        s = _sample(it["src"], pos)
        warped.append(s[:, :1])
        masks.append((s[:, 1:] > 0.999).float() * _inside(pos, h, w, lc["margin"]))
    warped, m_p = torch.cat(warped), torch.cat(masks)
    ch, cw = vis.shape[-2:]
    pos_n = identity_grid(ch, cw) + phi_n
    m_n = _inside(pos_n, ch, cw, lc["margin"]) * torch.cat([it["valid_g"] for it in items])
    sim_p = mind_loss(warped, vis, m_p, scales=lc["scales"])
    sim_n = mind_loss(warp(vis, phi_n), mis_g, m_n, scales=lc["scales"])
    smooth = diffusion(g_p) + diffusion(g_n)
    inv = inverse_consistency(phi_p, phi_n, m_n)
    total = sim_p + sim_n + lc["smooth"] * smooth + lc["inverse"] * inv
    dist = torch.zeros((), dtype=total.dtype)
    if lc["distill"] > 0:   # mean |forward field - teacher residual| (px) where the whole field samples content
        target = torch.cat([it["teacher"] for it in items])
        dist = ((phi_p - target).abs().sum(1, keepdim=True) * m_p).sum() / m_p.sum().clamp_min(1.0) / 2
        total = total + lc["distill"] * dist
    return {"total": total, "sim_p": sim_p, "sim_n": sim_n, "smooth": smooth, "inverse": inv, "distill": dist}


def validation_items(val_pairs, cfg: dict) -> list[dict]:
    """The sets ``stage.val_sets`` on the validation pairs, each with the global stage's field."""
    stage = GlobalStage.from_config(cfg["stage"]["global"])
    out = []
    for name in cfg["stage"]["val_sets"]:
        for it in make_set(val_pairs, name, seed=0):
            h, w = it["mis"].shape[-2:]
            phi_g = affine_field(stage.matrices(it["mis"], it["vis"]), h, w)
            out.append({"set": name, "mis_g": warp(it["mis"], phi_g), "vis": it["vis"], "phi_g": phi_g,
                        "gt": it["gt"]})
    return out


@torch.no_grad()
def evaluate(unet, items: list[dict], grid: int) -> dict:
    """Mean EPE (px) of the global stage alone and followed by the U-Net, per set."""
    unet.eval()
    per: dict[str, list] = {}
    for it in items:
        loc = coarse_field(unet(it["mis_g"], it["vis"]).float()[:, :2], grid)
        e_g = endpoint_error(it["phi_g"], it["gt"], MARGIN)["EPE_mean"]
        e = endpoint_error(compose(it["phi_g"], loc), it["gt"], MARGIN)["EPE_mean"]
        per.setdefault(it["set"], []).append((e_g, e))
    unet.train()
    res = {"epe": float(np.mean([e for v in per.values() for _, e in v])),
           "global": float(np.mean([g for v in per.values() for g, _ in v]))}
    for k, v in per.items():
        res[f"epe_{k}"] = float(np.mean([e for _, e in v]))
        res[f"global_{k}"] = float(np.mean([g for g, _ in v]))
    return res


def _init_unet(cfg: dict):
    unet, unet_cfg = build_unet(cfg)
    if cfg["init"] == "pretrained":     # the U-Net inside the shipped model
        from ..pretrained import load_pretrained

        shipped = load_pretrained()
        unet_cfg = shipped.config["unet"]
        unet = type(shipped.unet)(**unet_cfg)
        unet.load_state_dict(shipped.unet.state_dict())
    elif cfg["init"]:
        init = torch.load(cfg["init"], map_location="cpu", weights_only=True)
        if not isinstance(init, dict) or init.get("format") not in ("bsr-pretrain/1", "bsr-unet/1"):
            raise ValueError(f"init {cfg['init']}: not a checkpoint of bsr.training.pretrain")
        unet.load_state_dict(init["unet"])
    if cfg["stage"]["zero_head"]:       # start at the global stage alone
        torch.nn.init.zeros_(unet.head.weight)
        torch.nn.init.zeros_(unet.head.bias)
    return unet, unet_cfg


def train(cfg: dict, resume: bool = True) -> Path:
    """Train (or resume) the local stage; returns the path of ``unet.pt``."""
    cfg = resolve(cfg)
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    unet, unet_cfg = _init_unet(cfg)
    unet = unet.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    rng = np.random.default_rng(cfg["seed"])
    train_pairs, val_pairs = _split(cfg)
    pool_path = out / "pool.pt"
    start, last = 0, out / "last.pt"
    if resume and last.is_file() and pool_path.is_file():
        start = _restore(last, unet, opt, rng, cfg)
        pool = torch.load(pool_path, map_location="cpu", weights_only=True)
    else:
        pool = build_pool(train_pairs, cfg, rng)
        with atomic_path(pool_path) as tmp:
            torch.save(pool, tmp)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    val_items = validation_items(val_pairs, cfg)
    grid = cfg["stage"]["grid"]
    crop = crop_size(train_pairs, cfg["crop"])
    log_path, val_path = out / "log.csv", out / "val.csv"
    new_log = start == 0 or not log_path.is_file()
    if start == 0 and val_path.exists():
        val_path.unlink()
    t0 = time.time()
    bar = tqdm(total=cfg["steps"], initial=start, disable=not cfg["progress"], desc="train", file=sys.stderr)

    def validate(step: int) -> None:
        res = evaluate(unet, val_items, grid)
        new = not val_path.is_file()
        with open(val_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", *res])
            w.writerow([step, *(f"{v:.4f}" for v in res.values())])
        bar.set_postfix(val_epe=f"{res['epe']:.3f}")

    unet.train()
    with open(log_path, "w" if new_log else "a", newline="") as logf:
        log = csv.writer(logf)
        if new_log:
            log.writerow(LOG)
        try:
            for step in range(start, cfg["steps"]):
                if step % cfg["val_every"] == 0 and val_items:
                    validate(step)
                lr = _lr(cfg, step)
                for g in opt.param_groups:
                    g["lr"] = lr
                items = []
                for _ in range(cfg["batch_size"]):
                    entry = pool[int(rng.integers(len(pool)))]
                    items.append(_item(train_pairs[entry["pair"]], entry, crop, rng))
                terms = _objective(unet, items, grid, cfg["loss"])
                if not torch.isfinite(terms["total"]):
                    raise RuntimeError(f"loss became non-finite at step {step}")
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg["grad_clip"])
                opt.step()
                log.writerow([step + 1, f"{lr:.3g}", f"{time.time() - t0:.1f}"]
                             + [f"{terms[k].item():.5f}" for k in LOG[3:]])
                bar.update(1)
                if (step + 1) % cfg["ckpt_every"] == 0 or step + 1 == cfg["steps"]:
                    logf.flush()
                    _save(last, unet, opt, cfg, step + 1, rng)
            if val_items:
                validate(cfg["steps"])
        finally:
            bar.close()
    final = out / "unet.pt"
    with atomic_path(final) as tmp:
        torch.save({"format": "bsr-unet/1", "unet_config": unet_cfg, "unet": unet.state_dict(),
                    "local_grid": grid, "config_yaml": yaml.safe_dump(cfg)}, tmp)
    return final


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m bsr.training.after_global", __doc__.split("\n")[0],
                   "config/pretrain/roadscene_local.yaml", train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
