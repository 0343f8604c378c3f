"""A learned whole-pair affine correction after the global stage, trained by MIND (experiments/NOTES.md, section 25).

``bsr.networks.affine_correction.AffineCorrection`` sees the whole pair after the global stage (ECC,
the released model's settings) and outputs one affine correction. Training, self-supervised:

* a pool of ``--pool-per-pair`` misalignments per pair of RoadScene's train split less its 16
  validation pairs (``bsr.training.after_global.build_pool``: the wide family of
  ``config/pretrain/roadscene_local.yaml``, the global stage's matrix fitted once per entry);
* per sample, the whole misaligned pair; the loss is the MIND loss of the whole pair
  (``bsr.similarity.warped_mind_loss``, scales 1, 2, 4, full size) under the global matrix followed
  by the correction, over the pixels whose field samples the misaligned IR's content. No ground truth
  enters the loss.

Validation: the sets of section 18 on the 16 validation pairs (``make_set(..., seed=0)``), mean EPE
(px, 10 px border left out) of the global stage alone and followed by the correction
(``--iterations`` passes of the same network), written to ``OUT/val.csv`` every ``--val-every``
steps. Resumes from ``OUT/last.pt``.

    BSR_DATA=../shared/datasets OMP_NUM_THREADS=1 .venv/bin/python experiments/probe_whole_pair_affine.py \\
        --out runs/wpa [--steps 1500] [--batch 4] [--iterations 1]
    ... probe_whole_pair_affine.py --out runs/wpa --fit-teacher      # then, with runs/wpa/pool.pt in place:
    ... probe_whole_pair_affine.py --out runs/wpa2 --teacher runs/wpa/teacher.pt --batch 8
    ... probe_whole_pair_affine.py --classical                       # the correction without learning
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from bsr.datasets import misalign
from bsr.datasets.benchsets import make_set
from bsr.global_stage import GlobalStage, affine_field, compose_affine, fit_affine
from bsr.metrics.registration import endpoint_error
from bsr.networks.affine_correction import AffineCorrection, read_correlation, reduced, weighted_affine_fit
from bsr.networks.correlation import mind_descriptor
from bsr.refine import Refiner
from bsr.similarity import inside_mask, mind_descriptors, warped_mind_loss
from bsr.training.after_global import build_pool
from bsr.warp import warp
from probe_global_stage import MARGIN, train_pairs, validation_pairs   # (same folder)

ROOT = Path(__file__).resolve().parents[1]
SCALES = (1, 2, 4)
VAL_SETS = ["shift5_right", "dilate10", "dilate30", "dilate50", "affine_elastic"]


def corrected(net, ir, vis, m_g, iterations: int) -> torch.Tensor:
    """The matrix of the global stage followed by ``iterations`` corrections (B, 2, 3)."""
    h, w = ir.shape[-2:]
    m = m_g
    for _ in range(iterations):
        phi = affine_field(m, h, w)
        valid = inside_mask(phi.detach(), 0.0)
        m = compose_affine(m, net(warp(ir, phi.detach()), vis, valid))
    return m


class Samples:
    """Whole misaligned training pairs from the pool (:meth:`build`), kept once built, with their MIND
    descriptors where ``descriptors``."""

    def __init__(self, pairs, pool, descriptors: bool = True):
        self.pairs, self.pool, self.cache, self.descriptors = pairs, pool, {}, descriptors

    def build(self, k: int) -> dict:
        e = self.pool[k]
        p = self.pairs[e["pair"]]
        h, w = p.ir.shape
        prm = {"matrix": e["matrix"].numpy(), "elastic": None if e["elastic"] is None else e["elastic"].numpy()}
        ir = torch.from_numpy(p.ir)[None, None]
        mis = misalign.misaligned_crop(ir, prm, (0, 0, h, w))
        content = inside_mask(misalign.sampling_field(prm, h, w), 0.0)
        vis = torch.from_numpy(p.vis)[None, None]
        with torch.no_grad():
            item = {"mis": mis, "vis": vis, "content": content, "m_g": e["global"][None].float()}
            if self.descriptors:
                item.update(d_mis=mind_descriptors(mis, SCALES), d_vis=mind_descriptors(vis, SCALES))
        return item

    def __call__(self, k: int) -> dict:
        if k not in self.cache:
            self.cache[k] = self.build(k)
        return self.cache[k]


def matrix_distance(a: torch.Tensor, b: torch.Tensor, h: int, w: int, n: int = 8) -> torch.Tensor:
    """Mean distance (px) between the positions that matrices ``a`` and ``b`` (1, 2, 3) give an n x n grid."""
    ys, xs = torch.linspace(0, h - 1, n), torch.linspace(0, w - 1, n)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    p = torch.stack((gx.flatten(), gy.flatten(), torch.ones(n * n)))
    return ((a - b) @ p).norm(dim=1).mean()


def loss_of(net, item, iterations: int, teacher=None, mind_weight: float = 1.0) -> torch.Tensor:
    """MIND loss of the whole pair (times ``mind_weight``) plus, with ``teacher`` (the affine part of the
    per-pair refinement's residual, a correction matrix (2, 3)), the distance of the correction to it."""
    h, w = item["mis"].shape[-2:]
    m = corrected(net, item["mis"], item["vis"], item["m_g"], iterations)
    total = m.new_zeros(())
    if mind_weight > 0:
        phi = affine_field(m, h, w)
        with torch.no_grad():
            mask = inside_mask(phi, 2.0) * (warp(item["content"], phi) > 0.999).float()
        total = total + mind_weight * warped_mind_loss(item["d_mis"], item["d_vis"], phi, mask, SCALES)
    if teacher is not None:
        total = total + matrix_distance(m, compose_affine(item["m_g"], teacher[None]), h, w)
    return total


def validation_items(pairs, stage) -> list[dict]:
    out = []
    for name in VAL_SETS:
        for it in make_set(pairs, name, seed=0):
            out.append({"set": name, "mis": it["mis"], "vis": it["vis"], "gt": it["gt"],
                        "m_g": stage.matrices(it["mis"], it["vis"]).float()})
    return out


@torch.no_grad()
def evaluate(net, items, iterations: int) -> dict:
    net.eval()
    per: dict[str, list] = {}
    for it in items:
        h, w = it["mis"].shape[-2:]
        e_g = endpoint_error(affine_field(it["m_g"], h, w), it["gt"], MARGIN)["EPE_mean"]
        m = corrected(net, it["mis"], it["vis"], it["m_g"], iterations)
        e = endpoint_error(affine_field(m, h, w), it["gt"], MARGIN)["EPE_mean"]
        per.setdefault(it["set"], []).append((e_g, e))
    net.train()
    res = {"epe": float(np.mean([e for v in per.values() for _, e in v]))}
    for k, v in per.items():
        res[f"global_{k}"] = float(np.mean([g for g, _ in v]))
        res[f"epe_{k}"] = float(np.mean([e for _, e in v]))
    return res


def classical_correction(ir_g, vis, valid, side: int, radius: int, beta: float, pool: int, weights: str):
    """The correction without learning: MIND descriptors (centred, unit length) of the reduced pair, average-pooled
    by ``pool``, their correlation read by a soft arg-max, and the same weighted fit (``weights``: ``uniform`` or
    ``entropy``, exp(-entropy) of the soft arg-max's distribution)."""
    def feat(x):
        d = F.avg_pool2d(mind_descriptor(reduced(x, side, pool)), pool)
        return F.normalize(d - d.mean(1, keepdim=True), dim=1)

    fa, fb = feat(ir_g), feat(vis)
    val = reduced(valid, side, pool, antialias=False)
    # an average-pooled cell k covers working pixels pool * k .. pool * k + pool - 1
    cost, disp, pos = read_correlation(fa, fb, radius, beta, ir_g.shape[-2:], val.shape[-2:], pool, (pool - 1) / 2)
    wt = (F.avg_pool2d(val, pool) > 0.999).float().flatten(1)
    if weights == "entropy":
        prob = torch.softmax(beta * cost, 1)
        wt = wt * torch.exp((prob * prob.clamp_min(1e-12).log()).sum(1)).flatten(1)
    return weighted_affine_fit(pos, disp, wt, ir_g.shape[-2:], 1e-3)


CLASSICAL = [(256, 3, 10.0, 2, "uniform"), (512, 3, 10.0, 2, "uniform"), (512, 3, 20.0, 2, "entropy"),
             (512, 4, 10.0, 1, "entropy"), (512, 2, 10.0, 4, "entropy")]


def run_classical(items) -> None:
    for side, radius, beta, pool, weights in CLASSICAL:
        res: dict[str, list] = {}
        for it in items:
            h, w = it["mis"].shape[-2:]
            phi = affine_field(it["m_g"], h, w)
            c = classical_correction(warp(it["mis"], phi), it["vis"], inside_mask(phi), side, radius, beta, pool,
                                     weights)
            res.setdefault(it["set"], []).append(
                endpoint_error(affine_field(compose_affine(it["m_g"], c), h, w), it["gt"], MARGIN)["EPE_mean"])
        print(f"side {side} radius {radius} beta {beta:g} pool {pool} {weights}:",
              " ".join(f"{k} {np.mean(v):.3f}" for k, v in res.items()), flush=True)


def fit_teacher(pairs, pool, path: Path) -> None:
    """The teacher of ``--teacher``: the least-squares affine part of the per-pair refinement's residual
    (``bsr.refine.Refiner()``, the shipped settings) after the global stage, one (2, 3) matrix per pool entry."""
    samples, ref, out = Samples(pairs, pool, descriptors=False), Refiner(), []
    for k in tqdm(range(len(pool)), desc="teacher", file=sys.stderr, mininterval=30):
        it = samples.build(k)
        h, w = it["mis"].shape[-2:]
        out.append(fit_affine(ref.residual(it["mis"], it["vis"], affine_field(it["m_g"], h, w)))[0].float())
    torch.save(torch.stack(out), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="run folder (required unless --classical)")
    ap.add_argument("--classical", action="store_true",
                    help="only score the correction without learning (classical_correction) on the validation sets")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-final", type=float, default=1e-4)
    ap.add_argument("--pool-per-pair", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--radius", type=int, default=3)
    ap.add_argument("--work-side", type=int, default=256)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-teacher", action="store_true",
                    help="only fit the teacher matrices to OUT's pool and write OUT/teacher.pt")
    ap.add_argument("--teacher", help="teacher matrices of the pool (one (2, 3) correction per entry): the affine "
                                      "part of the per-pair refinement's residual; adds the distance to them")
    ap.add_argument("--mind-weight", type=float, default=None, help="weight of the MIND loss (default 1, "
                                                                    "0 with --teacher)")
    a = ap.parse_args()
    teacher = None if a.teacher is None else torch.load(a.teacher, weights_only=True)
    mind_w = a.mind_weight if a.mind_weight is not None else (0.0 if teacher is not None else 1.0)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    local = yaml.safe_load((ROOT / "config/pretrain/roadscene_local.yaml").read_text())
    stage_cfg = local["stage"]["global"]
    if a.classical:
        run_classical(validation_items(validation_pairs(16), GlobalStage.from_config(stage_cfg)))
        return
    if not a.out:
        ap.error("--out is required")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = train_pairs()
    pool_path = out / "pool.pt"
    if pool_path.is_file():
        pool = torch.load(pool_path, weights_only=True)
    else:
        cfg = {"misalignment": local["misalignment"], "progress": True,
               "stage": {"global": stage_cfg, "teacher": None, "pool_per_pair": a.pool_per_pair}}
        pool = build_pool(pairs, cfg, np.random.default_rng(a.seed))
        torch.save(pool, pool_path)
    if a.fit_teacher:
        fit_teacher(pairs, pool, out / "teacher.pt")
        return
    samples = Samples(pairs, pool, descriptors=mind_w > 0)
    val_items = validation_items(validation_pairs(16), GlobalStage.from_config(stage_cfg))
    net = AffineCorrection(a.channels, a.radius, a.work_side)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    rng = np.random.default_rng(a.seed + 1)
    start = 0
    last = out / "last.pt"
    if last.is_file():
        ck = torch.load(last, weights_only=False)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state = ck["rng"]
        start = ck["step"]
    val_path, log_path = out / "val.csv", out / "log.csv"

    def validate(step):
        res = evaluate(net, val_items, a.iterations)
        new = not val_path.is_file()
        with open(val_path, "a", newline="") as f:
            wr = csv.writer(f)
            if new:
                wr.writerow(["step", *res])
            wr.writerow([step, *(f"{v:.4f}" for v in res.values())])
        print(step, " ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)

    if start == 0:
        validate(0)
    t0 = time.time()
    with open(log_path, "a", newline="") as logf:
        log = csv.writer(logf)
        for step in tqdm(range(start, a.steps), initial=start, total=a.steps, file=sys.stderr, mininterval=30):
            lr = a.lr_final + 0.5 * (a.lr - a.lr_final) * (1 + np.cos(np.pi * step / a.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            ks = rng.integers(len(pool), size=a.batch)
            loss = sum(loss_of(net, samples(int(k)), a.iterations, None if teacher is None else teacher[int(k)],
                               mind_w) for k in ks) / a.batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            log.writerow([step + 1, f"{lr:.3g}", f"{time.time() - t0:.1f}", f"{loss.item():.5f}",
                          f"{net.gain.item():.4f}"])
            if (step + 1) % 50 == 0 or step + 1 == a.steps:
                logf.flush()
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                            "step": step + 1, "config": net.config}, last)
            if (step + 1) % a.val_every == 0 or step + 1 == a.steps:
                validate(step + 1)
    torch.save({"net": net.state_dict(), "config": net.config}, out / "final.pt")


if __name__ == "__main__":
    main()
