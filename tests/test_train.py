"""Training: config handling, loss decrease, determinism, kill-and-resume, NaN stop,
checkpoints usable without the trainer, CUDA/AMP (skipped without a GPU)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

import bsr.objective
from bsr import train as T
from bsr.model import BSR, load_checkpoint
from bsr.objective import VARIANTS, LossConfig, Objective, variant_config
from bsr.paths import REPO_ROOT

TINY_DATA = {"name": "synthetic", "synthetic": {"n": 4, "size": [32, 32], "seed": 0},
             "misalignment": {"kind": "shift", "level": 2}}
FAST_LOSS = {"nda_radius": 3, "nda_window": 5, "nda_targets": "search"}


def tiny_cfg(out, **kw) -> T.TrainConfig:
    d = {"model": {"size": "quick"}, "data": TINY_DATA, "crop": 16, "batch_size": 2, "loss": dict(FAST_LOSS),
         "phase1": {"steps": 3}, "phase2": {"steps": 3}, "ckpt_every": 2, "threads": 1, "progress": False,
         "out_dir": str(out)}
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return T.TrainConfig.from_dict(d)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- config

def test_config_unknown_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match="'batchsize'"):
        T.TrainConfig.from_dict({"batchsize": 4})
    with pytest.raises(ValueError, match="'phase1.stepz'"):
        T.TrainConfig.from_dict({"phase1": {"stepz": 4}})
    with pytest.raises(ValueError, match="'nda_weight'"):
        T.TrainConfig.from_dict({"loss": {"nda_weight": 1.0}})
    with pytest.raises(ValueError, match="'widths'"):
        T.TrainConfig.from_dict({"model": {"unet": {"widths": [4]}}})
    with pytest.raises(ValueError, match="variant"):
        T.TrainConfig.from_dict({"variant": "VI"})
    with pytest.raises(ValueError, match="crop"):
        T.TrainConfig.from_dict({"crop": "half"})


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("batch_size: 3\nphase1: {steps: 5}\nloss: {nda: 0.5}\n")
    cfg = T.TrainConfig.from_yaml(p, ["phase1.steps=7", "loss.smooth=2", "data.misalignment.level=9",
                                      "variant=IV"])
    assert cfg.batch_size == 3 and cfg.phase1.steps == 7 and cfg.phase1.lr == 1e-4
    assert cfg.phase2.epochs == 80
    lc = cfg.loss_config()
    assert lc.nda == 0.5 and lc.smooth == 2 and lc.bidirectional is False and lc.use_epr is False
    assert cfg.data["misalignment"]["level"] == 9
    with pytest.raises(FileNotFoundError):
        T.TrainConfig.from_yaml(tmp_path / "none.yaml")
    # YAML reads 3e-3 (no dot) as a string: taken as the number; a word is refused by name
    assert T.TrainConfig.from_yaml(p, ["phase1.lr=3e-3"]).phase1.lr == 3e-3
    with pytest.raises(ValueError, match="phase lr must be a number"):
        T.TrainConfig.from_yaml(p, ["phase1.lr=fast"])
    with pytest.raises(ValueError, match="whole number"):
        T.TrainConfig.from_yaml(p, ["phase1.steps=2.5"])
    with pytest.raises(ValueError, match="finite number"):
        T.TrainConfig.from_yaml(p, ["phase1.lr=.nan"])


def test_example_configs_load():
    for name in ("quick", "paper"):
        cfg = T.TrainConfig.from_yaml(REPO_ROOT / "config" / "train" / f"{name}.yaml")
        assert cfg.model.size == name


def test_variants_switch_terms():
    torch.manual_seed(0)
    from bsr.pdg import ProxyDataGenerator

    m = BSR()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    seen = {}
    for v in VARIANTS:
        lc = variant_config(v, **FAST_LOSS)
        pdg = ProxyDataGenerator(2) if lc.use_pdg else None
        d = m.phase1(ir, vis, pdg, torch.Generator().manual_seed(0), bidirectional=lc.bidirectional,
                     joint=lc.joint)
        _, terms = Objective(lc, pdg).phase1(d)
        seen[v] = set(terms)
    assert {"nda_di", "nda_an", "epr", "ss_field", "rec", "dec", "smooth"} <= seen["full"]
    assert "edge" in seen["I"] and "nda_di" not in seen["I"]
    assert not {"nda_di", "edge"} & seen["II"]
    assert "epr" not in seen["IV"]
    assert not any(k.startswith("ss_") for k in seen["V"])
    with pytest.raises(ValueError, match="alignment"):
        LossConfig(alignment="mi")


def test_not_joint_reconstruction_leaves_registration_alone():
    """Exp. III and the fusion-only reference: with joint=False the reconstruction
    loss (its target, the warped IR, included) sends no gradient to the U-Net,
    so with the alignment losses off the registration network stays untouched."""
    torch.manual_seed(0)
    m = BSR()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    for joint in (False, True):
        m.zero_grad(set_to_none=True)
        lc = LossConfig(joint=joint, alignment="none", use_epr=False, use_pdg=False, use_smooth=False,
                        use_dec=False)
        d = m.phase1(ir, vis, None, bidirectional=True, joint=joint)
        total, terms = Objective(lc, None).phase1(d)
        assert set(terms) == {"rec", "total"}
        total.backward()
        unet_grad = sum(float(p.grad.abs().sum()) for p in m.unet.parameters() if p.grad is not None)
        if joint:
            assert unet_grad > 0      # the joint model does shape registration through reconstruction
        else:
            assert unet_grad == 0


@pytest.mark.parametrize("teacher", ["none", "plain", "pdg"])
def test_ss_teacher_and_field_weight(teacher):
    """ss_teacher detaches one side of every L_ss pair (the plain branch, or the
    IPDG-restored PDG branch); ss_field scales the field term only."""
    from bsr.pdg import ProxyDataGenerator

    torch.manual_seed(0)
    m = BSR()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    only_ss = dict(alignment="none", use_epr=False, use_smooth=False, use_rec=False, use_dec=False)
    pdg = ProxyDataGenerator(2)
    d = m.phase1(ir, vis, pdg, torch.Generator().manual_seed(0))
    d["phi_p"] = d["phi_p"] + 0.3          # make the two branches differ
    total, terms = Objective(variant_config("full", ss_teacher=teacher, **only_ss), pdg).phase1(d)
    g_plain, g_new = torch.autograd.grad(total, [d["phi_p"], d["phi_p_new"]], retain_graph=True,
                                         allow_unused=True)
    assert (g_plain is None) == (teacher == "plain")
    assert (g_new is None) == (teacher == "pdg")
    half, t2 = Objective(variant_config("full", ss_teacher=teacher, ss_field=0.5, **only_ss), pdg).phase1(d)
    assert t2["total"] == pytest.approx(terms["total"] - 0.5 * terms["ss_field"], rel=1e-5)
    with pytest.raises(ValueError, match="ss_teacher"):
        LossConfig(ss_teacher="both")
    with pytest.raises(ValueError, match="nda_form"):
        LossConfig(nda_form="l2")


# ----------------------------------------------------------------------------- training

def _halves(df, col, n=6):
    s = df[col].dropna()
    return s.head(n).mean(), s.tail(n).mean()


def test_short_training_reduces_losses(tmp_path):
    """Every loss term falls when it is optimised (first vs last steps, averaged).

    Run A (full objective): phase 1 lowers the reconstruction and
    decomposition terms, phase 2 the intensity term and the total. The
    registration terms fight each other early on (the PDG branch must learn
    rotated fields) and the regularisers start at ~0 (identity fields), so
    continuations from A's phase-1 checkpoint optimise term groups: B the
    regularisers (smooth, the three L_ss terms) and, in phase 2, the
    gradient term of L_fusion; C the alignment terms (L_nda, L_epr) without
    the PDG branch. Fixed batches (crop = image) keep it reliable."""
    # the earlier quick AE (one Restormer block in encoder and decoder): phase 2 trains the decoder
    # only, and the decoder of the current quick AE (no block) lowers the phase-2 total less in 30 steps
    common = dict(crop=32, batch_size=4, data={"synthetic": {"n": 4, "size": [32, 32]}}, ckpt_every=1000,
                  model={"size": "quick", "ae": {"enc_blocks": 1, "dec_blocks": 1}})
    # and the polar L_nda of Eq. 6: with it run A leaves fields that disagree between the branches,
    # so continuation B has L_ss to lower (the default "vector" form leaves them nearly consistent)
    T.train(tiny_cfg(tmp_path / "a", phase1={"steps": 24, "lr": 3e-3}, phase2={"steps": 30, "lr": 3e-3},
                     loss={"nda_form": "polar"}, **common))
    df = pd.read_csv(tmp_path / "a" / "log.csv")
    p1, p2 = df[df.phase == 1], df[df.phase == 2]
    for col in ("rec", "dec"):
        first, last = _halves(p1, col)
        assert last < 0.8 * first, (col, first, last)
    for col in ("fusion_int", "total"):
        first, last = _halves(p2, col)
        assert last < 0.9 * first, (col, first, last)

    def continuation(name, loss, n2=0):
        ck = tmp_path / name
        ck.mkdir()
        (ck / "last.pt").write_bytes((tmp_path / "a" / "phase1.pt").read_bytes())
        with pytest.warns(UserWarning, match="changed config"):
            T.train(tiny_cfg(ck, phase1={"steps": 24 + 16, "lr": 3e-3}, phase2={"steps": n2, "lr": 3e-3},
                             loss={"nda_form": "polar", **loss}, **common))
        d = pd.read_csv(ck / "log.csv")
        return d[d.phase == 1], d[d.phase == 2]

    q1, q2 = continuation("b", {"alignment": "none", "use_epr": False, "use_rec": False, "use_dec": False,
                                "smooth": 10.0, "fusion_int": 0.0}, n2=30)
    for col in ("smooth", "ss_field", "ss_aligned", "ss_rec"):
        first, last = _halves(q1, col, 5)
        assert last < 0.8 * first, (col, first, last)
    first, last = _halves(q2, "fusion_grad")
    assert last < 0.9 * first, ("fusion_grad", first, last)

    q1, _ = continuation("c", {"use_pdg": False, "use_rec": False, "use_dec": False, "use_smooth": False})
    for col in ("nda_di", "epr"):
        first, last = _halves(q1, col, 5)
        assert last < 0.8 * first, (col, first, last)
    assert _halves(q1, "epe", 5)[1] < _halves(q1, "epe", 5)[0]     # and the registration improves


def test_same_seed_and_kill_resume_identical(tmp_path, monkeypatch):
    """Same seed -> identical weights; a run killed mid-phase (once in phase 1,
    once in phase 2) and resumed from its last checkpoint each time ends with
    weights and a log identical to an uninterrupted run."""
    kw = dict(phase1={"steps": 4}, phase2={"steps": 4}, ckpt_every=2)
    a = T.train(tiny_cfg(tmp_path / "a", **kw))
    b = T.train(tiny_cfg(tmp_path / "b", **kw))
    assert_same_weights(weights(a), weights(b))

    calls = {"n": 0, "kill_at": None}
    orig1, orig2 = Objective.phase1, Objective.phase2

    def counting(orig):
        def f(self, d, **kw):
            calls["n"] += 1
            if calls["n"] == calls["kill_at"]:
                raise KeyboardInterrupt("simulated kill")
            return orig(self, d, **kw)
        return f

    monkeypatch.setattr(Objective, "phase1", counting(orig1))
    monkeypatch.setattr(Objective, "phase2", counting(orig2))
    out = tmp_path / "c"
    # kill 1: during step index 3 (phase 1); last checkpoint after 2 steps, log rows 0-2 written
    calls.update(n=0, kill_at=4)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_cfg(out, **kw))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    assert len(pd.read_csv(out / "log.csv")) == 3
    # kill 2: the resumed run (from step 2) dies during step index 7 (phase 2); checkpoint after 6 steps
    calls.update(n=0, kill_at=6)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_cfg(out, **kw))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 6
    assert not (out / "final.pt").exists()
    calls.update(n=0, kill_at=None)
    c = T.train(tiny_cfg(out, **kw))          # resumes automatically
    assert_same_weights(weights(a), weights(c))
    log_a = pd.read_csv(tmp_path / "a" / "log.csv")
    log_c = pd.read_csv(out / "log.csv")
    assert list(log_c.step) == list(range(8))      # no duplicated or missing rows
    pd.testing.assert_frame_equal(log_a.drop(columns="time_s"), log_c.drop(columns="time_s"))

    # a finished run is not retrained; --resume without a checkpoint is an error
    assert T.train(tiny_cfg(out, **kw)) == c
    with pytest.raises(FileNotFoundError, match="resume"):
        T.train(tiny_cfg(tmp_path / "d"), resume=True)


def test_resume_if_same_restarts_on_a_changed_config(tmp_path, capsys):
    """The workflow's mode: a finished run of the same config is kept (threads may
    differ); a changed loss weight, step budget or model starts over, so the new
    checkpoint equals a fresh run of the new config."""
    out = tmp_path / "w"
    first = T.train(tiny_cfg(out))
    mtime = first.stat().st_mtime_ns
    assert T.train(tiny_cfg(out, threads=2), resume="if_same") == first
    assert first.stat().st_mtime_ns == mtime and "starting over" not in capsys.readouterr().out
    # checkpoints written before the U-Net's optional `corr` key existed still match
    ck = torch.load(out / "last.pt", weights_only=True)
    del ck["model_config"]["unet"]["corr"]
    torch.save(ck, out / "last.pt")
    assert T.train(tiny_cfg(out), resume="if_same") == first
    assert first.stat().st_mtime_ns == mtime and "starting over" not in capsys.readouterr().out
    for change in ({"loss": {"smooth": 0.5}}, {"phase1": {"steps": 4}},
                   {"model": {"size": "quick", "unet": {"corr": {"radius": 1, "level": 1, "window": 3}}}}):
        ref = T.train(tiny_cfg(tmp_path / f"ref{len(change)}_{next(iter(change))}", **change))
        got = T.train(tiny_cfg(out, **change), resume="if_same")
        assert "starting over" in capsys.readouterr().out
        assert_same_weights(weights(ref), weights(got))
        assert list(pd.read_csv(out / "log.csv").step) == list(range(len(pd.read_csv(ref.parent / "log.csv"))))
    with pytest.raises(ValueError, match="resume"):
        T.train(tiny_cfg(out), resume="maybe")


def test_resume_same_stops_on_a_changed_config(tmp_path):
    """``bsr train``'s default: the same config resumes (here: is kept, finished);
    another one stops with the changed keys named, and nothing is overwritten."""
    out = tmp_path / "s"
    first = T.train(tiny_cfg(out), resume="same")
    mtime = first.stat().st_mtime_ns
    assert T.train(tiny_cfg(out, threads=2, ckpt_every=5), resume="same") == first
    for change, named in (({"phase1": {"steps": 3, "lr": 1e-3}}, r"phase1\.lr 0\.0001 -> 0\.001"),
                          ({"seed": 3}, "seed 0 -> 3"), ({"variant": "II"}, "variant 'full' -> 'II'"),
                          ({"loss": {"smooth": 0.5}}, r"loss\.smooth \(none\) -> 0\.5")):
        with pytest.raises(ValueError, match=rf"last\.pt: a run of another config \(changed: {named}\); "
                                             r"use --fresh"):
            T.train(tiny_cfg(out, **change), resume="same")
    with pytest.raises(ValueError, match=r"another model config \(model\.ae\.dim differ\)"):
        T.train(tiny_cfg(out, model={"size": "quick", "ae": {"dim": 16}}), resume="same")
    assert first.stat().st_mtime_ns == mtime
    # a finished run is never handed back as the model of another config, even by a plain resume
    with pytest.raises(ValueError, match=r"finished .*phase1\.lr.*--fresh"):
        T.train(tiny_cfg(out, phase1={"steps": 3, "lr": 1e-3}))


class _Hostile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoints_are_plain_and_hostile_ones_are_refused(tmp_path):
    """Checkpoints hold tensors and plain values only (they load with
    weights_only=True); a file whose unpickling would run code is refused by
    every reader, and the code does not run."""
    ck_path = T.train(tiny_cfg(tmp_path / "p", phase1={"steps": 1}, phase2={"steps": 1}))
    ck = torch.load(ck_path, weights_only=True)
    assert type(ck["torch_version"]) is str and isinstance(ck["rng"]["numpy"]["key"], torch.Tensor)
    marker = tmp_path / "written_by_unpickling"
    out = tmp_path / "h"
    out.mkdir()
    torch.save({"format": "bsr-checkpoint/2", "model_config": _Hostile(marker), "model": {}}, out / "last.pt")
    with pytest.raises(ValueError, match=r"refused: the file holds pickled Python objects \(io\.open\)"):
        load_checkpoint(out / "last.pt")
    for resume in (None, True, "same"):
        with pytest.raises(ValueError, match=r"last\.pt: refused: .*use --fresh"):
            T.train(tiny_cfg(out), resume=resume)
    assert not marker.exists()
    T.train(tiny_cfg(out), resume="if_same")        # the workflow's mode replaces it
    assert not marker.exists()
    assert torch.load(out / "last.pt", weights_only=True)["format"] == "bsr-checkpoint/2"


def _as_format_1(path):
    """Rewrite a checkpoint as bsr wrote it before checkpoints became plain: numpy's
    RNG state tuple (a numpy array inside) and torch's TorchVersion object."""
    import numpy as np
    from torch.torch_version import TorchVersion

    ck = torch.load(path, weights_only=True)
    r = ck["rng"]["numpy"]
    ck["rng"]["numpy"] = (r["kind"], r["key"].numpy().astype(np.uint32), r["pos"], r["has_gauss"],
                          r["cached_gaussian"])
    ck["format"], ck["torch_version"] = "bsr-checkpoint/1", TorchVersion(torch.__version__)
    torch.save(ck, path)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(path)


def test_format_1_checkpoints_still_load_and_resume(tmp_path, monkeypatch):
    """A checkpoint of the earlier format (numpy arrays in its RNG state) is read
    without unpickling anything else: its model loads, and a run resumed from it
    ends with the weights of an uninterrupted run."""
    kw = dict(phase1={"steps": 2}, phase2={"steps": 2}, ckpt_every=2)
    ref = T.train(tiny_cfg(tmp_path / "ref", **kw))
    calls = {"n": 0}
    orig = Objective.phase2

    def killed(self, d, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return orig(self, d, **k)

    monkeypatch.setattr(Objective, "phase2", killed)
    out = tmp_path / "old"
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_cfg(out, **kw))
    monkeypatch.setattr(Objective, "phase2", orig)
    _as_format_1(out / "last.pt")
    assert load_checkpoint(out / "last.pt").config["size"] == "quick"
    got = T.train(tiny_cfg(out, **kw), resume="same")
    assert_same_weights(weights(ref), weights(got))


def test_nan_stops_with_term_name(tmp_path, monkeypatch):
    calls = {"n": 0}
    orig = bsr.objective.losses.smooth_loss

    def bad_smooth(flow):
        calls["n"] += 1
        out = orig(flow)
        return out * float("nan") if calls["n"] > 4 else out   # 2 calls per step: NaN at step 3

    monkeypatch.setattr(bsr.objective.losses, "smooth_loss", bad_smooth)
    out = tmp_path / "nan"
    with pytest.raises(T.NonFiniteLossError, match="'smooth'") as e:
        T.train(tiny_cfg(out, ckpt_every=1, loss={"use_pdg": False}))
    assert "phase 1, step 2" in str(e.value)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2   # nothing from the bad state
    assert not (out / "final.pt").exists()
    # the command line reports it and exits non-zero
    calls["n"] = 0
    cfg_path = tmp_path / "nan.yaml"
    import yaml

    d = tiny_cfg(tmp_path / "nan2", loss={"use_pdg": False}).to_dict()
    cfg_path.write_text(yaml.safe_dump(d))
    assert T.main(["--config", str(cfg_path), "--fresh"]) == 3


def test_checkpoint_loads_without_trainer(tmp_path):
    ck = T.train(tiny_cfg(tmp_path / "r", phase1={"steps": 1}, phase2={"steps": 1}))
    code = ("import sys, torch; from bsr.model import load_checkpoint; "
            f"m = load_checkpoint(r'{ck}'); "
            "f, r, p = m.fuse(torch.rand(1, 1, 21, 30), torch.rand(1, 1, 21, 30)); "
            "assert f.shape == (1, 1, 21, 30); assert 'bsr.train' not in sys.modules; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    m = load_checkpoint(ck)
    assert not m.training and m.config["size"] == "quick"
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt or not a checkpoint"):
        load_checkpoint(bad)
    bad.write_bytes(ck.read_bytes()[:2000])           # truncated
    with pytest.raises(ValueError, match="corrupt or not a checkpoint"):
        load_checkpoint(bad)
    torch.save({"format": "something-else/1"}, bad)
    with pytest.raises(ValueError, match="not a B-SR checkpoint"):
        load_checkpoint(bad)


def test_read_log_and_plot(tmp_path):
    T.train(tiny_cfg(tmp_path / "p", phase1={"steps": 2}, phase2={"steps": 2}))
    df = T.read_log(tmp_path / "p" / "log.csv")
    assert {"step", "phase", "total", "rec", "fusion_int"} <= set(df.columns)
    assert "edge" not in df.columns            # empty columns dropped
    import matplotlib

    matplotlib.use("Agg")
    from bsr.plots_train import plot_losses

    fig = plot_losses(df)
    fig.savefig(tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_training(tmp_path):
    cfg = tiny_cfg(tmp_path / "g", device="cuda", amp=True, phase1={"steps": 3}, phase2={"steps": 2})
    ck = T.train(cfg)
    df = pd.read_csv(tmp_path / "g" / "log.csv")
    assert len(df) == 5 and df["total"].notna().all()
    m = load_checkpoint(ck, map_location="cpu")
    f, _, _ = m.fuse(torch.rand(1, 1, 19, 23), torch.rand(1, 1, 19, 23))
    assert torch.isfinite(f).all()


def test_nda_target_transfer_matches_search_away_from_seams():
    """The PDG branch's L_nda targets transferred from the plain search equal
    the PDG branch's own search away from patch seams and borders."""
    from bsr import losses
    from bsr.pdg import ProxyDataGenerator, seam_mask
    from bsr.data import load_pairs
    from bsr.simulate import shift

    p = load_pairs("synthetic", synthetic={"n": 1, "size": [64, 64]})[0]
    vis = torch.from_numpy(p.vis)[None, None]
    ir, _ = shift(torch.from_numpy(p.ir)[None, None], 2.0)
    pdg = ProxyDataGenerator(2)
    ir_new, vis_new, ops = pdg(ir, vis, generator=torch.Generator().manual_seed(3))
    kw = dict(radius=3, window=5, subpixel=False)   # the sub-pixel parabola is float-sensitive
    own = losses.nda_search(ir_new, vis_new, **kw)
    obj = Objective(LossConfig(), pdg)
    moved = obj._transfer_targets(losses.nda_search(ir, vis, **kw), ops)
    keep = seam_mask(64, 64, 2, margin=3 + 2 + 2, include_border=True).bool()
    n = int((own.valid & keep).sum())
    assert n > 50
    # equal up to rare ties / threshold cases of the search (< 1 % of the pixels)
    assert int(((moved.valid ^ own.valid) & keep).sum()) <= max(1, n // 100)
    both = moved.valid & own.valid & keep
    close = ((moved.delta - own.delta).abs() < 1e-4).all(1, keepdim=True)
    assert int((both & ~close).sum()) <= max(1, n // 100)


def test_precomputed_nda_targets_register(tmp_path):
    """The default path: L_nda targets searched once per image by the loader.
    Without the PDG branch (variant V) a short run already registers a 3 px
    shift much better than the identity."""
    cfg = tiny_cfg(tmp_path, variant="V", loss={"nda_targets": "precomputed", "nda_radius": 6, "nda_window": 11},
                   data={"synthetic": {"n": 6, "size": [64, 64]}, "misalignment": {"kind": "shift", "level": 3}},
                   crop=48, batch_size=4, phase1={"steps": 60, "lr": 3e-3}, phase2={"steps": 1}, ckpt_every=1000)
    T.train(cfg)
    df = pd.read_csv(tmp_path / "log.csv")
    p1 = df[df.phase == 1]
    assert p1["epe"].iloc[0] == pytest.approx(3.0, abs=0.05)       # starts at the identity
    last = p1["epe"].tail(5).mean()
    assert last < 0.7 * 3.0, last


def test_full_objective_registers_with_quick_loss_settings(tmp_path):
    """The full objective (PDG branch and L_ss on) with the quick profile's loss
    settings (vector L_nda, L_ss field term x 0.01, plain branch as L_ss teacher)
    registers a 3 px shift much better than the identity in a short run; see
    docs/method_model_train.md, "Making the full objective register"."""
    quick = T.TrainConfig.from_yaml(REPO_ROOT / "config" / "train" / "quick.yaml").loss
    loss = {**quick, "nda_targets": "precomputed", "nda_radius": 6, "nda_window": 11}
    assert loss["ss_field"] < 1 and loss["ss_teacher"] == "plain"
    cfg = tiny_cfg(tmp_path, variant="full", loss=loss,
                   data={"synthetic": {"n": 6, "size": [64, 64]}, "misalignment": {"kind": "shift", "level": 3}},
                   crop=48, batch_size=4, phase1={"steps": 60, "lr": 3e-3}, phase2={"steps": 1}, ckpt_every=1000)
    assert cfg.loss_config().nda_form == "vector"
    T.train(cfg)
    p1 = pd.read_csv(tmp_path / "log.csv").query("phase == 1")
    assert p1["epe"].iloc[0] == pytest.approx(3.0, abs=0.05)
    last = p1["epe"].tail(5).mean()
    assert last < 0.7 * 3.0, last
