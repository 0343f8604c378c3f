"""The shipped model (bsr.load_pretrained): checksum, API, and a real RoadScene pair."""

import shutil

import pytest
import torch

import bsr
from bsr import pretrained
from bsr.datasets import simulate
from bsr.model import BSR
from conftest import DEFAULT_SHARED, shared_data_root


def test_shipped_weights_load_with_their_checksum():
    path = pretrained.weights_path()
    assert path.stat().st_size < 20 * 2 ** 20
    assert pretrained.sha256(path) == pretrained.MODELS[pretrained.DEFAULT]["sha256"]
    model = bsr.load_pretrained()
    assert isinstance(model, BSR) and not model.training
    x = torch.rand(1, 1, 64, 80)
    phi_p, phi_n = model.register(x, x)
    assert phi_p.shape == phi_n.shape == (1, 2, 64, 80)


def test_the_shipped_model_refines_unless_told_not_to():
    from bsr.refine import Refiner

    assert bsr.load_pretrained().refiner == Refiner()
    assert bsr.load_pretrained(refine=False).refiner is None
    assert bsr.load_pretrained(refine={"steps": 5}).refiner == Refiner(steps=5)


def test_a_damaged_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "weights" / "bsr_roadscene.pt"
    bad.parent.mkdir()
    shutil.copy(pretrained.weights_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(pretrained, "weights_path", lambda name=None: bad)
    with pytest.raises(ValueError, match="checksum mismatch"):
        pretrained.load_pretrained()


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="unknown pretrained model"):
        bsr.load_pretrained("nosuch")


def _roadscene():
    root = shared_data_root()          # $BSR_DATA, else ../shared/datasets, as every real-data test
    if root is None or not (root / "roadscene" / "splits" / "test.txt").is_file():
        pytest.skip(f"RoadScene's test split is not under {root or DEFAULT_SHARED} "
                    f"(set BSR_DATA to the data root to run this test)")
    from bsr.datasets.readers import load_pairs

    return {p.name: p for p in load_pairs("roadscene", root=root, split="test", limit=4)}


def test_registers_a_known_shift_of_a_real_pair_within_one_pixel():
    p = _roadscene()["FLIR_00977"]
    ir = torch.from_numpy(p.ir)[None, None]
    mis, gt = simulate.shift(ir, 5.0, 0.0)
    with torch.no_grad():
        phi, _ = bsr.load_pretrained().register(mis, torch.from_numpy(p.vis)[None, None])
    epe = (phi - gt)[..., 10:-10, 10:-10].pow(2).sum(1).sqrt().mean().item()
    assert epe < 1.0, f"mean EPE {epe:.2f} px"


def test_assemble_takes_the_unet_from_a_shipped_file_and_the_auto_encoder_from_another(tmp_path):
    """A shipped file as the U-Net donor; the auto-encoder of another model file (the shipped one, changed)."""
    shipped = bsr.load_pretrained()
    ck = torch.load(pretrained.verified_path(), map_location="cpu", weights_only=True)
    key = next(k for k in ck["model"] if k.startswith("ae.") and ck["model"][k].is_floating_point())
    ck["model"][key] = ck["model"][key] + 1.0
    ae_file = tmp_path / "ae.pt"
    torch.save(ck, ae_file)
    other = BSR(shipped.config)
    other.load_state_dict(ck["model"])
    out = pretrained.assemble(pretrained.verified_path(), ae_file, tmp_path / "m.pt", shipped.config["global"],
                              local=False)
    from bsr.checkpoint import load_checkpoint

    m = load_checkpoint(out)
    assert all(torch.equal(a, b) for a, b in zip(m.unet.state_dict().values(), shipped.unet.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(m.ae.state_dict().values(), other.ae.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(m.ae.state_dict().values(), shipped.ae.state_dict().values()))
    assert m.config["global"] == shipped.config["global"] and not m.use_local


def test_assemble_sets_the_refinement(tmp_path):
    """``refine`` goes into the written file's config; without it the file has none, whatever the donors had."""
    from bsr.checkpoint import load_checkpoint
    from bsr.refine import Refiner

    g = bsr.load_pretrained().config["global"]
    on = load_checkpoint(pretrained.assemble(pretrained.verified_path(), pretrained.verified_path(), tmp_path / "a.pt",
                                             g, local=False, refine=True))
    assert on.refiner == Refiner() and on.config["refine"] == Refiner().to_config()
    off = load_checkpoint(pretrained.assemble(tmp_path / "a.pt", tmp_path / "a.pt", tmp_path / "b.pt", g, local=False))
    assert off.refiner is None


def test_the_shipped_file_is_what_assemble_writes_from_its_own_parts(tmp_path):
    """The file's bytes are a function of its contents (torch would otherwise put the name of the
    temporary file it writes into them): assembling the shipped file from itself, with its own
    settings, under another name gives its checksum back."""
    c = bsr.load_pretrained().config
    src = pretrained.verified_path()
    out = pretrained.assemble(src, src, tmp_path / "again.pt", c["global"], local=c["local"],
                              local_grid=c["local_grid"], refine=c["refine"])
    assert pretrained.sha256(out) == pretrained.MODELS[pretrained.DEFAULT]["sha256"]
