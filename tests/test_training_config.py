"""Training configs: unknown keys named, YAML and overrides, the example configs."""

from __future__ import annotations

import pytest

from bsr.paths import REPO_ROOT
from bsr.training import TrainConfig
from bsr.training.config import with_overrides


def test_config_unknown_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match="'batchsize'"):
        TrainConfig.from_dict({"batchsize": 4})
    with pytest.raises(ValueError, match="'phase1.stepz'"):
        TrainConfig.from_dict({"phase1": {"stepz": 4}})
    with pytest.raises(ValueError, match="'nda_weight'"):
        TrainConfig.from_dict({"loss": {"nda_weight": 1.0}})
    with pytest.raises(ValueError, match="'widths'"):
        TrainConfig.from_dict({"model": {"unet": {"widths": [4]}}})
    with pytest.raises(ValueError, match="variant"):
        TrainConfig.from_dict({"variant": "VI"})
    with pytest.raises(ValueError, match="crop"):
        TrainConfig.from_dict({"crop": "half"})


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("batch_size: 3\nphase1: {steps: 5}\nloss: {nda: 0.5}\n")
    cfg = TrainConfig.from_yaml(p, ["phase1.steps=7", "loss.smooth=2", "data.misalignment.level=9",
                                      "variant=IV"])
    assert cfg.batch_size == 3 and cfg.phase1.steps == 7 and cfg.phase1.lr == 1e-4
    assert cfg.phase2.epochs == 80
    lc = cfg.loss_config()
    assert lc.nda == 0.5 and lc.smooth == 2 and lc.bidirectional is False and lc.use_epr is False
    assert cfg.data["misalignment"]["level"] == 9
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_yaml(tmp_path / "none.yaml")
    # YAML reads 3e-3 (no dot) as a string: taken as the number; a word is refused by name
    assert TrainConfig.from_yaml(p, ["phase1.lr=3e-3"]).phase1.lr == 3e-3
    with pytest.raises(ValueError, match="phase lr must be a number"):
        TrainConfig.from_yaml(p, ["phase1.lr=fast"])
    with pytest.raises(ValueError, match="whole number"):
        TrainConfig.from_yaml(p, ["phase1.steps=2.5"])
    with pytest.raises(ValueError, match="finite number"):
        TrainConfig.from_yaml(p, ["phase1.lr=.nan"])


def test_example_configs_load():
    for name in ("quick", "paper"):
        cfg = TrainConfig.from_yaml(REPO_ROOT / "config" / "train" / f"{name}.yaml")
        assert cfg.model.size == name


def test_with_overrides_sets_dotted_keys_and_replaces_mappings():
    base = TrainConfig.from_yaml(REPO_ROOT / "config" / "train" / "quick.yaml").to_dict()
    d = with_overrides(base, {"phase1.lr": 0.5, "data": {"name": "synthetic"}, "loss.smooth": 2.0})
    assert d["phase1"] == {**base["phase1"], "lr": 0.5} and d["data"] == {"name": "synthetic"}
    assert d["loss"] == {**base["loss"], "smooth": 2.0} and base["phase1"]["lr"] != 0.5   # base untouched
    assert with_overrides(base, ["phase1.lr=0.5"])["phase1"] == d["phase1"]             # --set: the same path
    with pytest.raises(ValueError, match="'seed' is not a mapping"):
        with_overrides(base, {"seed.x": 1})


def test_a_crop_the_pdg_grid_does_not_divide_is_refused():
    """PDG cuts the crop into N x N patches: a crop N does not divide fails at load
    (the paper profile's 128 px crop did, for N = 3), not inside the first step."""
    base = {"data": {"name": "synthetic"}, "crop": 64}
    with pytest.raises(ValueError, match=r"crop 64x64 is not divisible by the PDG grid N = 3"):
        TrainConfig.from_dict({**base, "pdg_n": 3})
    TrainConfig.from_dict({**base, "pdg_n": 4})                    # 64 / 4
    TrainConfig.from_dict({**base, "pdg_n": 3, "variant": "V"})    # no PDG branch: any crop
    TrainConfig.from_dict({**base, "pdg_n": 3, "crop": "quarter"})  # sized from the images later


def test_quarter_crops_are_tiled_by_the_pdg_grid():
    from bsr.training.config import resolve_crop

    def quarter(**kw):
        return resolve_crop(TrainConfig.from_dict({"data": {"name": "synthetic", "synthetic": {"size": [90, 150]}},
                                                   "crop": "quarter", **kw}))
    assert quarter(pdg_n=2) == (44, 74)            # 45 x 75 rounded down to multiples of 2
    assert quarter(pdg_n=3) == (45, 75)
    assert quarter(pdg_n=4) == (44, 72)
    assert quarter(pdg_n=2, variant="V") == (45, 75)   # no PDG branch: the plain quarter


def test_train_encoder_is_a_phase2_switch():
    assert TrainConfig.from_dict({"phase2": {"steps": 1, "train_encoder": True}}).phase2.train_encoder
    with pytest.raises(ValueError, match="phase 2 only"):
        TrainConfig.from_dict({"phase1": {"steps": 1, "train_encoder": True}})
    with pytest.raises(ValueError, match="train_encoder must be true or false"):
        TrainConfig.from_dict({"phase2": {"steps": 1, "train_encoder": "yes"}})


def test_a_phase_crop_and_batch_size_are_checked():
    cfg = TrainConfig.from_dict({"phase2": {"steps": 1, "crop": [160, 320], "batch_size": 2}})
    assert (cfg.phase2.crop, cfg.phase2.batch_size, cfg.phase1.crop) == ([160, 320], 2, None)
    with pytest.raises(ValueError, match="crop must be"):
        TrainConfig.from_dict({"phase2": {"steps": 1, "crop": -4}})
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        TrainConfig.from_dict({"phase2": {"steps": 1, "batch_size": 0}})
    # the PDG branch runs in phase 1: its crop must be tiled by the grid, phase 2's need not
    with pytest.raises(ValueError, match="not divisible by the PDG grid"):
        TrainConfig.from_dict({"pdg_n": 2, "crop": 16, "phase1": {"steps": 1, "crop": 15}})
    TrainConfig.from_dict({"pdg_n": 2, "crop": 16, "phase2": {"steps": 1, "crop": 15}})


def test_encoder_lr_needs_train_encoder_and_a_positive_value():
    cfg = TrainConfig.from_dict({"phase2": {"steps": 1, "train_encoder": True, "encoder_lr": "1e-4"}})
    assert cfg.phase2.encoder_lr == 1e-4
    assert TrainConfig.from_dict({"phase2": {"steps": 1}}).phase2.encoder_lr is None
    with pytest.raises(ValueError, match="needs train_encoder"):
        TrainConfig.from_dict({"phase2": {"steps": 1, "encoder_lr": 1e-4}})
    with pytest.raises(ValueError, match="encoder_lr must be > 0"):
        TrainConfig.from_dict({"phase2": {"steps": 1, "train_encoder": True, "encoder_lr": 0}})
