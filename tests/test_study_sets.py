"""bsr.study.sets: where a method's images go, and the qualitative rows read back from there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bsr.datasets.readers import Pair
from bsr.io import write_image
from bsr.study import sets


def test_image_path_convention(tmp_path):
    assert sets.image_path(tmp_path, "B-SR (this package)", "s5", "p1") == tmp_path / "B-SR(thispackage)" / "s5" / "p1.png"
    assert sets.image_path("x", "ECC + GFF", "s", "n", "_registered") == Path("x/ECC+GFF/s/n_registered.png")


def test_qualitative_rows_read_back_what_exists(tmp_path):
    rng = np.random.default_rng(0)
    img = lambda: rng.random((16, 24)).astype(np.float32)  # noqa: E731
    data = {"a": [Pair("p0", img(), img()), Pair("p1", img(), img())], "b": [Pair("q0", img(), img())]}
    fused = img()
    write_image(sets.image_path(tmp_path, "M one", "a", "p0"), fused)
    rows = sets.qualitative_rows(data, tmp_path, ["M one", "absent"], n=1)
    assert [r["title"] for r in rows] == ["a\np0", "b\nq0"]
    assert set(rows[0]) == {"title", "IR (input)", "VIS", "M one"} and "M one" not in rows[1]
    assert np.allclose(rows[0]["M one"], fused, atol=1 / 255)
    titled = sets.qualitative_rows(data, tmp_path, ["M one"], n=2, titles={"a": "5 px", "b": "10 px"})
    assert [r["title"] for r in titled] == ["5 px\np0", "5 px\np1", "10 px\nq0"]


def test_checkpoint_paths_lists_the_missing(tmp_path):
    (tmp_path / "run" / "seed0").mkdir(parents=True)
    (tmp_path / "run" / "seed0" / "final.pt").write_bytes(b"")
    assert sets.checkpoint_paths(tmp_path, "run", [0]) == [tmp_path / "run" / "seed0" / "final.pt"]
    with pytest.raises(FileNotFoundError, match="seed1"):
        sets.checkpoint_paths(tmp_path, "run", [0, 1])


def test_a_pretrained_role_is_the_shipped_file_checked():
    from bsr.pretrained import weights_path

    assert sets.checkpoint_paths("unused", "pretrained:roadscene", [0, 1, 2]) == [weights_path("roadscene")]
    with pytest.raises(ValueError, match="unknown pretrained model"):
        sets.checkpoint_paths("unused", "pretrained:nosuch", [0])


def test_images_of_a_several_seed_method_are_where_qualitative_rows_reads(tmp_path):
    """With two seeds, the first seed's fused images are written under the method's
    own name, so the qualitative figures show them."""
    from bsr.study.scoring import score

    rng = np.random.default_rng(1)
    img = lambda: rng.random((48, 56)).astype(np.float32)  # noqa: E731
    data = {"s": [Pair("p0", img(), img())]}
    def fuse(ir, vis):
        return {"fused": (ir + vis) / 2}
    got = score(data, {"Mean fusion": [fuse, fuse]}, tmp_path, progress=False)
    assert sorted(set(got[got["method"] == "Mean fusion"]["seed"])) == [0, 1]
    assert sets.image_path(tmp_path, "Mean fusion", "s", "p0").is_file()
    rows = sets.qualitative_rows(data, tmp_path, ["Mean fusion"], n=1)
    assert "Mean fusion" in rows[0]
