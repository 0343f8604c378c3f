"""Training of the released registration network on real pairs (``config/pretrain/roadscene.yaml``).

The study's :mod:`bsr.training` follows the paper: one misalignment per image and
L_nda targets searched once per image. A model meant for anybody's pairs
needs what that cannot give cheaply: a fresh misalignment for every sample
(:mod:`bsr.datasets.misalign`), so that no constant offset pays. The objective is
self-supervised and search-free (:mod:`bsr.similarity`); the ground-truth
field is used only to score the held-out validation pairs.

Per step, for a batch of crops of aligned training pairs, each with its own
misalignment ``A``::

    phi_p, phi_n = UNet(mis, vis)
    loss = mind(warp(mis, phi_p), vis) + mind(warp(vis, phi_n), mis)
         + smooth * (diffusion(phi_p) + diffusion(phi_n))
         + inverse * |phi_p o phi_n|

Outputs in ``out_dir``: ``config.yaml``, ``log.csv`` (loss terms per step),
``val.csv`` (validation EPE every ``val_every`` steps), ``last.pt`` (resumed
after a kill: weights, optimizer, step and RNG state) and ``unet.pt`` (the
final U-Net, for :mod:`bsr.pretrained`). Checkpoints hold tensors and plain
types only, so they load with ``torch.load(weights_only=True)``.

Usage::

    python -m bsr.training.pretrain --config config/pretrain/roadscene.yaml [--set steps=100 ...]
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ..datasets import misalign
from ..datasets.readers import load_pairs
from ..io import atomic_path
from ..model import model_config
from ..networks import RegUNet
from ..similarity import diffusion, inside_mask, inverse_consistency, mind_loss
from ..warp import warp

__all__ = ["DEFAULTS", "resolve", "build_unet", "validation_set", "evaluate", "train", "main"]

DEFAULTS: dict = {
    "data": {"name": "roadscene", "root": None, "split": "train", "val_count": 16, "synthetic": None},
    "model": {"size": "paper", "unet": {}},
    "misalignment": {},                      # bsr.datasets.misalign.Family fields
    "validation": {"per_pair": 2, "seed": 1234, "misalignment": {}},
    "loss": {"scales": [1, 2, 4], "smooth": 0.05, "inverse": 0.05, "margin": 2},
    "crop": 160, "batch_size": 8, "steps": 3000, "lr": 1.0e-3, "lr_final": 1.0e-4,
    "weight_decay": 1.0e-4, "grad_clip": 10.0, "seed": 0, "threads": 2,
    "val_every": 200, "ckpt_every": 50, "out_dir": "runs/roadscene", "progress": True,
    "init": None,                            # start from the U-Net of another run (its last.pt or unet.pt)
}

LOG = ["step", "lr", "time_s", "total", "sim_p", "sim_n", "smooth", "inverse"]


def _merge_strict(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if k not in out:
            raise ValueError(f"unknown recipe key {where}{k!r}; known: {', '.join(out)}")
        free = k in ("unet", "misalignment") or out[k] is None
        if isinstance(out[k], dict) and not free:
            if not isinstance(v, dict):
                raise ValueError(f"recipe key {where}{k!r} must be a mapping")
            out[k] = _merge_strict(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve(cfg: dict | None) -> dict:
    """Defaults merged with ``cfg``; unknown keys refused by name."""
    if cfg is not None and not isinstance(cfg, dict):
        raise ValueError(f"a recipe must be a mapping; got {type(cfg).__name__}")
    out = _merge_strict(DEFAULTS, cfg or {})
    misalign.Family.from_dict(out["misalignment"])
    misalign.Family.from_dict(out["validation"]["misalignment"] or out["misalignment"])
    for k in ("crop", "batch_size", "steps", "val_every", "ckpt_every", "threads", "seed"):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k in ("steps", "threads", "seed") else 1):
            raise ValueError(f"{k} must be a whole number >= {0 if k in ('steps', 'threads', 'seed') else 1}; "
                             f"got {v!r}")
    for k in ("lr", "lr_final", "weight_decay", "grad_clip"):
        out[k] = float(out[k])
        if not math.isfinite(out[k]) or out[k] < 0:
            raise ValueError(f"{k} must be a finite number >= 0; got {out[k]!r}")
    return out


def build_unet(cfg: dict) -> tuple[RegUNet, dict]:
    """The U-Net of the model size ``cfg["model"]`` and its (unet) config."""
    unet_cfg = model_config(cfg["model"]["size"], unet=cfg["model"].get("unet") or {})["unet"]
    return RegUNet(**unet_cfg), unet_cfg


def _split(cfg: dict):
    d = cfg["data"]
    pairs = load_pairs(d["name"], root=d["root"], split=d["split"], synthetic=d["synthetic"])
    n_val = int(d["val_count"])
    if not 0 <= n_val < len(pairs):
        raise ValueError(f"data.val_count must be in [0, {len(pairs) - 1}]; got {n_val}")
    # the validation pairs: every k-th pair of the sorted split (spread over the sequence)
    idx = set(np.linspace(0, len(pairs) - 1, n_val).round().astype(int).tolist()) if n_val else set()
    train = [p for i, p in enumerate(pairs) if i not in idx]
    val = [p for i, p in enumerate(pairs) if i in idx]
    return train, val


def validation_set(val_pairs, cfg: dict) -> list[dict]:
    """Fixed misaligned validation pairs with ground truth (seeded)."""
    fam = misalign.Family.from_dict(cfg["validation"]["misalignment"] or cfg["misalignment"])
    rng = np.random.default_rng(int(cfg["validation"]["seed"]))
    out = []
    for p in val_pairs:
        ir = torch.from_numpy(p.ir)[None, None]
        h, w = p.ir.shape
        for _ in range(int(cfg["validation"]["per_pair"])):
            prm = misalign.draw(fam, h, w, rng)
            mis = misalign.misaligned_crop(ir, prm, (0, 0, h, w))
            out.append({"name": p.name, "kind": prm["kind"], "mis": mis,
                        "vis": torch.from_numpy(p.vis)[None, None], "gt": misalign.ground_truth(prm, h, w)})
    return out


@torch.no_grad()
def evaluate(unet: RegUNet, items: list[dict], margin: int = 8) -> dict:
    """Mean EPE (px, ``margin`` px border left out) over the items, also per kind and for identity."""
    unet.eval()
    per_kind: dict[str, list] = {}
    ident = []
    for it in items:
        phi = unet(it["mis"], it["vis"])[:, :2]
        sl = (slice(None), slice(None), slice(margin, -margin), slice(margin, -margin))
        epe = (phi - it["gt"])[sl].pow(2).sum(1).sqrt().mean().item()
        ident.append(it["gt"][sl].pow(2).sum(1).sqrt().mean().item())
        per_kind.setdefault(it["kind"], []).append(epe)
    unet.train()
    allv = [v for vs in per_kind.values() for v in vs]
    res = {"epe": float(np.mean(allv)) if allv else float("nan"), "identity": float(np.mean(ident)) if ident else float("nan")}
    res.update({f"epe_{k}": float(np.mean(v)) for k, v in sorted(per_kind.items())})
    return res


def _batch(train_pairs, fam, crop: int, batch: int, rng: np.random.Generator):
    mis, vis = [], []
    for _ in range(batch):
        p = train_pairs[int(rng.integers(len(train_pairs)))]
        h, w = p.ir.shape
        ch, cw = min(crop, h), min(crop, w)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        prm = misalign.draw(fam, h, w, rng)
        ir = torch.from_numpy(p.ir)[None, None]
        mis.append(misalign.misaligned_crop(ir, prm, (y0, x0, ch, cw)))
        vis.append(torch.from_numpy(np.ascontiguousarray(p.vis[y0:y0 + ch, x0:x0 + cw]))[None, None])
        if rng.uniform() < 0.5:        # horizontal flip of the pair (the field follows the content)
            mis[-1], vis[-1] = mis[-1].flip(-1), vis[-1].flip(-1)
    return torch.cat(mis), torch.cat(vis)


def _objective(unet, mis, vis, lc: dict) -> dict:
    out = unet(mis, vis)
    phi_p, phi_n = out[:, :2], out[:, 2:4]
    m_p = inside_mask(phi_p, lc["margin"])
    m_n = inside_mask(phi_n, lc["margin"])
    sim_p = mind_loss(warp(mis, phi_p), vis, m_p, scales=lc["scales"])
    sim_n = mind_loss(warp(vis, phi_n), mis, m_n, scales=lc["scales"])
    smooth = diffusion(phi_p) + diffusion(phi_n)
    inv = inverse_consistency(phi_p, phi_n, m_n)
    total = sim_p + sim_n + lc["smooth"] * smooth + lc["inverse"] * inv
    return {"total": total, "sim_p": sim_p, "sim_n": sim_n, "smooth": smooth, "inverse": inv}


def _lr(cfg: dict, step: int) -> float:
    """Cosine from ``lr`` to ``lr_final`` over the run, after a 100-step warm-up."""
    warm = min(100, max(cfg["steps"] // 10, 1))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    t = (step - warm) / max(cfg["steps"] - warm, 1)
    return cfg["lr_final"] + 0.5 * (cfg["lr"] - cfg["lr_final"]) * (1 + math.cos(math.pi * min(t, 1.0)))


def _save(path: Path, unet, opt, cfg, step, rng) -> None:
    ck = {"format": "bsr-pretrain/1", "step": step, "config_yaml": yaml.safe_dump(cfg),
          "unet": unet.state_dict(), "optimizer": opt.state_dict(),
          "rng_yaml": yaml.safe_dump(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def _restore(last: Path, unet, opt, rng: np.random.Generator, cfg: dict) -> int:
    """Load ``last.pt`` into the U-Net, optimiser and RNGs; refuse one written by another recipe. Returns its step."""
    ck = torch.load(last, map_location="cpu", weights_only=True)
    if ck.get("format") != "bsr-pretrain/1":
        raise ValueError(f"{last}: not a training checkpoint of bsr.training.pretrain; start over with --fresh")
    old = yaml.safe_load(ck["config_yaml"])
    changed = sorted(k for k in set(old) | set(cfg) if k not in ("out_dir", "progress", "threads")
                     and old.get(k) != cfg.get(k))
    if changed:
        raise ValueError(f"{last} was written with another config (changed: {', '.join(changed)}); "
                         f"use --fresh to start over")
    unet.load_state_dict(ck["unet"])
    opt.load_state_dict(ck["optimizer"])
    rng.bit_generator.state = yaml.safe_load(ck["rng_yaml"])
    torch.set_rng_state(ck["torch_rng"])
    return int(ck["step"])


def train(cfg: dict, resume: bool = True) -> Path:
    """Train (or resume) the U-Net; returns the path of ``unet.pt``."""
    cfg = resolve(cfg)
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    unet, unet_cfg = build_unet(cfg)
    unet = unet.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    rng = np.random.default_rng(cfg["seed"])
    if cfg["init"]:
        init = torch.load(cfg["init"], map_location="cpu", weights_only=True)
        if not isinstance(init, dict) or init.get("format") not in ("bsr-pretrain/1", "bsr-unet/1"):
            raise ValueError(f"init {cfg['init']}: not a checkpoint of bsr.training.pretrain")
        unet.load_state_dict(init["unet"])
    start = 0
    last = out / "last.pt"
    if resume and last.is_file():
        start = _restore(last, unet, opt, rng, cfg)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    train_pairs, val_pairs = _split(cfg)
    val_items = validation_set(val_pairs, cfg)
    fam = misalign.Family.from_dict(cfg["misalignment"])
    log_path, val_path = out / "log.csv", out / "val.csv"
    new_log = start == 0 or not log_path.is_file()
    logf = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(logf)
    if new_log:
        log.writerow(LOG)
    val_keys = None
    if start == 0 and val_path.exists():
        val_path.unlink()
    t0 = time.time()
    bar = tqdm(total=cfg["steps"], initial=start, disable=not cfg["progress"], desc="train", file=sys.stderr)
    unet.train()
    try:
        for step in range(start, cfg["steps"]):
            if step % cfg["val_every"] == 0 and val_items:
                res = evaluate(unet, val_items)
                new = not val_path.is_file()
                val_keys = val_keys or list(res)
                with open(val_path, "a", newline="") as f:
                    w = csv.writer(f)
                    if new:
                        w.writerow(["step"] + val_keys)
                    w.writerow([step] + [f"{res[k]:.4f}" for k in val_keys])
                bar.set_postfix(val_epe=f"{res['epe']:.2f}")
            lr = _lr(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            mis, vis = _batch(train_pairs, fam, cfg["crop"], cfg["batch_size"], rng)
            terms = _objective(unet, mis.contiguous(memory_format=torch.channels_last),
                               vis.contiguous(memory_format=torch.channels_last), cfg["loss"])
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
            res = evaluate(unet, val_items)
            with open(val_path, "a", newline="") as f:
                w = csv.writer(f)
                if not val_keys:
                    w.writerow(["step"] + list(res))
                w.writerow([cfg["steps"]] + [f"{res[k]:.4f}" for k in (val_keys or list(res))])
    finally:
        bar.close()
        logf.close()
    final = out / "unet.pt"
    with atomic_path(final) as tmp:
        torch.save({"format": "bsr-unet/1", "unet_config": unet_cfg, "unet": unet.state_dict(),
                    "config_yaml": yaml.safe_dump(cfg)}, tmp)
    return final


def run_cli(prog: str, description: str, recipe_hint: str, train_fn, argv: list[str] | None = None) -> int:
    """The command line of a trainer: ``--config``, ``--set KEY=VALUE`` overrides, ``--fresh``; one-line
    errors, exit 1 (130 when interrupted). Shared by :mod:`bsr.training.after_global`."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--config", required=True, help=f"YAML recipe ({recipe_hint})")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one value, e.g. --set steps=100 --set loss.smooth=0.1")
    ap.add_argument("--fresh", action="store_true", help="ignore last.pt and start over")
    a = ap.parse_args(argv)
    path = Path(a.config)
    if not path.is_file():
        print(f"{prog}: error: recipe {path} does not exist", file=sys.stderr)
        return 1
    cfg = yaml.safe_load(path.read_text()) or {}
    for item in a.set:
        key, _, val = item.partition("=")
        node = cfg
        *head, leaf = key.split(".")
        for k in head:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(val)
    try:
        print(train_fn(cfg, resume=not a.fresh))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (resume with the same command)", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("python -m bsr.training.pretrain", __doc__.split("\n")[0], "config/pretrain/roadscene.yaml",
                   train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
