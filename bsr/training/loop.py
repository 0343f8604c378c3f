"""The training loop of B-SR: phase 1 (registration + reconstruction), then phase 2 (fusion).

:func:`train` checks the config and the run folder (resume or start over),
then :func:`_train` runs, top to bottom: build the model, objective and data;
restore an interrupted run; write the resolved config and open the log; step
through both phases, logging every term and writing checkpoints as it goes;
copy the last checkpoint to ``final.pt``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..checkpoint import save_checkpoint
from ..device import resolve_device
from ..io import atomic_path
from ..model import BSR
from ..objective import Objective
from .config import PhaseConfig, TrainConfig, check_data_root, resolve_crop
from .resume import differs_from_checkpoint, restore_state, resume_point

__all__ = ["NonFiniteLossError", "train", "read_log", "LOG_COLUMNS", "BatchStream", "build_model_from_config",
           "make_train_loader"]

LOG_TERMS = ["total", "nda_di", "nda_an", "edge", "epr", "smooth", "rec", "dec", "ss_field", "ss_aligned",
             "ss_rec", "fusion_int", "fusion_grad", "fusion_qabf", "epe"]
LOG_COLUMNS = ["step", "phase", "phase_step", "epoch", "lr", "time_s"] + LOG_TERMS


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stopped."""


# ----------------------------------------------------------------------------- data

def make_train_loader(cfg: TrainConfig, crop: tuple[int, int], batch_size: int):
    """The one place the trainer gets its data (a DataLoader of batch dicts)."""
    from ..datasets.crops import make_loader

    return make_loader(cfg.data, crop, batch_size, cfg.seed, split="train", num_workers=cfg.num_workers,
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


def _open_log(path: Path):
    """``(file, csv writer)`` appending to the log; a new log gets its header first."""
    new_log = not path.is_file()
    logf = open(path, "a", newline="")
    writer = csv.DictWriter(logf, fieldnames=LOG_COLUMNS, restval="", extrasaction="ignore")
    if new_log:
        writer.writeheader()
        logf.flush()
    return logf, writer


# ----------------------------------------------------------------------------- steps

def build_model_from_config(cfg: TrainConfig) -> BSR:
    torch.manual_seed(cfg.seed)
    return BSR(cfg.model_config())


def _make_optimizer(model: BSR, phase: int, pc: PhaseConfig):
    model.set_phase(phase, train_encoder=phase == 2 and pc.train_encoder)
    params = [p for p in model.parameters() if p.requires_grad]
    if phase == 2 and pc.encoder_lr is not None:
        decoder = {id(p) for m in model.ae.decoder_modules() for p in m.parameters()}
        params = [{"params": [p for p in params if id(p) in decoder]},
                  {"params": [p for p in params if id(p) not in decoder], "lr": pc.encoder_lr}]
    return torch.optim.AdamW(params, lr=pc.lr, weight_decay=pc.weight_decay)


def _phase_steps(pc: PhaseConfig, per_epoch: int) -> int:
    if pc.steps is not None:
        return int(pc.steps)
    return int(math.ceil(float(pc.epochs) * per_epoch))


def _forward(model: BSR, objective: Objective, loss_cfg, pdg, pdg_gen, batch: dict, device, phase: int,
             progress: float):
    """One batch through the phase's forward pass and objective: ``(loss, terms, outputs)``.
    ``pdg_gen`` draws the PDG's random ops; ``progress`` is the fraction of phase 1 done."""
    ir = batch["ir"].to(device, non_blocking=True)
    vis = batch["vis"].to(device, non_blocking=True)
    if phase == 1:
        outd = model.phase1(ir, vis, pdg, pdg_gen, bidirectional=loss_cfg.bidirectional, joint=loss_cfg.joint)
        outd.update({k: v.to(device) for k, v in batch.items() if k.startswith("nda_")})
        loss, terms = objective.phase1(outd, progress=progress)
    else:
        outd = model.phase2(ir, vis)
        loss, terms = objective.phase2(outd)
    return loss, terms, outd


def _check_finite(terms: dict, phase: int, phase_step: int, step: int, last_ck: Path | None) -> None:
    for name, v in terms.items():
        if not math.isfinite(v):
            where = f"phase {phase}, step {phase_step} (global step {step})"
            saved = f"last good checkpoint: {last_ck}" if last_ck else "no checkpoint was written"
            raise NonFiniteLossError(
                f"loss term {name!r} is {v} at {where}; training stopped and no checkpoint was written "
                f"from this state ({saved})")


def _optimizer_step(loss, optimizer, scaler, grad_clip: float | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()


# ----------------------------------------------------------------------------- training

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
    check_data_root(cfg.data)
    out = Path(cfg.out_dir)
    last_path, final_path, log_path = out / "last.pt", out / "final.pt", out / "log.csv"

    if resume not in (None, True, False, "if_same", "same"):
        raise ValueError(f"resume must be None, True, False, 'if_same' or 'same'; got {resume!r}")
    if resume in ("if_same", "same"):
        why = differs_from_checkpoint(cfg, last_path)
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


def _train(cfg, device, amp, amp_dtype, out, last_path, final_path, log_path) -> Path:
    from tqdm import tqdm

    from ..pdg import ProxyDataGenerator

    # -- model, objective and data
    loss_cfg = cfg.loss_config()
    model = build_model_from_config(cfg).to(device)
    model.set_amp(amp, amp_dtype)
    model.set_grad_checkpoint(cfg.grad_checkpoint)
    pdg = ProxyDataGenerator(cfg.pdg_n) if loss_cfg.use_pdg else None
    objective = Objective(loss_cfg, pdg)

    # one loader per phase; phase 2 shares phase 1's unless it has a crop or batch size of its own
    crops = (resolve_crop(cfg, 1), resolve_crop(cfg, 2))
    batches = (cfg.batch_size_of(1), cfg.batch_size_of(2))
    loaders = [make_train_loader(cfg, crops[0], batches[0])]
    same = crops[1] == crops[0] and batches[1] == batches[0]
    loaders.append(loaders[0] if same else make_train_loader(cfg, crops[1], batches[1]))
    per_epoch = [len(ld) for ld in loaders]
    n1, n2 = _phase_steps(cfg.phase1, per_epoch[0]), _phase_steps(cfg.phase2, per_epoch[1])
    total_steps = n1 + n2

    # -- optimizer, and the state of an interrupted run
    start, phase = 0, 1 if n1 > 0 else 2
    optimizer = _make_optimizer(model, phase, cfg.phase1 if phase == 1 else cfg.phase2)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16 and device.type == "cuda")
    resumed = last_path.is_file()
    if resumed:
        ck, start, phase = resume_point(cfg, model, last_path, final_path, n1, total_steps)
        optimizer = _make_optimizer(model, phase, cfg.phase1 if phase == 1 else cfg.phase2)
        restore_state(ck, optimizer, scaler, last_path)
        _truncate_log(log_path, start)
        if start >= total_steps and final_path.is_file():
            return final_path

    # -- the resolved config, the log and the progress bar
    resolved = cfg.to_dict()
    resolved["resolved"] = {"model": model.config, "loss": dataclasses.asdict(loss_cfg), "crop": list(crops[0]),
                            "crop_phase2": list(crops[1]), "batch_size_phase2": batches[1],
                            "steps": [n1, n2], "batches_per_epoch": per_epoch[0],
                            "parameters": model.parameter_counts(), "device": str(device), "amp": amp}
    with open(out / "config.yaml", "w") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)
    logf, writer = _open_log(log_path)
    bar = tqdm(total=total_steps, initial=start, disable=not cfg.progress, desc="B-SR", dynamic_ncols=True,
               file=sys.stderr)
    if resumed:
        bar.write(f"resuming from {last_path} at step {start}")

    # -- both phases, step by step
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
            for epoch, batch in BatchStream(loaders[phase - 1], cfg.seed, phase).iterate(step - p_start):
                if step >= p_end:
                    break
                k = step - p_start
                if phase == 1:
                    pdg_gen.manual_seed(_seed_of(cfg.seed, 7, step))
                loss, terms, outd = _forward(model, objective, loss_cfg, pdg, pdg_gen, batch, device, phase,
                                             k / max(n1, 1))
                _check_finite(terms, phase, k, step, last_saved)
                _optimizer_step(loss, optimizer, scaler, cfg.grad_clip)
                step += 1
                if "flow_gt" in batch:
                    with torch.no_grad():
                        fg = batch["flow_gt"].to(device)
                        terms["epe"] = float((outd["phi_p"].detach() - fg).norm(dim=1).mean())

                # log, progress, checkpoints
                if step % cfg.log_every == 0 or step == total_steps:
                    row = {"step": step - 1, "phase": phase, "phase_step": k, "epoch": epoch,
                           "lr": optimizer.param_groups[0]["lr"], "time_s": round(time.time() - t0, 3)}
                    row.update(terms)
                    writer.writerow(row)
                    logf.flush()
                bar.update(1)
                bar.set_postfix(phase=phase, loss=f"{terms['total']:.4f}", refresh=False)
                if phase == 1 and step == n1:
                    save_checkpoint(out / "phase1.pt", model, cfg.to_dict(), step, 1, optimizer, scaler)
                if step % cfg.ckpt_every == 0 or step == total_steps or step == n1:
                    # the phase recorded is that of the *next* step, so a resume rebuilds the right optimizer
                    next_phase = 1 if step < n1 else 2
                    save_checkpoint(last_path, model, cfg.to_dict(), step, next_phase,
                                    optimizer if next_phase == phase else None, scaler)
                    last_saved = last_path
    finally:
        bar.close()
        logf.close()

    with atomic_path(final_path, suffix=".pt") as tmp:
        shutil.copyfile(last_path, tmp)
    return final_path
