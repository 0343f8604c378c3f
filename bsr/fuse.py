"""Register and fuse IR/visible pairs with the shipped model, a trained checkpoint or a classical method.

Command line::

    bsr fuse IR.png VIS.png -o FUSED.png [--save-registered] [--save-flow] [--save-flow-vis]
    bsr fuse IR_DIR VIS_DIR -o OUT_DIR [...]
    bsr fuse --checkpoint CK IR.png VIS.png -o FUSED.png [...]
    bsr fuse --method "ECC + GFF" IR.png VIS.png -o FUSED.png [...]

Model: the shipped one (:func:`bsr.load_pretrained`) unless ``--checkpoint``
(written by ``bsr train``) or ``--method`` (a classical pipeline, one of
:data:`bsr.baselines.COMBINATIONS`) is given; the two options exclude each other.

Single pair: ``-o`` is the fused image's path; the extras go beside it as
``<stem>_ir_registered.png``, ``<stem>_flow.npz`` and ``<stem>_flow.png``.
Folders: images are paired by file stem; unpaired files are listed and
skipped; outputs are ``OUT_DIR/<stem>.png`` and, when asked,
``OUT_DIR/registered/<stem>.png``, ``OUT_DIR/flow/<stem>.npz``,
``OUT_DIR/flow_vis/<stem>.png``. A pair's outputs are written together or
not at all (temporary files, renamed once all are complete); an output that
cannot be written is refused before any work. In folder mode a pair that
fails is listed and the others go on; the exit status is then 1.

Colour: the networks see the visible luminance (Y of BT.601 YCbCr); a colour
visible image gives a colour fused image (fused Y with the visible Cb/Cr).
A colour IR file is reduced to its luminance.

Large images (either side over ``--tile`` px, default 1024) go through the
networks in overlapping tiles (``--tile-overlap`` px, default 64), so memory
stays flat and time linear in the pixel count: the model's global stage (if
any) fits its affine map on the whole image, the U-Net's local field and the
fused image are computed per tile and blended with cosine ramps over the
overlaps, and the IR is warped once by the full-size field. ``--tile 0``
runs the whole image at once; an image within one tile is always run whole
(the same result as ``--tile 0``). Classical methods always run whole.

Python API: :func:`fuse_pair` (numpy in, numpy out), :func:`flow_to_rgb`.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .io import IMAGE_SUFFIXES, atomic_path, read_image, rgb_to_ycbcr, save_npz, to_uint8, write_image, ycbcr_to_rgb
from .datasets.readers import list_images
from .cli import error_line
from .device import resolve_device
from .tiles import check_tiling, fuse_tiled, strip_rows
from .warp import warp

__all__ = ["fuse_pair", "register_pair", "flow_to_rgb", "main", "DEFAULT_TILE", "DEFAULT_OVERLAP"]

DEFAULT_TILE = 1024       # px; larger images go through the networks in tiles (0: never)
DEFAULT_OVERLAP = 64      # px between neighbouring tiles, blended with cosine ramps


def _to_grey(img: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        return img, None
    if img.ndim == 3 and img.shape[2] == 3:
        h, w = img.shape[:2]
        y, cbcr = np.empty((h, w), np.float32), np.empty((h, w, 2), np.float32)
        step = strip_rows(w)
        for r0 in range(0, h, step):
            ycc = rgb_to_ycbcr(img[r0:r0 + step])
            y[r0:r0 + step], cbcr[r0:r0 + step] = ycc[..., 0], ycc[..., 1:]
        return y, cbcr
    raise ValueError(f"{what} must be (H, W) or (H, W, 3); got shape {img.shape}")


def _restore_colour(y: np.ndarray, cbcr: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) float32 of luminance ``y`` and chroma ``cbcr``, by strips."""
    h, w = y.shape
    out = np.empty((h, w, 3), np.float32)
    step = strip_rows(w)
    for r0 in range(0, h, step):
        out[r0:r0 + step] = ycbcr_to_rgb(np.concatenate((y[r0:r0 + step, :, None], cbcr[r0:r0 + step]), axis=-1))
    return out


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# ----------------------------------------------------------------------------- classical methods

def _method_name(name: str) -> str:
    """The :data:`bsr.baselines.COMBINATIONS` entry ``name`` stands for (case and spaces ignored)."""
    from .baselines import COMBINATIONS

    key = "".join(str(name).split()).lower()
    for c in COMBINATIONS:
        if "".join(c.split()).lower() == key:
            return c
    raise ValueError(f"unknown method {name!r}; choose from: {', '.join(COMBINATIONS)}")


def _fuse_method(name: str, ir: torch.Tensor, vis: torch.Tensor):
    """``(fused, ir_registered, field)`` of a classical "REG + FUSION" pipeline (CPU, whole image)."""
    from .baselines import parse_combination, register_then_fuse

    reg, fusion = parse_combination(_method_name(name))
    fused, field = register_then_fuse(reg, fusion, ir, vis)
    field = field.float()
    return fused.float(), warp(ir, field), field


# ----------------------------------------------------------------------------- API

def fuse_pair(model, ir: np.ndarray, vis: np.ndarray, *, tile: int = DEFAULT_TILE,
              overlap: int = DEFAULT_OVERLAP) -> dict:
    """Register ``ir`` to ``vis`` and fuse them.

    Args:
        model: a :class:`bsr.model.BSR` (e.g. from :func:`bsr.load_pretrained` or
            :func:`bsr.checkpoint.load_checkpoint`), or the name of a classical
            pipeline of :data:`bsr.baselines.COMBINATIONS` (e.g. ``"ECC + GFF"``).
        ir: (H, W) or (H, W, 3) float in [0, 1] (colour is reduced to Y).
        vis: (H, W) or (H, W, 3) float in [0, 1], same H, W.
        tile, overlap: an image with a side over ``tile`` px goes through the
            networks in tiles of at most ``tile`` px overlapping by at least
            ``overlap`` px (module docstring); ``tile=0`` runs it whole. An image within
            one tile, and any classical method, is always run whole.

    Returns a dict of float32 arrays: ``fused`` ((H, W), or (H, W, 3) when
    ``vis`` is colour), ``fused_y`` (H, W), ``ir_registered`` (H, W) and
    ``flow`` (2, H, W), the field ``phi_p`` in pixels (x first) with
    ``ir_registered(p) = ir(p + flow(p))``.
    """
    check_tiling(tile, overlap)
    t, v, cbcr = _grey_pair(ir, vis)
    if isinstance(model, str):
        with torch.no_grad():
            fused, ir_reg, flow = _fuse_method(model, t, v)
    else:
        with _inference(model):
            t, v = t.to(_model_device(model)), v.to(_model_device(model))
            if tile and max(t.shape[-2:]) > tile:
                fused, ir_reg, flow = fuse_tiled(model, t, v, tile, overlap)
            else:
                fused, ir_reg, flow = model.fuse(t, v)
    del t, v
    fused_y = fused[0, 0].float().clamp(0, 1).cpu().numpy()
    del fused
    out = {"fused_y": fused_y, "ir_registered": ir_reg[0, 0].float().cpu().numpy(),
           "flow": flow[0].float().cpu().numpy()}
    if cbcr is not None:
        out["fused"] = _restore_colour(fused_y, cbcr)
    else:
        out["fused"] = fused_y
    return out


def register_pair(model, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """The field ``phi_p`` (2, H, W) float32 that :func:`fuse_pair` would return for the
    pair, without running the fusion network (the auto-encoder is most of a paper-size
    model's cost). Images larger than one tile go through :func:`fuse_pair` itself."""
    t, v, _ = _grey_pair(ir, vis)
    if max(t.shape[-2:]) > DEFAULT_TILE:
        return fuse_pair(model, ir, vis)["flow"]
    with _inference(model):
        phi_p, _ = model.register(t.to(_model_device(model)), v.to(_model_device(model)))
    return phi_p[0].float().cpu().numpy()


def _grey_pair(ir: np.ndarray, vis: np.ndarray):
    """Both images as (1, 1, H, W) float tensors of their grey (Y) channel, and the visible
    image's Cb/Cr (None when grey); differing sizes are a one-line error."""
    ir_y, _ = _to_grey(ir, "ir")
    vis_y, cbcr = _to_grey(vis, "vis")
    if ir_y.shape != vis_y.shape:
        raise ValueError(f"IR and visible sizes differ: IR {ir_y.shape[1]}x{ir_y.shape[0]}, "
                         f"visible {vis_y.shape[1]}x{vis_y.shape[0]} (W x H)")
    t = torch.from_numpy(np.ascontiguousarray(ir_y))[None, None]
    v = torch.from_numpy(np.ascontiguousarray(vis_y))[None, None]
    return t, v, cbcr


@contextmanager
def _inference(model):
    """The model in eval mode without gradients; its training flag restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-wheel picture of a field (2, H, W): hue = direction, saturation = magnitude.

    Direction uses image axes (x right, y down): +x is red, +y is yellow-green,
    -x cyan, -y violet; zero is white. ``max_magnitude`` (px) maps to full
    saturation (default: the field's largest magnitude). Returns uint8 (H, W, 3).
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W); got shape {flow.shape}")
    fx, fy = flow
    mag = np.hypot(fx, fy)
    top = float(max_magnitude) if max_magnitude else float(mag.max())
    sat = np.clip(mag / top, 0.0, 1.0) if top > 0 else np.zeros_like(mag)
    hue = (np.arctan2(fy, fx) / (2 * np.pi)) % 1.0          # [0, 1)
    # HSV -> RGB with V = 1
    h6 = hue * 6.0
    sector = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p = 1.0 - sat
    q = 1.0 - sat * f
    t = 1.0 - sat * (1.0 - f)
    one = np.ones_like(sat)
    table = [(one, t, p), (q, one, p), (p, one, t), (p, q, one), (t, p, one), (one, p, q)]
    rgb = np.zeros(fx.shape + (3,))
    for s, (r, g, b) in enumerate(table):
        m = sector == s
        rgb[m, 0], rgb[m, 1], rgb[m, 2] = r[m], g[m], b[m]
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- CLI

def _by_strips(fn, arr: np.ndarray, axis: int = 0) -> np.ndarray:
    """``fn`` (row-wise; returns (rows, W, ...)) on strips of the rows (axis ``axis``) of ``arr``, stacked."""
    h, w = arr.shape[axis], arr.shape[axis + 1]
    step = strip_rows(w)
    return np.concatenate([fn(arr[(slice(None),) * axis + (slice(r0, r0 + step),)]) for r0 in range(0, h, step)])


def _check_targets(paths) -> None:
    """A one-line ValueError, before anything is computed or written, for an output that cannot be written."""
    for p in paths:
        if p.is_dir():
            raise ValueError(f"output {p} is a folder; remove it or choose another output")
        parent = next((q for q in p.parents if q.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ValueError(f"output {p}: {parent} exists and is not a folder")


def _write_outputs(res: dict, fused_path: Path, reg_path, flow_path, vis_path) -> None:
    """Every asked-for output of one pair, or none: all are written to temporary files first and
    renamed into place together once all of them are complete (the caller checks the paths first,
    :func:`_check_targets`)."""
    targets = [p for p in (fused_path, reg_path, flow_path, vis_path) if p is not None]
    try:
        with ExitStack() as stack:
            tmp = {p: stack.enter_context(atomic_path(p)) for p in targets}
            # 8-bit conversion by strips: the same bytes as write_image's own, without its full-size float64 copies
            write_image(tmp[fused_path], _by_strips(to_uint8, res["fused"]))
            if reg_path is not None:
                write_image(tmp[reg_path], _by_strips(lambda a: to_uint8(np.clip(a, 0, 1)), res["ir_registered"]))
            if flow_path is not None:
                save_npz(tmp[flow_path], flow=np.asarray(res["flow"], dtype=np.float32))
            if vis_path is not None:
                flow = res["flow"]
                top = float(np.max(_by_strips(lambda f: np.hypot(*f.astype(np.float64)).max(1), flow, axis=1)))
                write_image(tmp[vis_path], _by_strips(lambda f: flow_to_rgb(f, max_magnitude=top), flow, axis=1))
    except OSError as e:       # name the output, not a temporary file
        raise OSError(f"could not write the outputs of {fused_path}: {e.strerror or e}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsr fuse", description="Register and fuse IR/visible pairs.")
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint written by `bsr train` (final.pt); default: the shipped model")
    ap.add_argument("--method", default=None,
                    help='a classical pipeline instead of a model, e.g. "ECC + GFF" (bsr.baselines.COMBINATIONS)')
    ap.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                    help="fit (or, --no-refine, do not fit) a residual field to each pair by MIND after the model's "
                         "global and local fields (bsr.refine); default: the model's own setting, on for the shipped "
                         "model (about 0.6 s more a RoadScene pair on one thread; docs/model_card.md)")
    ap.add_argument("ir", help="IR image, or a folder of IR images")
    ap.add_argument("vis", help="visible image, or a folder of visible images (paired by stem)")
    ap.add_argument("-o", "--output", required=True, help="fused image path (pair) or output folder (folders)")
    ap.add_argument("--save-registered", action="store_true", help="also write the registered IR")
    ap.add_argument("--save-flow", action="store_true", help="also write the field phi_p (.npz, key 'flow')")
    ap.add_argument("--save-flow-vis", action="store_true", help="also write a colour-wheel picture of the field")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE,
                    help=f"run images with a side over this many px in tiles (0: whole; default {DEFAULT_TILE})")
    ap.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP,
                    help=f"overlap of neighbouring tiles in px (default {DEFAULT_OVERLAP})")
    args = ap.parse_args(argv)
    if args.method is not None and args.checkpoint is not None:
        raise ValueError("--method and --checkpoint exclude each other; give one (neither: the shipped model)")
    if args.method is not None and args.refine is not None:
        raise ValueError(f"--{'' if args.refine else 'no-'}refine is a model's setting; it does not apply to --method")
    method = _method_name(args.method) if args.method is not None else None
    check_tiling(args.tile, args.tile_overlap)
    tiling = {"tile": args.tile, "overlap": args.tile_overlap}

    ir, vis, out = Path(args.ir), Path(args.vis), Path(args.output)
    for p, what in ((ir, "IR"), (vis, "visible")):
        if not p.exists():
            raise FileNotFoundError(f"{what} input {p} does not exist")
    if ir.is_dir() != vis.is_dir():
        raise ValueError(f"give two files or two folders; got {ir} ({'folder' if ir.is_dir() else 'file'}) "
                         f"and {vis} ({'folder' if vis.is_dir() else 'file'})")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if method is not None:
        model = method
    elif args.checkpoint is not None:
        from .checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, map_location=resolve_device(args.device))
    else:
        import bsr

        model = bsr.load_pretrained(map_location=resolve_device(args.device))
    if args.refine is not None:
        model.set_refine(args.refine)

    if ir.is_file():
        if out.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"output {out} needs an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if out.exists() and out.is_dir():
            raise ValueError(f"output {out} is a folder; give a file path for a single pair")
        stem = out.with_suffix("")
        targets = (out, Path(f"{stem}_ir_registered.png") if args.save_registered else None,
                   Path(f"{stem}_flow.npz") if args.save_flow else None,
                   Path(f"{stem}_flow.png") if args.save_flow_vis else None)
        _check_targets([p for p in targets if p is not None])
        _write_outputs(fuse_pair(model, read_image(ir), read_image(vis), **tiling), *targets)
        print(out)
        return 0

    irs, viss = list_images(ir), list_images(vis)
    only_ir, only_vis = sorted(set(irs) - set(viss)), sorted(set(viss) - set(irs))
    if only_ir:
        print(f"bsr fuse: unpaired IR files (skipped): {', '.join(irs[s].name for s in only_ir)}", file=sys.stderr)
    if only_vis:
        print(f"bsr fuse: unpaired visible files (skipped): {', '.join(viss[s].name for s in only_vis)}",
              file=sys.stderr)
    stems = sorted(set(irs) & set(viss))
    if not stems:
        raise ValueError(f"no image pairs (same file stem) in {ir} and {vis}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    failed = []
    for s in stems:
        targets = (out / f"{s}.png", out / "registered" / f"{s}.png" if args.save_registered else None,
                   out / "flow" / f"{s}.npz" if args.save_flow else None,
                   out / "flow_vis" / f"{s}.png" if args.save_flow_vis else None)
        try:
            _check_targets([p for p in targets if p is not None])
            _write_outputs(fuse_pair(model, read_image(irs[s]), read_image(viss[s]), **tiling), *targets)
        except (ValueError, OSError) as e:      # this pair's outputs are all or nothing; go on with the rest
            failed.append(f"{s}: {error_line(e)}")
    print(f"fused {len(stems) - len(failed)} of {len(stems)} pairs into {out}")
    if failed:
        print("bsr fuse: failed pairs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
