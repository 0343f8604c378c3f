"""bsr.datasets.readers / bsr.io / bsr.datasets.synthetic: loaders on real and generated data, and every bad-input case."""

import numpy as np
import pytest
from PIL import Image

from bsr import io
from bsr.datasets.readers import DataError, load_pairs
from conftest import need_dataset


def save(path, arr, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


def make_root(tmp_path, names=("a", "b"), size=(40, 48), colour=True):
    rng = np.random.default_rng(0)
    for n in names:
        save(tmp_path / "ds" / "ir" / f"{n}.png", rng.integers(0, 255, size, dtype=np.uint8))
        vis = rng.integers(0, 255, (*size, 3) if colour else size, dtype=np.uint8)
        save(tmp_path / "ds" / "vi" / f"{n}.png", vis)
    return tmp_path


# ----------------------------------------------------------------- real datasets

def test_roadscene_loader():
    root = need_dataset("roadscene").parent
    pairs = load_pairs("roadscene", root=root)
    assert len(pairs) == 221
    test = load_pairs("roadscene", root=root, split="test")
    assert len(test) == 50 and test[0].name == "FLIR_00211"
    p = test[0]
    assert p.ir.ndim == 2 and p.vis.shape == p.ir.shape and p.vis_cbcr.shape == (*p.ir.shape, 2)
    assert p.ir.dtype == np.float32 and 0 <= p.ir.min() and p.ir.max() <= 1


def test_tno_three_equal_channels_become_one():
    root = need_dataset("tno").parent
    pairs = load_pairs("tno", root=root)
    assert len(pairs) == 25
    assert all(p.ir.ndim == 2 and p.vis.ndim == 2 and p.vis_cbcr is None for p in pairs)


def test_m3fd_loader():
    root = need_dataset("m3fd").parent
    pairs = load_pairs("m3fd", root=root, limit=2)
    assert len(pairs) == 2 and pairs[0].ir.shape == (768, 1024) and pairs[0].vis_cbcr is not None


# ----------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_split_disjoint():
    a = load_pairs("synthetic", synthetic={"n": 2, "size": [64, 80]})
    b = load_pairs("synthetic", synthetic={"n": 2, "size": [64, 80]})
    t = load_pairs("synthetic", split="test", synthetic={"n": 2, "size": [64, 80]})
    assert np.array_equal(a[0].ir, b[0].ir) and np.array_equal(a[1].vis, b[1].vis)
    assert not np.array_equal(a[0].ir, t[0].ir)
    assert a[0].ir.shape == (64, 80) and a[0].vis_cbcr.shape == (64, 80, 2)


def test_synthetic_behaves_like_a_cross_modal_pair():
    from bsr.datasets.synthetic import generate_pair

    for seed in range(3):
        p = generate_pair(seed, (128, 160))
        y = p.vis_y
        sky = p.labels == 0
        # the sky is cold: darker than the ground in IR (the visible sky is bright by day)
        assert p.ir[sky].mean() < p.ir[~sky].mean()
        # related but not the same image
        r = np.corrcoef(p.ir.ravel(), y.ravel())[0, 1]
        assert abs(r) < 0.95
        assert p.ir.std() > 0.1 and y.std() > 0.02
    # people are the warmest things in the scene (top IR percentile lies on them or hot spots)
    assert p.ir[p.labels >= 10].max() > np.percentile(p.ir, 99)


def test_synthetic_size_error():
    from bsr.datasets.synthetic import generate_pair

    with pytest.raises(ValueError, match="at least 32"):
        generate_pair(0, (16, 64))


# ----------------------------------------------------------------- layouts

def test_generic_folder_and_split(tmp_path):
    root = make_root(tmp_path, names=("x1", "x2", "x3"))
    (root / "ds" / "splits").mkdir()
    (root / "ds" / "splits" / "test.txt").write_text("x2.png\nx3\n")
    assert [p.name for p in load_pairs("ds", root=root)] == ["x1", "x2", "x3"]
    assert [p.name for p in load_pairs("ds", root=root, split="test")] == ["x2", "x3"]
    with pytest.raises(DataError, match="train.txt does not exist"):
        load_pairs("ds", root=root, split="train")


def test_dronevehicle_layout_crops_white_border(tmp_path):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for folder in (f"{split}img", f"{split}imgr"):
            img = np.full((712, 840, 3), 255, np.uint8)
            img[100:-100, 100:-100] = rng.integers(0, 200, (512, 640, 3), dtype=np.uint8)
            save(tmp_path / "dronevehicle" / split / folder / "00001.jpg", img)
    pairs = load_pairs("dronevehicle", root=tmp_path)
    assert sorted(p.name for p in pairs) == ["test/00001", "train/00001"]
    assert all(p.ir.shape == (512, 640) for p in pairs)
    assert all(p.ir[:, :3].mean() < 0.9 and p.ir[:3].mean() < 0.9 for p in pairs)  # no white border left
    assert len(load_pairs("dronevehicle", root=tmp_path, split="test")) == 1


# ----------------------------------------------------------------- bad input

def test_missing_root_says_how_to_set_it(monkeypatch, tmp_path):
    monkeypatch.delenv("BSR_DATA", raising=False)
    with pytest.raises(DataError, match="BSR_DATA"):
        load_pairs("roadscene")
    with pytest.raises(DataError, match="is not a folder"):
        load_pairs("roadscene", root=tmp_path / "nope")
    monkeypatch.setenv("BSR_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"looked for .*roadscene"):
        load_pairs("roadscene")


def test_unpaired_files_are_listed(tmp_path):
    root = make_root(tmp_path)
    save(root / "ds" / "ir" / "lonely.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(DataError, match=r"only in .*ir: lonely.png"):
        load_pairs("ds", root=root)
    assert len(load_pairs("ds", root=root, strict=False)) == 2


def test_datasets_command_prints_whole_errors(tmp_path, capsys):
    """`bsr datasets` shows every line of a dataset's error (the list of unpaired
    images too), next to the usable datasets, and exits non-zero."""
    from bsr import cli

    root = make_root(tmp_path / "root")
    make_root(tmp_path / "other")
    (tmp_path / "other" / "ds").rename(root / "good")
    save(root / "ds" / "ir" / "lonely.png", np.zeros((40, 48), np.uint8))
    save(root / "ds" / "vi" / "alone.png", np.zeros((40, 48, 3), np.uint8))
    assert cli.main(["datasets", "--root", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ds") and "unusable: unpaired images:" in out[0]
    assert any(line.strip().startswith("only in") and line.endswith("ir: lonely.png") for line in out)
    assert any(line.strip().startswith("only in") and line.endswith("vi: alone.png") for line in out)
    assert out[-1].startswith("good") and "2 pairs" in out[-1]


def test_datasets_command_empty_root_is_an_error(tmp_path, capsys, monkeypatch):
    from bsr import cli

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no datasets here")
    assert cli.main(["datasets", "--root", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "no datasets found" in err and str(empty) in err and "--root" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setenv("BSR_DATA", str(empty))
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err
    assert str(empty) in err and "BSR_DATA" in err


def test_size_mismatch_lists_pairs(tmp_path):
    root = make_root(tmp_path)
    save(root / "ds" / "vi" / "b.png", np.zeros((41, 48, 3), np.uint8))
    with pytest.raises(DataError, match=r"b: IR 48x40, VIS 48x41"):
        load_pairs("ds", root=root)


def test_unreadable_file_named_with_reason(tmp_path):
    root = make_root(tmp_path)
    (root / "ds" / "ir" / "a.png").write_text("not an image")
    with pytest.raises(DataError, match=r"a.png: not a readable image"):
        load_pairs("ds", root=root)


def test_sixteen_bit_is_scaled(tmp_path):
    arr = (np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 30)
    save(tmp_path / "x.png", arr)
    img = io.read_image(tmp_path / "x.png")
    assert img.dtype == np.float32 and img.max() == pytest.approx(arr.max() / 65535, rel=1e-6)


def test_rgba(tmp_path):
    rgba = np.full((10, 12, 4), 200, np.uint8)
    rgba[..., 3] = 255
    save(tmp_path / "opaque.png", rgba)
    assert io.read_image(tmp_path / "opaque.png").shape == (10, 12)  # equal RGB -> grey
    rgba[0, 0, 3] = 10
    save(tmp_path / "transparent.png", rgba)
    with pytest.raises(io.ImageReadError, match="transparent alpha"):
        io.read_image(tmp_path / "transparent.png")


def test_ycbcr_round_trip():
    rgb = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)
    back = io.ycbcr_to_rgb(io.rgb_to_ycbcr(rgb))
    assert np.abs(back - rgb).max() < 2e-3
    grey = np.full((2, 2, 3), 0.4, np.float32)
    assert np.allclose(io.rgb_to_ycbcr(grey)[..., 1:], 0.5, atol=1e-6)


def test_write_image_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    io.write_image(target, np.zeros((4, 4), np.float32))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError):
        io.write_image(target, np.ones((4, 4), np.float32))
    assert io.read_image(target).max() == 0.0          # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp left


# ----------------------------------------------------------------- training crops
