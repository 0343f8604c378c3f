"""Outside methods' outputs: discovery, loading with checks, scoring (bsr.study.external)."""

from __future__ import annotations

import numpy as np
import pytest

from bsr.io import write_image
from bsr.study.external import (ExternalOutputError, external_path, list_external_methods, load_external,
                                load_pairs, score_external)

NAMES = ["a_01.jpg", "b_02.jpg", "c_03.jpg"]
SHAPE = (48, 56)


def _img(seed, shape=SHAPE):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    base = 0.5 + 0.3 * np.sin(x / 3.0 + seed) * np.cos(y / 4.0)
    return np.clip(base + 0.05 * rng.standard_normal(shape), 0, 1).astype(np.float32)


@pytest.fixture
def tree(tmp_path):
    """root/<method>/<dataset>/<stem>.png for two methods; an empty third; data root with ir/vi."""
    root = tmp_path / "external"
    for k, n in enumerate(NAMES):
        stem = n.rsplit(".", 1)[0]
        write_image(root / "MethodA" / "roadscene" / f"{stem}.png", _img(k))
        colour = np.stack([_img(k + 10), _img(k + 20), _img(k + 30)], axis=-1)
        write_image(root / "MethodB" / "roadscene" / f"{stem}.png", colour)
    (root / "Empty" / "roadscene").mkdir(parents=True)
    write_image(root / "MethodA" / "tno" / "x.png", _img(5))
    data = tmp_path / "data" / "roadscene"
    for k, n in enumerate(NAMES):
        write_image(data / "ir" / n, _img(k + 40))
        write_image(data / "vi" / n, _img(k + 50))
    (data / "splits").mkdir()
    (data / "splits" / "test.txt").write_text("\n".join(NAMES) + "\n")
    return root, tmp_path / "data"


def test_list_methods(tree, tmp_path):
    root, _ = tree
    assert list_external_methods(root, "roadscene") == ["MethodA", "MethodB"]
    assert list_external_methods(root, "tno") == ["MethodA"]
    assert list_external_methods(root, "drone") == []
    assert list_external_methods(root) == ["MethodA", "MethodB"]
    assert list_external_methods(tmp_path / "nowhere", "roadscene") == []


def test_load_grey_and_colour(tree):
    root, _ = tree
    got = load_external(root, "MethodA", "roadscene", NAMES, expected_shapes=SHAPE)
    assert list(got) == NAMES
    for k, n in enumerate(NAMES):
        assert got[n].shape == SHAPE and got[n].dtype == np.float32
        assert np.abs(got[n] - _img(k)).max() <= 0.5 / 255 + 1e-6    # 8-bit PNG round trip
    col = load_external(root, "MethodB", "roadscene", NAMES)
    assert all(v.ndim == 2 and 0 <= v.min() and v.max() <= 1 for v in col.values())
    # stems work as names too
    assert set(load_external(root, "MethodA", "roadscene", ["a_01"])) == {"a_01"}


def test_other_suffix_is_accepted(tree):
    root, _ = tree
    write_image(root / "MethodC" / "roadscene" / "a_01.bmp", _img(0))
    p = external_path(root, "MethodC", "roadscene", "a_01.jpg")
    assert p is not None and p.suffix == ".bmp"
    assert external_path(root, "MethodC", "roadscene", "b_02.jpg") is None


def test_missing_files_are_listed(tree):
    root, _ = tree
    (root / "MethodA" / "roadscene" / "b_02.png").unlink()
    (root / "MethodA" / "roadscene" / "c_03.png").unlink()
    with pytest.raises(ExternalOutputError) as e:
        load_external(root, "MethodA", "roadscene", NAMES)
    msg = str(e.value)
    assert "2 of 3" in msg and "b_02" in msg and "c_03" in msg and "a_01" not in msg
    with pytest.raises(ExternalOutputError, match="3 of 3"):
        load_external(root, "Empty", "roadscene", NAMES)


def test_wrong_size_is_reported(tree):
    root, _ = tree
    write_image(root / "MethodA" / "roadscene" / "b_02.png", _img(1, (40, 56)))
    shapes = {n: SHAPE for n in NAMES}
    with pytest.raises(ExternalOutputError) as e:
        load_external(root, "MethodA", "roadscene", NAMES, expected_shapes=shapes)
    msg = str(e.value)
    assert "b_02.png" in msg and "48x56" in msg and "40x56" in msg and "a_01" not in msg
    # no check without expected shapes
    assert load_external(root, "MethodA", "roadscene", NAMES)["b_02.jpg"].shape == (40, 56)


def test_score_external(tree):
    root, data = tree
    df = score_external(root, "MethodA", "roadscene", data_root=data)
    assert list(df["name"]) == NAMES
    for col in ("Qabf", "VIFF", "SF", "AG", "MG", "EI", "SD", "EN"):
        assert col in df.columns and np.isfinite(df[col]).all()
    assert (df["method"] == "MethodA").all() and (df["dataset"] == "roadscene").all()
    # explicit pairs: fusing the IR with itself as the output gives perfect gradient transfer
    pairs = load_pairs(data, "roadscene", NAMES)
    for n, (ir, _) in pairs.items():
        write_image(root / "Copy" / "roadscene" / f"{n[:-4]}.png", ir)
    same = score_external(root, "Copy", "roadscene", pairs={n: (ir, ir) for n, (ir, _) in pairs.items()})
    assert (same["Qabf"] > 0.9).all()
    sub = score_external(root, "MethodA", "roadscene", pairs=pairs, names=NAMES[:1])
    assert len(sub) == 1
    with pytest.raises(ValueError):
        score_external(root, "MethodA", "roadscene")


def test_score_external_size_mismatch(tree):
    root, data = tree
    write_image(root / "MethodA" / "roadscene" / "c_03.png", _img(1, (48, 50)))
    with pytest.raises(ExternalOutputError, match="c_03.png"):
        score_external(root, "MethodA", "roadscene", data_root=data)
