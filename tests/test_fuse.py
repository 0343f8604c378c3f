"""`bsr fuse` and the fuse_pair API: grey and colour, odd sizes, folders, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bsr import cli
from bsr.checkpoint import load_checkpoint, save_checkpoint
from bsr.fuse import flow_to_rgb, fuse_pair
from bsr.io import read_image, rgb_to_ycbcr, write_image, ycbcr_to_rgb
from bsr.model import BSR, model_config
from bsr.training import TrainConfig

H, W = 37, 53


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = BSR(model_config("quick"))
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_checkpoint(path, model, TrainConfig(), step=0, phase=1)
    return path


def _write_pair(folder, ir, vis):
    """``ir.png`` and ``vis.png`` in ``folder``; returns their paths as strings."""
    write_image(folder / "ir.png", ir)
    write_image(folder / "vis.png", vis)
    return str(folder / "ir.png"), str(folder / "vis.png")


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
    _write_pair(tmp_path, ir, vis)
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


def test_cli_outputs_are_all_or_nothing(tmp_path, checkpoint, capsys, monkeypatch):
    """An output that cannot be written is refused before any work, in one line naming it; a write that
    fails midway leaves none of the pair's outputs and names the output, not a temporary file."""
    from bsr import fuse

    rng = np.random.default_rng(5)
    ir, vis = _write_pair(tmp_path, rng.random((H, W)), rng.random((H, W)))
    base = ["fuse", "--checkpoint", str(checkpoint), ir, vis, "--save-flow", "--save-flow-vis"]
    (tmp_path / "f_flow.npz").mkdir()
    assert cli.main([*base, "-o", str(tmp_path / "f.png")]) == 1
    err = capsys.readouterr().err
    assert "f_flow.npz is a folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.png").exists()
    for d in ("ir", "vi"):
        (tmp_path / d).mkdir()
        write_image(tmp_path / d / "a.png", rng.random((H, W)))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "flow").write_text("a file where the flow folder goes")
    assert cli.main([*base[:3], str(tmp_path / "ir"), str(tmp_path / "vi"), "--save-flow",
                     "-o", str(tmp_path / "o")]) == 1
    assert "o/flow exists and is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "o" / "a.png").exists()

    def full_disk(path, **arrays):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(fuse, "save_npz", full_disk)
    assert cli.main([*base, "-o", str(tmp_path / "g.png")]) == 1
    err = capsys.readouterr().err
    assert "could not write the outputs of" in err and "g.png: No space left on device" in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("g", ".g"))) == []
    assert cli.main([*base, "-o", str(tmp_path / "g.png"), "--device", "bogus"]) == 1
    assert "unknown device 'bogus'" in capsys.readouterr().err


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


# ----------------------------------------------------------------------------- default model, --method, tiling

def _shipped_weights():
    from bsr import pretrained

    try:
        return pretrained.weights_path()
    except (FileNotFoundError, ValueError):
        return None


def _textured(rng, h, w, colour=False, shift=(2, 3)):
    """A smooth random scene; the IR is the inverted scene shifted by ``shift`` px."""
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.random((h, w)), 2)
    base = ((base - base.min()) / (base.max() - base.min())).astype(np.float32)
    ir = np.roll(1.0 - base, shift, (0, 1)).astype(np.float32)
    vis = np.stack((base, base ** 2, np.sqrt(base)), -1) if colour else base
    return ir, vis.astype(np.float32)


def _busy_model(global_stage=False, seed=0):
    """A quick BSR whose U-Net head gives visible (non-zero) fields."""
    torch.manual_seed(seed)
    model = BSR(model_config("quick", **({"global": {"method": "ecc", "max_side": 640}} if global_stage else {})))
    with torch.no_grad():
        model.unet.head.weight.normal_(0.0, 0.05)
    return model.eval()


@pytest.fixture
def fake_pretrained(monkeypatch):
    """``bsr.load_pretrained`` returning a small random BSR (no weights file needed)."""
    import bsr

    calls = []

    def load(name=None, map_location="cpu"):
        calls.append(map_location)
        torch.manual_seed(0)
        return BSR().eval()

    monkeypatch.setattr(bsr, "load_pretrained", load)
    return calls


def test_cli_default_model_is_the_shipped_one(tmp_path, fake_pretrained):
    rng = np.random.default_rng(6)
    ir, vis = _images(rng, colour=True)
    _write_pair(tmp_path, ir, vis)
    out = tmp_path / "fused.png"
    assert cli.main(["fuse", str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o", str(out),
                     "--save-flow", "--device", "cpu"]) == 0
    assert len(fake_pretrained) == 1
    assert read_image(out).shape == (H, W, 3) and (tmp_path / "fused_flow.npz").is_file()
    (tmp_path / "ir_d").mkdir()
    (tmp_path / "vi_d").mkdir()
    write_image(tmp_path / "ir_d" / "x.png", ir)
    write_image(tmp_path / "vi_d" / "x.png", vis)
    assert cli.main(["fuse", str(tmp_path / "ir_d"), str(tmp_path / "vi_d"), "-o", str(tmp_path / "od")]) == 0
    assert len(fake_pretrained) == 2 and (tmp_path / "od" / "x.png").is_file()


def test_cli_default_model_missing_weights_is_one_line(tmp_path, monkeypatch, capsys):
    import bsr

    def load(name=None, map_location="cpu"):
        raise FileNotFoundError("the weights of pretrained model 'roadscene' are missing (x); reinstall the package")

    monkeypatch.setattr(bsr, "load_pretrained", load)
    rng = np.random.default_rng(7)
    write_image(tmp_path / "ir.png", rng.random((H, W)))
    write_image(tmp_path / "vis.png", rng.random((H, W)))
    rc = cli.main(["fuse", str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "weights" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(_shipped_weights() is None, reason="the shipped weights (bsr/weights/bsr_roadscene.pt) "
                                                       "are missing from this checkout")
def test_cli_real_default_model(tmp_path):
    """The shipped model, whole and tiled: it finds the scene's (3, 2) px shift (x, y) and the two runs agree."""
    rng = np.random.default_rng(8)
    ir, vis = _textured(rng, 100, 150, colour=True)       # ir rolled by 2 rows and 3 columns
    _write_pair(tmp_path, ir, vis)
    flows = []
    for extra, name in (([], "whole.png"), (["--tile", "64", "--tile-overlap", "16"], "tiled.png")):
        out = tmp_path / name
        assert cli.main(["fuse", str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o", str(out),
                         "--save-registered", "--save-flow", "--device", "cpu", *extra]) == 0
        assert read_image(out).shape == (100, 150, 3)
        assert read_image(tmp_path / f"{out.stem}_ir_registered.png").shape == (100, 150)
        with np.load(tmp_path / f"{out.stem}_flow.npz") as z:
            flows.append(z["flow"])
    inner = flows[0][:, 10:-10, 10:-10]
    assert np.abs(np.median(inner, axis=(1, 2)) - [3.0, 2.0]).max() < 0.5, np.median(inner, axis=(1, 2))
    np.testing.assert_allclose(flows[1], flows[0], atol=1e-3)


@pytest.mark.parametrize("colour", [False, True], ids=["grey", "colour"])
def test_cli_method(tmp_path, colour):
    rng = np.random.default_rng(9)
    ir, vis = _textured(rng, 64, 80, colour=colour)
    _write_pair(tmp_path, ir, vis)
    out = tmp_path / "o" / "f.png"
    assert cli.main(["fuse", "--method", "ECC + GFF", str(tmp_path / "ir.png"), str(tmp_path / "vis.png"),
                     "-o", str(out), "--save-registered", "--save-flow", "--save-flow-vis"]) == 0
    fused = read_image(out)
    assert fused.shape == ((64, 80, 3) if colour else (64, 80))
    with np.load(tmp_path / "o" / "f_flow.npz") as z:
        flow = z["flow"]
    assert flow.shape == (2, 64, 80) and np.abs(flow).max() > 0.5            # ECC found the shift
    assert read_image(tmp_path / "o" / "f_ir_registered.png").shape == (64, 80)
    assert (tmp_path / "o" / "f_flow.png").is_file()


def test_fuse_pair_method_matches_baselines():
    from bsr.baselines import register_then_fuse
    from bsr.warp import warp

    rng = np.random.default_rng(10)
    ir, vis = _textured(rng, 48, 60, colour=True)
    res = fuse_pair("phase + LP", ir, vis)
    vis_y = torch.from_numpy(rgb_to_ycbcr(vis)[..., 0])[None, None]
    t = torch.from_numpy(ir)[None, None]
    fused, field = register_then_fuse("phase", "LP", t, vis_y)
    np.testing.assert_allclose(res["fused_y"], fused[0, 0].clamp(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(res["flow"], field[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(res["ir_registered"], warp(t, field.float())[0, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(res["fused"], ycbcr_to_rgb(np.concatenate(
        (res["fused_y"][..., None], rgb_to_ycbcr(vis)[..., 1:]), -1)), atol=1e-6)
    assert fuse_pair("none + average", ir, vis)["flow"].max() == 0
    assert np.array_equal(fuse_pair("ecc+gff", ir, vis)["fused"], fuse_pair("ECC + GFF", ir, vis)["fused"])


def test_cli_method_and_tile_errors(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(11)
    write_image(tmp_path / "ir.png", rng.random((H, W)))
    write_image(tmp_path / "vis.png", rng.random((H, W)))
    pair = [str(tmp_path / "ir.png"), str(tmp_path / "vis.png"), "-o", str(tmp_path / "o.png")]
    cases = [
        (["--method", "ECC + GFF", "--checkpoint", str(checkpoint)], "exclude each other"),
        (["--method", "SIFT + GFF"], "unknown method 'SIFT + GFF'; choose from: none + average"),
        (["--checkpoint", str(checkpoint), "--tile", "16"], "at least 32"),
        (["--checkpoint", str(checkpoint), "--tile", "-1"], ">= 0"),
        (["--checkpoint", str(checkpoint), "--tile", "64", "--tile-overlap", "40"], "at most half"),
    ]
    for args, msg in cases:
        rc = cli.main(["fuse", *args, *pair])
        err = capsys.readouterr().err
        assert rc == 1 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "o.png").exists()
    with pytest.raises(ValueError, match="unknown method"):
        fuse_pair("nope", rng.random((H, W)), rng.random((H, W)))


def test_tile_helpers():
    from bsr import tiles
    from bsr.global_stage import affine_field
    from bsr.warp import warp

    for n, tile, ov in ((400, 128, 32), (129, 128, 32), (129, 128, 64), (1000, 256, 64), (6000, 1024, 64),
                        (300, 128, 0), (128, 128, 32)):
        starts, size = tiles.tile_plan(n, tile, ov)
        assert size <= tile and starts[0] == 0 and starts[-1] + size == n
        assert len(starts) == (1 if n <= tile else -(-(n - ov) // (tile - ov)))     # fewest tiles
        assert all(b - a <= size - ov for a, b in zip(starts, starts[1:]))           # overlap >= ov
        total = np.zeros(n)
        for a, w in zip(starts, tiles.axis_weights(n, starts, size, ov)):
            assert (w > 0).all()
            total[a:a + size] += w.numpy()
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
    torch.manual_seed(0)
    img, flow = torch.rand(1, 1, 30, 41), torch.randn(1, 2, 30, 41) * 4
    assert torch.equal(tiles.warp_strips(img, flow), warp(img, flow))
    m = torch.tensor([[[1.02, 0.03, 3.5], [-0.02, 0.99, -2.0]]], dtype=torch.float64)
    np.testing.assert_allclose(tiles.affine_rows(m, 5, 17, 41).numpy(), affine_field(m, 30, 41)[..., 5:17, :].numpy(),
                               atol=1e-5)


@pytest.mark.parametrize("global_stage", [False, True], ids=["local", "global-local"])
def test_tiling_within_one_tile_equals_whole_image(global_stage):
    from bsr import tiles

    model = _busy_model(global_stage)
    rng = np.random.default_rng(12)
    ir, vis = _textured(rng, H, W, colour=True)
    whole = fuse_pair(model, ir, vis, tile=0)
    for tile in (64, W):                                        # image within one tile: the whole-image path
        res = fuse_pair(model, ir, vis, tile=tile, overlap=16)
        for k in whole:
            assert np.array_equal(res[k], whole[k]), (tile, k)
    # the tiling machinery with a single tile reproduces model.fuse too
    t, v = torch.from_numpy(ir)[None, None], torch.from_numpy(vis.mean(-1))[None, None]
    with torch.no_grad():
        ref = model.fuse(t, v)
        got = tiles.fuse_tiled(model, t, v, tile=64, overlap=16)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("global_stage", [False, True], ids=["local", "global-local"])
def test_tiled_agrees_with_whole_image(global_stage):
    model = _busy_model(global_stage)
    rng = np.random.default_rng(13)
    ir, vis = _textured(rng, 300, 400, colour=True, shift=(3, -4))
    whole = fuse_pair(model, ir, vis, tile=0)
    tiled = fuse_pair(model, ir, vis, tile=128, overlap=32)
    assert np.abs(whole["flow"]).max() > 0.05                          # a field worth comparing
    np.testing.assert_allclose(tiled["flow"], whole["flow"], atol=0.05)                 # px
    assert np.abs(tiled["flow"] - whole["flow"]).mean() < 2e-3
    np.testing.assert_allclose(tiled["ir_registered"], whole["ir_registered"], atol=0.01)
    np.testing.assert_allclose(tiled["fused"], whole["fused"], atol=0.01)
    assert np.abs(tiled["fused_y"] - whole["fused_y"]).mean() < 1e-3
    if global_stage:                      # ECC found the shift: ir(p + (-4, 3)) = scene(p)
        assert np.abs(whole["flow"][0].mean() + 4) < 0.5 and np.abs(whole["flow"][1].mean() - 3) < 0.5
    # the registered IR is the IR warped by the returned field
    from bsr.warp import warp
    reg = warp(torch.from_numpy(ir)[None, None], torch.from_numpy(tiled["flow"])[None])[0, 0].numpy()
    np.testing.assert_allclose(tiled["ir_registered"], reg, atol=1e-6)


def test_cli_tiled(tmp_path, checkpoint):
    rng = np.random.default_rng(14)
    ir, vis = _images(rng, colour=True)
    _write_pair(tmp_path, ir, vis)
    out = tmp_path / "f.png"
    assert cli.main(["fuse", "--checkpoint", str(checkpoint), str(tmp_path / "ir.png"), str(tmp_path / "vis.png"),
                     "-o", str(out), "--tile", "32", "--tile-overlap", "8", "--save-flow"]) == 0
    assert read_image(out).shape == (H, W, 3)
    with np.load(tmp_path / "f_flow.npz") as z:
        assert z["flow"].shape == (2, H, W)


def test_strip_conversions_match_whole_image(tmp_path, monkeypatch):
    """Colour conversion and the written outputs, done by strips, equal the whole-image ones exactly."""
    from bsr import fuse

    rng = np.random.default_rng(15)
    img = rng.random((50, 33, 3)).astype(np.float32)
    ir = (rng.random((50, 33)) * 1.2 - 0.1).astype(np.float32)
    flow = (rng.standard_normal((2, 50, 33)) * 3).astype(np.float32)
    ycc = rgb_to_ycbcr(img)
    write_image(tmp_path / "ref_f.png", img)
    write_image(tmp_path / "ref_r.png", np.clip(ir, 0, 1))
    write_image(tmp_path / "ref_v.png", flow_to_rgb(flow))
    monkeypatch.setattr(fuse, "strip_rows", lambda w: 7)
    y, cbcr = fuse._to_grey(img, "vis")
    assert np.array_equal(y, ycc[..., 0]) and np.array_equal(cbcr, ycc[..., 1:])
    assert np.array_equal(fuse._restore_colour(y, cbcr), ycbcr_to_rgb(ycc))
    fuse._write_outputs({"fused": img, "ir_registered": ir, "flow": flow}, tmp_path / "f.png", tmp_path / "r.png",
                        tmp_path / "fl.npz", tmp_path / "v.png")
    for a, b in (("f", "ref_f"), ("r", "ref_r"), ("v", "ref_v")):
        assert np.array_equal(read_image(tmp_path / f"{a}.png"), read_image(tmp_path / f"{b}.png")), a
    with np.load(tmp_path / "fl.npz") as z:
        assert np.array_equal(z["flow"], flow)
    zero = np.zeros_like(flow)
    fuse._write_outputs({"fused": img, "ir_registered": ir, "flow": zero}, tmp_path / "f.png", None, None,
                        tmp_path / "v0.png")
    assert (read_image(tmp_path / "v0.png") == 1).all()


def test_cli_refine(tmp_path, capsys):
    """``--refine`` fits the field to the pair: a model whose own field is zero then finds the (3, 2) px shift.
    A model saved with the refinement on (as the shipped one) refines by default; ``--no-refine`` skips it."""
    model = BSR(model_config("quick", local=False))
    ck = save_checkpoint(tmp_path / "zero.pt", model, TrainConfig(), step=0, phase=1)
    model.set_refine(True)
    ck_on = save_checkpoint(tmp_path / "zero_refine.pt", model, TrainConfig(), step=0, phase=1)
    rng = np.random.default_rng(15)
    ir, vis = _textured(rng, 64, 80)
    _write_pair(tmp_path, ir, vis)
    flows = []
    for path, extra in ((ck, []), (ck, ["--refine"]), (ck_on, []), (ck_on, ["--no-refine"])):
        out = tmp_path / f"f{len(flows)}.png"
        assert cli.main(["fuse", "--checkpoint", str(path), str(tmp_path / "ir.png"), str(tmp_path / "vis.png"),
                         "-o", str(out), "--save-flow", *extra]) == 0
        with np.load(tmp_path / f"{out.stem}_flow.npz") as z:
            flows.append(z["flow"])
    for f in (flows[0], flows[3]):
        assert np.abs(f).max() == 0.0
    for f in (flows[1], flows[2]):
        inner = np.median(f[:, 8:-8, 8:-8], axis=(1, 2))
        assert np.abs(inner - [3.0, 2.0]).max() < 0.5, inner
    for flag in ("--refine", "--no-refine"):
        rc = cli.main(["fuse", "--method", "ECC + GFF", flag, str(tmp_path / "ir.png"), str(tmp_path / "vis.png"),
                       "-o", str(tmp_path / "m.png")])
        err = capsys.readouterr().err
        assert rc == 1 and flag in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "m.png").exists()


def test_tiled_refinement_runs_on_the_whole_image():
    """With the model option ``refine`` the tiled path refines the blended field on the whole image,
    as the untiled path does: the two agree as closely as their fields before refinement."""
    model = BSR(model_config("quick", local=False, refine={"steps": 30, "grid": 8}))
    rng = np.random.default_rng(16)
    ir, vis = _textured(rng, 150, 200, shift=(2, -3))
    whole = fuse_pair(model, ir, vis, tile=0)
    tiled = fuse_pair(model, ir, vis, tile=96, overlap=32)
    assert np.abs(np.median(whole["flow"][:, 10:-10, 10:-10], axis=(1, 2)) - [-3.0, 2.0]).max() < 0.5
    np.testing.assert_allclose(tiled["flow"], whole["flow"], atol=1e-4)
