"""`bsr fuse` and the fuse_pair API: grey and colour, odd sizes, folders, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bsr import cli
from bsr.fuse import flow_to_rgb, fuse_pair
from bsr.io import read_image, write_image
from bsr.model import BSR, load_checkpoint, model_config
from bsr.train import TrainConfig, save_checkpoint

H, W = 37, 53


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = BSR(model_config("quick"))
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_checkpoint(path, model, TrainConfig(), step=0, phase=1)
    return path


def _images(rng, colour: bool):
    ir = rng.random((H, W)).astype(np.float32)
    vis = rng.random((H, W, 3) if colour else (H, W)).astype(np.float32)
    return ir, vis


def test_fuse_pair_api(checkpoint):
    model = load_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    ir, vis = _images(rng, colour=True)
    res = fuse_pair(model, ir, vis)
    assert res["fused"].shape == (H, W, 3) and res["fused_y"].shape == (H, W)
    assert res["ir_registered"].shape == (H, W) and res["flow"].shape == (2, H, W)
    assert res["fused"].dtype == np.float32 and 0 <= res["fused"].min() and res["fused"].max() <= 1
    ir, vis = _images(rng, colour=False)
    assert fuse_pair(model, ir, vis)["fused"].shape == (H, W)
    with pytest.raises(ValueError, match="sizes differ"):
        fuse_pair(model, ir, vis[:-1])


def test_flow_to_rgb_colour_wheel():
    f = np.zeros((2, 3, 4), np.float32)
    assert (flow_to_rgb(f) == 255).all()                  # zero field: white
    f[0, 0, 0] = 1.0                                      # +x: red
    f[0, 0, 1] = -1.0                                     # -x: cyan
    rgb = flow_to_rgb(f)
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (0, 255, 255)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    with pytest.raises(ValueError):
        flow_to_rgb(np.zeros((3, 4, 4)))


@pytest.mark.parametrize("colour", [False, True], ids=["grey", "colour"])
def test_cli_single_pair(tmp_path, checkpoint, colour):
    rng = np.random.default_rng(1)
    ir, vis = _images(rng, colour)
    write_image(tmp_path / "ir.png", ir)
    write_image(tmp_path / "vis.png", vis)
    out = tmp_path / "out" / "fused.png"
    rc = cli.main(["fuse", "--checkpoint", str(checkpoint), str(tmp_path / "ir.png"), str(tmp_path / "vis.png"),
                   "-o", str(out), "--save-registered", "--save-flow", "--save-flow-vis"])
    assert rc == 0
    fused = read_image(out)
    assert fused.shape == ((H, W, 3) if colour else (H, W))
    assert read_image(tmp_path / "out" / "fused_ir_registered.png").shape == (H, W)
    with np.load(tmp_path / "out" / "fused_flow.npz") as z:
        assert z["flow"].shape == (2, H, W)
    assert (tmp_path / "out" / "fused_flow.png").is_file()


def test_cli_folders(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(2)
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    for stem, colour in (("a", True), ("b", False)):
        ir, vis = _images(rng, colour)
        write_image(tmp_path / "ir" / f"{stem}.png", ir)
        write_image(tmp_path / "vi" / f"{stem}.jpg", vis)
    write_image(tmp_path / "ir" / "lonely.png", rng.random((H, W)))
    out = tmp_path / "fused"
    rc = cli.main(["fuse", "--checkpoint", str(checkpoint), str(tmp_path / "ir"), str(tmp_path / "vi"),
                   "-o", str(out), "--save-flow", "--save-registered"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "lonely.png" in err
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    assert read_image(out / "a.png").ndim == 3 and read_image(out / "b.png").ndim == 2
    assert (out / "flow" / "a.npz").is_file() and (out / "registered" / "b.png").is_file()


def test_cli_errors(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(3)
    write_image(tmp_path / "ir.png", rng.random((H, W)))
    write_image(tmp_path / "vis.png", rng.random((H, W)))
    write_image(tmp_path / "small.png", rng.random((H - 2, W)))
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    (tmp_path / "dir").mkdir()
    ck = str(checkpoint)

    def run(*args):
        rc = cli.main(["fuse", "--checkpoint", *args])
        return rc, capsys.readouterr().err

    cases = [
        ((ck, str(tmp_path / "nope.png"), str(tmp_path / "vis.png"), "-o", str(tmp_path / "o.png")), "does not exist"),
        ((ck, str(tmp_path / "ir.png"), str(tmp_path / "small.png"), "-o", str(tmp_path / "o.png")), "sizes differ"),
        ((ck, str(tmp_path / "broken.png"), str(tmp_path / "vis.png"), "-o", str(tmp_path / "o.png")), "not a readable"),
        ((ck, str(tmp_path / "ir.png"), str(tmp_path / "dir"), "-o", str(tmp_path / "o.png")), "two files or two folders"),
        ((ck, str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o", str(tmp_path / "o.txt")), "image suffix"),
        ((str(tmp_path / "missing.pt"), str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o",
          str(tmp_path / "o.png")), "checkpoint"),
        ((str(tmp_path / "broken.png"), str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o",
          str(tmp_path / "o.png")), "checkpoint"),
        ((ck, str(tmp_path / "dir"), str(tmp_path / "dir"), "-o", str(tmp_path / "od")), "no image pairs"),
    ]
    for args, msg in cases:
        rc, err = run(*args)
        assert rc != 0 and msg in err, (args, err)
    assert not (tmp_path / "o.png").exists()


def test_cli_folder_with_bad_pair_reports_it(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(4)
    for d in ("ir", "vi"):
        (tmp_path / d).mkdir()
    write_image(tmp_path / "ir" / "good.png", rng.random((H, W)))
    write_image(tmp_path / "vi" / "good.png", rng.random((H, W)))
    write_image(tmp_path / "ir" / "bad.png", rng.random((H, W)))
    write_image(tmp_path / "vi" / "bad.png", rng.random((H + 1, W)))
    rc = cli.main(["fuse", "--checkpoint", str(checkpoint), str(tmp_path / "ir"), str(tmp_path / "vi"),
                   "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and "bad: IR and visible sizes differ" in err
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fuse_on_cuda_matches_cpu(checkpoint):
    rng = np.random.default_rng(5)
    ir, vis = _images(rng, colour=False)
    cpu = fuse_pair(load_checkpoint(checkpoint), ir, vis)
    gpu = fuse_pair(load_checkpoint(checkpoint, map_location="cuda"), ir, vis)
    np.testing.assert_allclose(cpu["fused"], gpu["fused"], atol=1e-3)
