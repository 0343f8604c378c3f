"""The local stage trained after the global stage (bsr.training.after_global), its grid field and model option."""

import csv

import numpy as np
import pytest
import torch

from bsr.datasets import misalign
from bsr.datasets.readers import Pair
from bsr.global_stage import invert_affine
from bsr.model import BSR, model_config
from bsr.training import after_global
from bsr.warp import coarse_field

TINY = {
    "data": {"name": "synthetic", "synthetic": {"n": 6, "size": [72, 88], "seed": 0}, "val_count": 2},
    "model": {"size": "quick"},
    "init": None,
    "stage": {"pool_per_pair": 1, "grid": 8, "val_sets": ["shift5_right"]},
    "crop": 48, "batch_size": 2, "steps": 4, "val_every": 2, "ckpt_every": 2, "threads": 1, "progress": False,
}


def _cfg(tmp_path, **over):
    return {**TINY, "out_dir": str(tmp_path / "run"), **over}


# ---------------------------------------------------------------- the grid field
def test_coarse_field_keeps_a_constant_and_averages_cells():
    const = torch.tensor([1.5, -2.0]).view(1, 2, 1, 1).expand(1, 2, 40, 56).contiguous()
    full, g = coarse_field(const, 8, coarse=True)
    assert g.shape == (1, 2, 5, 7) and torch.allclose(full, const)
    noise = torch.randn(1, 2, 40, 56)
    _, g = coarse_field(noise, 8, coarse=True)
    assert torch.allclose(g[0, :, 1, 2], noise[0, :, 8:16, 16:24].mean((1, 2)), atol=1e-6)
    assert coarse_field(noise, 1) is noise


def test_local_grid_option_smooths_the_unet_fields():
    torch.manual_seed(0)
    raw = BSR(model_config("quick"))
    torch.nn.init.normal_(raw.unet.head.weight, 0.0, 0.1)
    grid = BSR(model_config("quick", local_grid=8))
    grid.unet.load_state_dict(raw.unet.state_dict())
    ir, vis = torch.rand(1, 1, 48, 64), torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        p_raw, n_raw = raw.register_local(ir, vis)
        p_grid, n_grid = grid.register_local(ir, vis)
    assert torch.allclose(p_grid, coarse_field(p_raw, 8), atol=1e-5)
    assert torch.allclose(n_grid, coarse_field(n_raw, 8), atol=1e-5)
    assert not torch.allclose(p_grid, p_raw, atol=1e-3)
    with pytest.raises(ValueError, match="local_grid"):
        BSR(model_config("quick", local_grid=0))


# ---------------------------------------------------------------- the objective
def _pair(seed=0, h=64, w=80):
    rng = np.random.default_rng(seed)
    img = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.random((1, 1, h + 6, w + 6))).float(), 7, 1)[0, 0]
    return Pair(name="p", ir=img.numpy().copy(), vis=img.numpy().copy())


def test_the_exact_global_map_makes_a_monomodal_pair_agree():
    """With the IR equal to the visible image, the misalignment's inverse as the global map and a zero local
    field, the whole field lands on the visible image: the MIND term is far below that of the identity map."""
    pair = _pair()
    h, w = pair.ir.shape
    fam = misalign.Family(weights=(0, 0, 1, 0), max_rotation_deg=3, max_translation=6, max_elastic=0)
    prm = misalign.draw(fam, h, w, np.random.default_rng(1))
    exact = invert_affine(torch.as_tensor(prm["matrix"])[None])[0]
    unet, _ = after_global._init_unet(after_global.resolve({"model": {"size": "quick"}, "init": None}))
    lc = after_global.resolve({})["loss"]
    sims = {}
    for name, m in (("exact", exact), ("identity", torch.eye(2, 3, dtype=torch.float64))):
        entry = {"matrix": torch.as_tensor(prm["matrix"]), "elastic": None, "global": m}
        item = after_global._item(pair, entry, 48, np.random.default_rng(2))
        with torch.no_grad():
            sims[name] = after_global._objective(unet, [item], 8, lc)["sim_p"].item()
    assert sims["exact"] < 0.25 * sims["identity"]


def test_the_mask_leaves_out_what_the_global_map_samples_outside():
    pair = _pair()
    shift = torch.tensor([[1.0, 0, 30.0], [0, 1.0, 0]], dtype=torch.float64)   # samples 30 px to the right
    entry = {"matrix": torch.as_tensor(np.eye(2, 3)), "elastic": None, "global": shift}
    item = after_global._item(pair, entry, 80, np.random.default_rng(0))
    valid = item["valid_g"][0, 0]
    assert valid[:, :40].min() == 1 and valid[:, -20:].max() == 0


def test_the_crop_fits_the_smallest_pair():
    pairs = [_pair(h=64, w=80), _pair(h=48, w=90)]
    assert after_global.crop_size(pairs, 256) == 48 and after_global.crop_size(pairs, 32) == 32


# ---------------------------------------------------------------- training
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("after_global")
    return base, after_global.train(_cfg(base))


def test_tiny_run_starts_at_the_global_stage_and_writes_its_files(full_run):
    base, out = full_run
    run = base / "run"
    assert out == run / "unet.pt"
    assert [int(r["step"]) for r in csv.DictReader(open(run / "log.csv"))] == [1, 2, 3, 4]
    val = list(csv.DictReader(open(run / "val.csv")))
    assert [int(r["step"]) for r in val] == [0, 2, 4]
    # the zeroed head: at step 0 the model is the global stage alone
    assert float(val[0]["epe"]) == pytest.approx(float(val[0]["global"]), abs=1e-4)
    u = torch.load(out, weights_only=True)
    assert u["local_grid"] == 8
    assert len(torch.load(run / "pool.pt", weights_only=True)) == 4


def test_resume_after_a_kill_gives_the_same_weights(tmp_path, full_run, monkeypatch):
    _, full = full_run
    part = _cfg(tmp_path)
    calls = {"n": 0}
    real = after_global._objective

    def killed_in_step_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(after_global, "_objective", killed_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        after_global.train(part)
    monkeypatch.setattr(after_global, "_objective", real)
    resumed = after_global.train(part)
    a = torch.load(full, weights_only=True)["unet"]
    b = torch.load(resumed, weights_only=True)["unet"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_recipe_is_refused(full_run):
    base, _ = full_run
    with pytest.raises(ValueError, match="changed: stage.*--fresh"):
        after_global.train(_cfg(base, stage={**TINY["stage"], "grid": 4}))


@pytest.mark.parametrize("bad", [{"stage": {"nosuch": 1}}, {"stage": {"grid": 0}}, {"stage": {"pool_per_pair": 0}},
                                 {"stage": {"global": {"method": "sift"}}}, {"nosuch": 1},
                                 {"loss": {"distill": 1.0}}, {"loss": {"distill": -1.0}}, {"loss": {"distill": "x"}},
                                 {"stage": {"teacher": {"steps": 0}}}, {"stage": {"teacher": {"nosuch": 1}}}])
def test_bad_recipe_is_refused(bad):
    with pytest.raises(ValueError):
        after_global.resolve(bad)


def test_assembled_model_carries_the_grid(full_run, tmp_path):
    from bsr.checkpoint import load_checkpoint
    from bsr.pretrained import assemble, verified_path

    _, out = full_run
    path = assemble(out, verified_path(), tmp_path / "m.pt", {"method": "ecc", "max_side": 640})
    model = load_checkpoint(path)
    assert model.config["local_grid"] == 8 and model.use_local


def test_validation_plot_draws_the_global_stage_reference(full_run):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from bsr.plots_train import plot_validation

    base, _ = full_run
    fig = plot_validation({"after global": pd.read_csv(base / "run" / "val.csv")})
    dashed = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 2   # the one set's reference and the overall one


# ---------------------------------------------------------------- distillation of the refinement
def test_distill_term_is_the_mean_px_distance_to_the_teacher():
    """A zero field against a constant teacher residual of (3, -1) px: the term is (3 + 1) / 2 = 2 px where the
    whole field samples content; the teacher itself scores zero."""
    pair = _pair()
    entry = {"matrix": torch.as_tensor(np.eye(2, 3)), "elastic": None, "global": torch.eye(2, 3, dtype=torch.float64),
             "teacher": torch.tensor([3.0, -1.0]).view(2, 1, 1).expand(2, 64, 80).half()}
    item = after_global._item(pair, entry, 48, np.random.default_rng(0))
    assert item["teacher"].shape == (1, 2, 48, 48)
    unet, _ = after_global._init_unet(after_global.resolve({"model": {"size": "quick"}, "init": None}))
    lc = {**after_global.resolve({})["loss"], "distill": 1.0}
    with torch.no_grad():
        terms = after_global._objective(unet, [item], 8, lc)
    assert terms["distill"].item() == pytest.approx(2.0, abs=1e-3)
    assert terms["total"].item() == pytest.approx(
        (terms["sim_p"] + terms["sim_n"] + lc["smooth"] * terms["smooth"] + lc["inverse"] * terms["inverse"]).item()
        + 2.0, abs=1e-3)


def test_pool_holds_the_teachers_residual_and_training_follows_it(tmp_path):
    """The teacher (a short refinement) fills every pool entry with a full-pair residual; after a short run with
    distillation the U-Net's field is closer to it, on fixed crops of the pool, than the zero field it started from."""
    cfg = _cfg(tmp_path, stage={**TINY["stage"], "teacher": {"steps": 5}}, loss={"distill": 10.0},
               steps=100, val_every=100, ckpt_every=100, lr=3e-3, lr_final=3e-3)
    out = after_global.train(cfg)
    pool = torch.load(tmp_path / "run" / "pool.pt", weights_only=True)
    assert all(e["teacher"].shape == (2, 72, 88) and e["teacher"].dtype == torch.float16 for e in pool)
    assert all(e["teacher"].abs().max() > 0.05 for e in pool)
    resolved = after_global.resolve(cfg)
    train_pairs, _ = after_global._split(resolved)
    rng = np.random.default_rng(5)
    items = [after_global._item(train_pairs[e["pair"]], e, 48, rng) for e in pool for _ in range(4)]
    unet, _ = after_global._init_unet(resolved)            # zero head: the zero field
    with torch.no_grad():
        before = after_global._objective(unet, items, 8, resolved["loss"])["distill"].item()
        unet.load_state_dict(torch.load(out, weights_only=True)["unet"])
        after = after_global._objective(unet, items, 8, resolved["loss"])["distill"].item()
    assert after < 0.8 * before
