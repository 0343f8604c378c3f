"""Real-data training of the released U-Net (bsr.training.pretrain), on tiny synthetic data."""

import csv

import pytest
import torch

from bsr.training import pretrain

TINY = {
    "data": {"name": "synthetic", "synthetic": {"n": 6, "size": [72, 88], "seed": 0}, "val_count": 2},
    "model": {"size": "quick"},
    "validation": {"per_pair": 1},
    "crop": 48, "batch_size": 2, "steps": 4, "val_every": 2, "ckpt_every": 2, "threads": 1, "progress": False,
}


def _cfg(tmp_path, **over):
    cfg = {**TINY, "out_dir": str(tmp_path / "run")}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("full")
    return base, pretrain.train(_cfg(base))


def test_tiny_run_writes_logs_and_a_safe_checkpoint(full_run):
    base, out = full_run
    run = base / "run"
    assert out == run / "unet.pt"
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 5))
    val = list(csv.DictReader(open(run / "val.csv")))
    assert [int(r["step"]) for r in val] == [0, 2, 4]
    assert all(float(r["epe"]) >= 0 for r in val)
    # plain tensors and types only: loads with weights_only=True
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["step"] == 4
    u = torch.load(out, weights_only=True)
    unet, _ = pretrain.build_unet(pretrain.resolve({"model": {"size": "quick"}}))
    unet.load_state_dict(u["unet"])


def test_resume_after_a_kill_gives_the_same_weights(tmp_path, full_run, monkeypatch):
    _, full = full_run
    part = _cfg(tmp_path)
    calls = {"n": 0}
    real = pretrain._objective

    def killed_in_step_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pretrain, "_objective", killed_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain.train(part)
    monkeypatch.setattr(pretrain, "_objective", real)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2
    resumed = pretrain.train(part)
    a = torch.load(full, weights_only=True)["unet"]
    b = torch.load(resumed, weights_only=True)["unet"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused(full_run):
    base, _ = full_run
    with pytest.raises(ValueError, match="changed: lr.*--fresh"):
        pretrain.train(_cfg(base, lr=5e-4))


@pytest.mark.parametrize("bad", [{"nosuch": 1}, {"loss": {"nosuch": 1}}, {"steps": -1}, {"crop": "big"},
                                 {"lr": float("nan")}, {"misalignment": {"max_shift": -2}}, {"loss": 3}])
def test_bad_recipe_is_refused(bad):
    with pytest.raises(ValueError):
        pretrain.resolve(bad)


def test_validation_plot_draws_every_run(full_run):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from bsr.plots_train import plot_validation

    base, _ = full_run
    fig = plot_validation({"a": pd.read_csv(base / "run" / "val.csv"), "b": pd.read_csv(base / "run" / "val.csv")})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) >= 3


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert pretrain.main(["--config", str(tmp_path / "none.yaml")]) == 1
    (tmp_path / "r.yaml").write_text("steps: 2\n")
    assert pretrain.main(["--config", str(tmp_path / "r.yaml"), "--set", "nosuch=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "does not exist" in err[0] and "unknown recipe key 'nosuch'" in err[1]
