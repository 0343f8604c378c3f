"""Datasets: a data root of ``<dataset>/ir`` + ``<dataset>/vi`` folders, the
DroneVehicle layout, the embedded synthetic default and simulated test sets
(training crops: :mod:`bsr.datasets.crops`).

Data root: the ``root`` argument, else the ``BSR_DATA`` environment variable.
Under it, each dataset is a folder holding ``ir/`` and ``vi/`` with files
paired by stem (``FLIR_00006.jpg`` with ``FLIR_00006.jpg``, any image
suffix), and optionally ``splits/train.txt`` / ``splits/test.txt`` (one file
name or stem per line). RoadScene, TNO and M3FD ship in this shape; any other
folder of that shape works under its own name.

DroneVehicle (Sun et al., TCSVT 2022) is read in its published layout
``dronevehicle/<split>/<split>img`` (RGB) and ``<split>/<split>imgr`` (IR),
840 x 712 images with a 100 px white border, which is cropped away.

Images come back as float32 in [0, 1]; the visible image as its Y channel
(BT.601) plus Cb/Cr when it is colour. IR stored as three equal channels
becomes one channel.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import IMAGE_SUFFIXES, ImageReadError, read_image, rgb_to_ycbcr

__all__ = [
    "Pair", "DataError", "resolve_data_root", "dataset_dir", "list_images", "find_pairs", "read_split",
    "load_pairs", "load_simulated", "KNOWN_DATASETS",
    "DRONEVEHICLE_BORDER", "main",
]

KNOWN_DATASETS = ("roadscene", "tno", "m3fd", "dronevehicle")
DRONEVEHICLE_BORDER = 100


class DataError(ValueError):
    """A dataset is missing, incomplete or inconsistent."""


@dataclass
class Pair:
    """One IR/visible pair. ``ir``, ``vis`` (H, W) float32 in [0, 1]; ``vis_cbcr``
    (H, W, 2) when the visible image is colour. Simulated pairs also carry the
    aligned IR and the ground-truth field (2, H, W) with
    ``warp(ir, flow_gt) ~= ir_aligned``."""

    name: str
    ir: np.ndarray
    vis: np.ndarray
    vis_cbcr: np.ndarray | None = None
    ir_aligned: np.ndarray | None = None
    flow_gt: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.ir.shape


# --------------------------------------------------------------------------- roots

def resolve_data_root(root=None) -> Path:
    """The data root: ``root`` if given, else ``$BSR_DATA``; it must exist."""
    if root is None or str(root) == "":
        env = os.environ.get("BSR_DATA")
        if not env:
            raise DataError(
                "no data root: pass a root (config key `data_root`) or set the BSR_DATA environment "
                "variable to a folder holding <dataset>/ir and <dataset>/vi (see README, 'Real datasets')")
        root, origin = env, "BSR_DATA"
    else:
        origin = "the data_root setting"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root {path} (from {origin}) is not a folder")
    return path


def dataset_dir(name: str, root=None) -> Path:
    """Folder of dataset ``name`` under the data root, with a clear error if absent."""
    base = resolve_data_root(root)
    path = base / name
    if not path.is_dir():
        found = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DataError(f"dataset {name!r} not found: looked for {path}. Folders under the data root: "
                        f"{', '.join(found) or 'none'}")
    return path


def list_images(folder) -> dict[str, Path]:
    """Images of a folder by file stem (hidden files skipped); two files with one stem are an error."""
    folder = Path(folder)
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"two images share the stem {p.stem!r} in {folder}: {out[p.stem].name}, {p.name}")
            out[p.stem] = p
    return out


def find_pairs(ir_dir, vi_dir, strict: bool = True) -> list[tuple[str, Path, Path]]:
    """Pair the images of two folders by file stem, sorted by name.

    With ``strict``, files present in only one folder are an error that lists
    them; otherwise they are skipped.
    """
    ir_dir, vi_dir = Path(ir_dir), Path(vi_dir)
    for d in (ir_dir, vi_dir):
        if not d.is_dir():
            raise DataError(f"folder {d} does not exist")
    ir, vi = list_images(ir_dir), list_images(vi_dir)
    only_ir, only_vi = sorted(set(ir) - set(vi)), sorted(set(vi) - set(ir))
    if strict and (only_ir or only_vi):
        lines = []
        if only_ir:
            lines.append(f"only in {ir_dir}: {', '.join(ir[s].name for s in only_ir[:20])}"
                         + (f" (+{len(only_ir) - 20} more)" if len(only_ir) > 20 else ""))
        if only_vi:
            lines.append(f"only in {vi_dir}: {', '.join(vi[s].name for s in only_vi[:20])}"
                         + (f" (+{len(only_vi) - 20} more)" if len(only_vi) > 20 else ""))
        raise DataError("unpaired images:\n  " + "\n  ".join(lines))
    stems = sorted(set(ir) & set(vi))
    if not stems:
        raise DataError(f"no image pairs in {ir_dir} and {vi_dir}")
    return [(s, ir[s], vi[s]) for s in stems]


def read_split(ds_dir: Path, split: str) -> list[str]:
    """Stems listed in ``<ds_dir>/splits/<split>.txt``."""
    path = Path(ds_dir) / "splits" / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"split {split!r} requested but {path} does not exist")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [Path(n).stem for n in names]


def _crop_border(img: np.ndarray, border: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h <= 2 * border or w <= 2 * border:
        raise DataError(f"image of {w} x {h} is too small to crop a {border} px border")
    return img[border:h - border, border:w - border]


def _read_pair(name: str, ir_path: Path, vi_path: Path, border: int = 0) -> Pair:
    ir = read_image(ir_path)
    vis = read_image(vi_path)
    if ir.ndim == 3:  # a real colour IR file: use its luminance
        ir = rgb_to_ycbcr(ir)[..., 0]
    if border:
        ir, vis = _crop_border(ir, border), _crop_border(vis, border)
    cbcr = None
    if vis.ndim == 3:
        ycc = rgb_to_ycbcr(vis)
        vis, cbcr = np.ascontiguousarray(ycc[..., 0]), np.ascontiguousarray(ycc[..., 1:])
    return Pair(name=name, ir=ir, vis=vis, vis_cbcr=cbcr, meta={"ir_path": str(ir_path), "vi_path": str(vi_path)})


def _check_sizes(pairs: list[Pair]) -> None:
    bad = [f"{p.name}: IR {p.ir.shape[1]}x{p.ir.shape[0]}, VIS {p.vis.shape[1]}x{p.vis.shape[0]}"
           for p in pairs if p.ir.shape != p.vis.shape]
    if bad:
        raise DataError("IR and visible sizes differ (W x H):\n  " + "\n  ".join(bad))


def _dronevehicle_files(ds: Path, split: str | None) -> list[tuple[str, Path, Path]]:
    splits = [split] if split else [s for s in ("train", "val", "test") if (ds / s).is_dir()]
    if not splits:
        raise DataError(f"{ds} has neither ir/ + vi/ folders nor the DroneVehicle layout "
                        f"<split>/<split>img and <split>/<split>imgr")
    out = []
    for s in splits:
        rgb, ir = ds / s / f"{s}img", ds / s / f"{s}imgr"
        out += [(f"{s}/{stem}", i, v) for stem, i, v in find_pairs(ir, rgb)]
    return out


def load_pairs(name: str, root=None, split: str | None = None, limit: int | None = None,
               synthetic: dict | None = None, strict: bool = True) -> list[Pair]:
    """Load a dataset's aligned (or really misaligned) pairs.

    Args:
        name: ``"synthetic"`` (the embedded generator), a known dataset
            (``roadscene``, ``tno``, ``m3fd``, ``dronevehicle``) or any folder
            name under the data root.
        root: data root; default ``$BSR_DATA``. Unused for ``synthetic``.
        split: ``"train"``/``"test"`` (from ``splits/``; for synthetic, disjoint
            seed ranges); None = all pairs.
        limit: keep the first ``limit`` pairs.
        synthetic: options for the generator: ``n`` (pairs), ``size`` [H, W],
            ``seed``.
        strict: unpaired files are an error (else skipped).
    """
    if name == "synthetic":
        from .synthetic import generate_pair

        opts = {"n": 32, "size": [256, 256], "seed": 0}
        opts.update(synthetic or {})
        unknown = set(opts) - {"n", "size", "seed"}
        if unknown:
            raise DataError(f"unknown synthetic option(s): {', '.join(sorted(unknown))}")
        n = int(opts["n"] if limit is None else min(limit, opts["n"]))
        # train and test draw from disjoint seed ranges
        base = int(opts["seed"]) + (1_000_000 if split == "test" else 0)
        pairs = []
        for i in range(n):
            g = generate_pair(base + i, tuple(opts["size"]))
            ycc = rgb_to_ycbcr(g.vis)
            pairs.append(Pair(name=g.name, ir=g.ir, vis=np.ascontiguousarray(ycc[..., 0]),
                              vis_cbcr=np.ascontiguousarray(ycc[..., 1:]), meta={"seed": base + i}))
        return pairs

    ds = dataset_dir(name, root)
    border = 0
    if (ds / "ir").is_dir() or (ds / "vi").is_dir():
        files = find_pairs(ds / "ir", ds / "vi", strict=strict)
        if split:
            wanted = read_split(ds, split)
            index = {s: (s, i, v) for s, i, v in files}
            missing = [s for s in wanted if s not in index]
            if missing:
                raise DataError(f"split {split!r} of {name} names {len(missing)} pair(s) not found: "
                                + ", ".join(missing[:10]))
            files = [index[s] for s in wanted]
    elif name == "dronevehicle" or any((ds / s / f"{s}imgr").is_dir() for s in ("train", "val", "test")):
        files = _dronevehicle_files(ds, split)
        border = DRONEVEHICLE_BORDER
    else:
        raise DataError(f"{ds} holds no ir/ and vi/ folders (nor the DroneVehicle layout)")
    if limit is not None:
        files = files[: int(limit)]
    pairs = []
    errors = []
    for stem, ir_path, vi_path in files:
        try:
            pairs.append(_read_pair(stem, ir_path, vi_path, border))
        except (ImageReadError, DataError) as e:
            errors.append(str(e))
    if errors:
        raise DataError(f"{len(errors)} unreadable file(s) in {name}:\n  " + "\n  ".join(errors[:20]))
    _check_sizes(pairs)
    return pairs


# --------------------------------------------------------------------------- simulated sets

def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_simulated(folder, verify: bool = False) -> list[Pair]:
    """Read a test set written by ``bsr simulate`` (see :mod:`bsr.datasets.testsets`).

    Returns pairs whose ``ir`` is the misaligned IR, with ``ir_aligned`` and
    ``flow_gt`` filled in. With ``verify``, every file's checksum is compared
    with the manifest.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{folder} is not a simulated test set (no manifest.json); make one with `bsr simulate`")
    manifest = json.loads(manifest_path.read_text())
    pairs = []
    for item in manifest["pairs"]:
        if verify:
            for key, rel in item["files"].items():
                got = file_sha256(folder / rel)
                if got != item["sha256"][key]:
                    raise DataError(f"{folder / rel}: checksum differs from the manifest (file changed?)")
        files = {k: folder / v for k, v in item["files"].items()}
        vis = read_image(files["vi"])
        cbcr = None
        if vis.ndim == 3:
            ycc = rgb_to_ycbcr(vis)
            vis, cbcr = np.ascontiguousarray(ycc[..., 0]), np.ascontiguousarray(ycc[..., 1:])
        flow = aligned = None
        if "flow" in files:   # sets of real misalignment ("none") carry no ground truth
            with np.load(files["flow"]) as z:
                flow = z["flow"].astype(np.float32)
            aligned = read_image(files["ir_aligned"])
        pairs.append(Pair(name=item["name"], ir=read_image(files["ir"]), vis=vis, vis_cbcr=cbcr,
                          ir_aligned=aligned, flow_gt=flow,
                          meta={"kind": manifest["kind"], "level": manifest["level"],
                                "dataset": manifest["dataset"]}))
    return pairs


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    """``bsr datasets [--root DIR]``: list and check the datasets under the data root."""
    import argparse

    ap = argparse.ArgumentParser(prog="bsr datasets", description=main.__doc__)
    ap.add_argument("--root", default=None, help="data root (default: $BSR_DATA)")
    ap.add_argument("names", nargs="*", help="datasets to check (default: every folder)")
    args = ap.parse_args(argv)
    base = resolve_data_root(args.root)
    names = args.names or sorted(p.name for p in base.iterdir() if p.is_dir())
    if not names:
        origin = "--root" if args.root else "BSR_DATA"
        raise DataError(f"no datasets found: {base} (from {origin}) holds no dataset folders; expected "
                        "<dataset>/ir and <dataset>/vi under it")
    status = 0
    for n in names:
        try:
            pairs = load_pairs(n, root=base)
            if not pairs:
                raise DataError("no image pairs")
            shapes = {p.shape for p in pairs}
            colour = sum(p.vis_cbcr is not None for p in pairs)
            print(f"{n:<14} {len(pairs):>5} pairs  sizes {min(shapes)}..{max(shapes)}  colour visible: {colour}")
        except (DataError, OSError) as e:   # the whole message: e.g. the list of unpaired images
            lines = str(e).splitlines() or [type(e).__name__]
            print(f"{n:<14} unusable: {lines[0]}")
            for line in lines[1:]:
                print(f"{'':<15}{line}")
            status = 1
    return status
