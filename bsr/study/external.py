"""Outputs of outside fusion methods, dropped into a folder and scored like ours.

Layout (the root is configurable; ``results/external`` by default)::

    <root>/<method>/<dataset>/<name>.png

``<name>`` is the stem of the pair's file name in the dataset (``FLIR_00211``
for ``FLIR_00211.jpg``). PNG is expected; any other image suffix that
:mod:`bsr.io` reads is accepted when no PNG of that stem exists. Colour outputs
are scored on their luminance Y (BT.601), as the fusion metrics are defined on
one channel.

Typical use::

    for method in list_external_methods("results/external", "roadscene"):
        df = score_external("results/external", method, "roadscene", pairs=pairs)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import IMAGE_SUFFIXES, read_image, rgb_to_ycbcr, to_uint8
from ..metrics import fusion_metrics

__all__ = [
    "DEFAULT_ROOT", "ExternalOutputError", "list_external_methods", "external_path",
    "load_external", "load_pairs", "score_external",
]

DEFAULT_ROOT = Path("results") / "external"


class ExternalOutputError(ValueError):
    """An outside method's outputs are missing or do not match the inputs' sizes."""


def _stem(name: str) -> str:
    p = Path(str(name))
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_external_methods(root=DEFAULT_ROOT, dataset: str | None = None) -> list[str]:
    """Sorted names of methods with at least one image under ``<root>/<method>/<dataset>/``.

    With ``dataset=None``, methods with any dataset folder holding an image.
    A missing root gives an empty list.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for m in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if dataset is not None:
            if _images_in(m / dataset):
                found.append(m.name)
        elif any(_images_in(d) for d in m.iterdir() if d.is_dir()):
            found.append(m.name)
    return found


def external_path(root, method: str, dataset: str, name: str) -> Path | None:
    """The output file of ``method`` for pair ``name``: ``<stem>.png``, else another suffix; None if absent."""
    folder = Path(root) / method / dataset
    stem = _stem(name)
    png = folder / f"{stem}.png"
    if png.is_file():
        return png
    for p in _images_in(folder):
        if p.stem == stem:
            return p
    return None


def _to_grey(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:
        arr = rgb_to_ycbcr(arr)[..., 0]
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_external(root, method: str, dataset: str, names, expected_shapes=None) -> dict:
    """Read ``method``'s fused images for ``names``: dict name -> float32 (H, W) in [0, 1].

    ``expected_shapes``: None (no check), one (H, W) for all, or a mapping
    name -> (H, W) (e.g. the shapes of the inputs). Raises
    :class:`ExternalOutputError` listing every missing file, or every image
    whose size differs (name, expected, found); names keep their given form
    as dictionary keys.
    """
    names = list(names)
    folder = Path(root) / method / dataset
    paths, missing = {}, []
    for n in names:
        p = external_path(root, method, dataset, n)
        if p is None:
            missing.append(_stem(n))
        else:
            paths[n] = p
    if missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
        raise ExternalOutputError(
            f"{method}/{dataset}: {len(missing)} of {len(names)} outputs missing in {folder} "
            f"(expected <name>.png): {shown}")
    out, wrong = {}, []
    for n in names:
        img = _to_grey(read_image(paths[n]))
        if expected_shapes is not None:
            if isinstance(expected_shapes, dict):
                exp = expected_shapes.get(n, expected_shapes.get(_stem(n)))
            else:
                exp = expected_shapes
            if exp is not None and tuple(img.shape[:2]) != tuple(exp)[:2]:
                wrong.append(f"{paths[n].name}: expected {tuple(exp)[0]}x{tuple(exp)[1]} (HxW), "
                             f"found {img.shape[0]}x{img.shape[1]}")
        out[n] = img
    if wrong:
        raise ExternalOutputError(f"{method}/{dataset}: {len(wrong)} outputs of the wrong size: "
                                  + "; ".join(wrong))
    return out


def load_pairs(data_root, dataset: str, names) -> dict:
    """Aligned inputs ``<data_root>/<dataset>/{ir,vi}/<name>``: dict name -> (ir, vis) grey float32."""
    base = Path(data_root) / dataset
    pairs = {}
    for n in names:
        ir = _to_grey(read_image(base / "ir" / n))
        vi = _to_grey(read_image(base / "vi" / n))
        pairs[n] = (ir, vi)
    return pairs


def score_external(root, method: str, dataset: str, pairs: dict | None = None, names=None,
                   data_root=None):
    """Fusion metrics of ``method``'s outputs, one row per image (a pandas DataFrame).

    ``pairs``: dict name -> (ir, vis), float arrays in [0, 1] (H, W) -- the
    source images the metrics compare the fused image with; these should be
    the inputs the method was given (e.g. the misaligned IR), as in
    :mod:`bsr.study.scoring`. Without it, the aligned pairs are read with
    :func:`load_pairs` from ``data_root`` (the names default to
    ``<data_root>/<dataset>/splits/test.txt``). Metrics come from
    :func:`bsr.metrics.fusion_metrics` on 8-bit values (all three images
    rounded to uint8, as the field's evaluators read PNG files). Columns:
    ``name``, ``method``, ``dataset`` and the metrics.
    """
    if pairs is None:
        if data_root is None:
            raise ValueError("give either pairs or data_root")
        if names is None:
            split = Path(data_root) / dataset / "splits" / "test.txt"
            if not split.is_file():
                raise ValueError(f"no names given and no split file {split}")
            names = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
        pairs = load_pairs(data_root, dataset, names)
    elif names is not None:
        pairs = {n: pairs[n] for n in names}
    shapes = {n: np.asarray(ir).shape[:2] for n, (ir, _) in pairs.items()}
    fused = load_external(root, method, dataset, list(pairs), expected_shapes=shapes)
    rows = []
    for n, (ir, vis) in pairs.items():
        m = fusion_metrics(to_uint8(fused[n]), to_uint8(ir), to_uint8(vis))
        rows.append({"name": n, "method": method, "dataset": dataset,
                     **{k: float(v) for k, v in m.items()}})
    return pd.DataFrame(rows)
