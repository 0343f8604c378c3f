"""The training loop: loss decrease, determinism, kill-and-resume, NaN stop, the log,
registration in short runs, CUDA/AMP (skipped without a GPU)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import bsr.objective
from bsr.checkpoint import load_checkpoint
from bsr.objective import Objective
from bsr.paths import REPO_ROOT
from bsr.training import TrainConfig, train
from bsr.training.cli import main
from bsr.training.loop import NonFiniteLossError, read_log
from training_helpers import assert_same_weights, tiny_cfg, weights


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
    train(tiny_cfg(tmp_path / "a", phase1={"steps": 24, "lr": 3e-3}, phase2={"steps": 30, "lr": 3e-3},
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
            train(tiny_cfg(ck, phase1={"steps": 24 + 16, "lr": 3e-3}, phase2={"steps": n2, "lr": 3e-3},
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
    a = train(tiny_cfg(tmp_path / "a", **kw))
    b = train(tiny_cfg(tmp_path / "b", **kw))
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
        train(tiny_cfg(out, **kw))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    assert len(pd.read_csv(out / "log.csv")) == 3
    # kill 2: the resumed run (from step 2) dies during step index 7 (phase 2); checkpoint after 6 steps
    calls.update(n=0, kill_at=6)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(out, **kw))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 6
    assert not (out / "final.pt").exists()
    calls.update(n=0, kill_at=None)
    c = train(tiny_cfg(out, **kw))          # resumes automatically
    assert_same_weights(weights(a), weights(c))
    log_a = pd.read_csv(tmp_path / "a" / "log.csv")
    log_c = pd.read_csv(out / "log.csv")
    assert list(log_c.step) == list(range(8))      # no duplicated or missing rows
    pd.testing.assert_frame_equal(log_a.drop(columns="time_s"), log_c.drop(columns="time_s"))

    # a finished run is not retrained; --resume without a checkpoint is an error
    assert train(tiny_cfg(out, **kw)) == c
    with pytest.raises(FileNotFoundError, match="resume"):
        train(tiny_cfg(tmp_path / "d"), resume=True)


def test_phase2_leaves_the_registration_network_unchanged(tmp_path):
    """A run with phase-2 steps has the U-Net of the same run without them, bit for bit,
    while the fusion network does change. The quick profile rests on this: its PDG study
    reads the U-Nets of two ablation runs (phase 2 of 30 steps) as its N = x and N = 2
    models, which have no phase 2 of their own."""
    kw = dict(phase1={"steps": 3}, ckpt_every=10)
    a = weights(train(tiny_cfg(tmp_path / "a", phase2={"steps": 0}, **kw)))
    b = weights(train(tiny_cfg(tmp_path / "b", phase2={"steps": 3}, **kw)))
    unet = [k for k in a if k.startswith("unet.")]
    assert unet
    assert_same_weights({k: a[k] for k in unet}, {k: b[k] for k in unet})
    assert any(not torch.equal(a[k], b[k]) for k in a if k not in unet)


def test_phase2_train_encoder_changes_the_encoder_and_not_the_unet(tmp_path):
    """phase2.train_encoder: the encoder's weights after phase 2 differ from phase 1's end
    (they are equal without the option), the U-Net's stay bit for bit."""
    kw = dict(phase1={"steps": 2}, ckpt_every=10)
    p1 = weights(train(tiny_cfg(tmp_path / "p1", phase2={"steps": 0}, **kw)))
    frozen = weights(train(tiny_cfg(tmp_path / "frozen", phase2={"steps": 3}, **kw)))
    trained = weights(train(tiny_cfg(tmp_path / "trained", phase2={"steps": 3, "train_encoder": True}, **kw)))
    enc = [k for k in p1 if k.startswith(("ae.embed", "ae.encoder", "ae.global_branch", "ae.local_branch"))]
    unet = [k for k in p1 if k.startswith("unet.")]
    assert enc and unet
    assert_same_weights({k: p1[k] for k in enc}, {k: frozen[k] for k in enc})
    assert any(not torch.equal(p1[k], trained[k]) for k in enc)
    assert_same_weights({k: p1[k] for k in unet}, {k: trained[k] for k in unet})


def test_phase2_encoder_lr_sets_the_encoders_step_and_not_the_decoders(tmp_path, monkeypatch):
    """phase2.encoder_lr: phase 2's optimizer holds the decoder at lr and the encoder at
    encoder_lr, every trainable parameter once; without it, one group at lr."""
    from bsr.training import loop
    groups = {}
    orig = loop._make_optimizer

    def spy(model, phase, pc):
        opt = orig(model, phase, pc)
        groups[phase] = [(g["lr"], len(g["params"])) for g in opt.param_groups]
        n_train = sum(1 for p in model.parameters() if p.requires_grad)
        assert sum(len(g["params"]) for g in opt.param_groups) == n_train
        if len(opt.param_groups) == 2:
            dec = {id(p) for m in model.ae.decoder_modules() for p in m.parameters()}
            assert all(id(p) in dec for p in opt.param_groups[0]["params"])
            assert not any(id(p) in dec for p in opt.param_groups[1]["params"])
        return opt

    monkeypatch.setattr(loop, "_make_optimizer", spy)
    train(tiny_cfg(tmp_path / "a", phase1={"steps": 1}, phase2={"steps": 1, "lr": 1e-3, "train_encoder": True,
                                                                "encoder_lr": 1e-5}, ckpt_every=10))
    assert [lr for lr, _ in groups[2]] == [1e-3, 1e-5] and all(n > 0 for _, n in groups[2])
    assert len(groups[1]) == 1
    train(tiny_cfg(tmp_path / "b", phase1={"steps": 1}, phase2={"steps": 1, "lr": 1e-3, "train_encoder": True},
                   ckpt_every=10))
    assert [lr for lr, _ in groups[2]] == [1e-3]


def test_a_resumed_phase_steps_at_the_configs_learning_rate(tmp_path, monkeypatch):
    """A run continued with --resume and a changed lr (or encoder_lr) goes on at the new
    one: the checkpoint restores the optimizer's moments, not the old learning rates."""
    out = tmp_path / "r"
    kw = dict(phase1={"steps": 2}, ckpt_every=1)
    train(tiny_cfg(out, phase2={"steps": 2, "lr": 1e-3, "train_encoder": True, "encoder_lr": 1e-4}, **kw))
    from bsr.training import loop
    seen = []
    orig = loop.restore_state

    def spy(ck, optimizer, scaler, last_path):
        orig(ck, optimizer, scaler, last_path)
        seen.append([(g["lr"], g["weight_decay"]) for g in optimizer.param_groups])

    monkeypatch.setattr(loop, "restore_state", spy)
    with pytest.warns(UserWarning, match="changed config"):
        train(tiny_cfg(out, phase2={"steps": 4, "lr": 5e-4, "weight_decay": 0.0, "train_encoder": True,
                                    "encoder_lr": 2e-5}, **kw), resume=True)
    assert seen == [[(5e-4, 0.0), (2e-5, 0.0)]]
    log = pd.read_csv(out / "log.csv")
    assert list(log[log.phase == 2].lr) == [1e-3, 1e-3, 5e-4, 5e-4]


def test_each_phase_runs_on_its_own_crop_and_batch_size(tmp_path, monkeypatch):
    """phase2.crop / phase2.batch_size: phase 1 sees the run's crops, phase 2 its own;
    with neither given, phase 2 sees the run's (one loader for both)."""
    shapes = {1: set(), 2: set()}
    orig1, orig2 = Objective.phase1, Objective.phase2

    def p1(self, d, **kw):
        shapes[1].add(tuple(d["ir"].shape))
        return orig1(self, d, **kw)

    def p2(self, d):
        shapes[2].add(tuple(d["fused"].shape))
        return orig2(self, d)

    monkeypatch.setattr(Objective, "phase1", p1)
    monkeypatch.setattr(Objective, "phase2", p2)
    train(tiny_cfg(tmp_path / "own", phase2={"steps": 2, "crop": [24, 28], "batch_size": 3}))
    assert shapes == {1: {(2, 1, 16, 16)}, 2: {(3, 1, 24, 28)}}
    import yaml
    resolved = yaml.safe_load((tmp_path / "own" / "config.yaml").read_text())["resolved"]
    assert resolved["crop"] == [16, 16] and resolved["crop_phase2"] == [24, 28]
    shapes[1].clear(), shapes[2].clear()
    train(tiny_cfg(tmp_path / "shared", phase2={"steps": 2}))
    assert shapes == {1: {(2, 1, 16, 16)}, 2: {(2, 1, 16, 16)}}


def test_nan_stops_with_term_name(tmp_path, monkeypatch):
    calls = {"n": 0}
    orig = bsr.objective.losses.smooth_loss

    def bad_smooth(flow):
        calls["n"] += 1
        out = orig(flow)
        return out * float("nan") if calls["n"] > 4 else out   # 2 calls per step: NaN at step 3

    monkeypatch.setattr(bsr.objective.losses, "smooth_loss", bad_smooth)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="'smooth'") as e:
        train(tiny_cfg(out, ckpt_every=1, loss={"use_pdg": False}))
    assert "phase 1, step 2" in str(e.value)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2   # nothing from the bad state
    assert not (out / "final.pt").exists()
    # the command line reports it and exits non-zero
    calls["n"] = 0
    cfg_path = tmp_path / "nan.yaml"
    import yaml

    d = tiny_cfg(tmp_path / "nan2", loss={"use_pdg": False}).to_dict()
    cfg_path.write_text(yaml.safe_dump(d))
    assert main(["--config", str(cfg_path), "--fresh"]) == 3


def test_read_log_and_plot(tmp_path):
    train(tiny_cfg(tmp_path / "p", phase1={"steps": 2}, phase2={"steps": 2}))
    df = read_log(tmp_path / "p" / "log.csv")
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
    ck = train(cfg)
    df = pd.read_csv(tmp_path / "g" / "log.csv")
    assert len(df) == 5 and df["total"].notna().all()
    m = load_checkpoint(ck, map_location="cpu")
    f, _, _ = m.fuse(torch.rand(1, 1, 19, 23), torch.rand(1, 1, 19, 23))
    assert torch.isfinite(f).all()


def test_precomputed_nda_targets_register(tmp_path):
    """The default path: L_nda targets searched once per image by the loader.
    Without the PDG branch (variant V) a short run already registers a 3 px
    shift much better than the identity."""
    cfg = tiny_cfg(tmp_path, variant="V", loss={"nda_targets": "precomputed", "nda_radius": 6, "nda_window": 11},
                   data={"synthetic": {"n": 6, "size": [64, 64]}, "misalignment": {"kind": "shift", "level": 3}},
                   crop=48, batch_size=4, phase1={"steps": 60, "lr": 3e-3}, phase2={"steps": 1}, ckpt_every=1000)
    train(cfg)
    df = pd.read_csv(tmp_path / "log.csv")
    p1 = df[df.phase == 1]
    assert p1["epe"].iloc[0] == pytest.approx(3.0, abs=0.05)       # starts at the identity
    last = p1["epe"].tail(5).mean()
    assert last < 0.7 * 3.0, last


def test_full_objective_registers_with_quick_loss_settings(tmp_path):
    """The full objective (PDG branch and L_ss on) with the quick profile's loss
    settings (vector L_nda, L_ss field term x 0.01, plain branch as L_ss teacher)
    registers a 3 px shift much better than the identity in a short run; see
    docs/method.md#settings-that-make-the-full-objective-register."""
    quick = TrainConfig.from_yaml(REPO_ROOT / "config" / "train" / "quick.yaml").loss
    loss = {**quick, "nda_targets": "precomputed", "nda_radius": 6, "nda_window": 11}
    assert loss["ss_field"] < 1 and loss["ss_teacher"] == "plain"
    cfg = tiny_cfg(tmp_path, variant="full", loss=loss,
                   data={"synthetic": {"n": 6, "size": [64, 64]}, "misalignment": {"kind": "shift", "level": 3}},
                   crop=48, batch_size=4, phase1={"steps": 60, "lr": 3e-3}, phase2={"steps": 1}, ckpt_every=1000)
    assert cfg.loss_config().nda_form == "vector"
    train(cfg)
    p1 = pd.read_csv(tmp_path / "log.csv").query("phase == 1")
    assert p1["epe"].iloc[0] == pytest.approx(3.0, abs=0.05)
    last = p1["epe"].tail(5).mean()
    assert last < 0.7 * 3.0, last
