"""Register and fuse IR/visible pairs with a trained checkpoint.

Command line::

    bsr fuse --checkpoint CK IR.png VIS.png -o FUSED.png [--save-registered] [--save-flow] [--save-flow-vis]
    bsr fuse --checkpoint CK IR_DIR VIS_DIR -o OUT_DIR [...]

Single pair: ``-o`` is the fused image's path; the extras go beside it as
``<stem>_ir_registered.png``, ``<stem>_flow.npz`` and ``<stem>_flow.png``.
Folders: images are paired by file stem; unpaired files are listed and
skipped; outputs are ``OUT_DIR/<stem>.png`` and, when asked,
``OUT_DIR/registered/<stem>.png``, ``OUT_DIR/flow/<stem>.npz``,
``OUT_DIR/flow_vis/<stem>.png``.

Colour: the networks see the visible luminance (Y of BT.601 YCbCr); a colour
visible image gives a colour fused image (fused Y with the visible Cb/Cr).
A colour IR file is reduced to its luminance.

Python API: :func:`fuse_pair` (numpy in, numpy out), :func:`flow_to_rgb`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .io import IMAGE_SUFFIXES, read_image, rgb_to_ycbcr, save_npz, write_image, ycbcr_to_rgb
from .data import list_images
from .train import resolve_device

__all__ = ["fuse_pair", "flow_to_rgb", "main"]


def _to_grey(img: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        return img, None
    if img.ndim == 3 and img.shape[2] == 3:
        ycc = rgb_to_ycbcr(img)
        return np.ascontiguousarray(ycc[..., 0]), np.ascontiguousarray(ycc[..., 1:])
    raise ValueError(f"{what} must be (H, W) or (H, W, 3); got shape {img.shape}")


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def fuse_pair(model, ir: np.ndarray, vis: np.ndarray) -> dict:
    """Register ``ir`` to ``vis`` and fuse them.

    Args:
        model: a :class:`bsr.model.BSR` (e.g. from :func:`bsr.model.load_checkpoint`).
        ir: (H, W) or (H, W, 3) float in [0, 1] (colour is reduced to Y).
        vis: (H, W) or (H, W, 3) float in [0, 1], same H, W.

    Returns a dict of float32 arrays: ``fused`` ((H, W), or (H, W, 3) when
    ``vis`` is colour), ``fused_y`` (H, W), ``ir_registered`` (H, W) and
    ``flow`` (2, H, W), the field ``phi_p`` in pixels (x first) with
    ``ir_registered(p) = ir(p + flow(p))``.
    """
    ir_y, _ = _to_grey(ir, "ir")
    vis_y, cbcr = _to_grey(vis, "vis")
    if ir_y.shape != vis_y.shape:
        raise ValueError(f"IR and visible sizes differ: IR {ir_y.shape[1]}x{ir_y.shape[0]}, "
                         f"visible {vis_y.shape[1]}x{vis_y.shape[0]} (W x H)")
    dev = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(ir_y))[None, None].to(dev)
            v = torch.from_numpy(np.ascontiguousarray(vis_y))[None, None].to(dev)
            fused, ir_reg, flow = model.fuse(t, v)
    finally:
        model.train(was_training)
    fused_y = fused[0, 0].float().clamp(0, 1).cpu().numpy()
    out = {"fused_y": fused_y, "ir_registered": ir_reg[0, 0].float().cpu().numpy(),
           "flow": flow[0].float().cpu().numpy()}
    if cbcr is not None:
        out["fused"] = ycbcr_to_rgb(np.concatenate((fused_y[..., None], cbcr), axis=-1))
    else:
        out["fused"] = fused_y
    return out


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

def _write_outputs(res: dict, fused_path: Path, reg_path, flow_path, vis_path) -> None:
    write_image(fused_path, res["fused"])
    if reg_path is not None:
        write_image(reg_path, np.clip(res["ir_registered"], 0, 1))
    if flow_path is not None:
        save_npz(flow_path, flow=res["flow"].astype(np.float32))
    if vis_path is not None:
        write_image(vis_path, flow_to_rgb(res["flow"]))



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bsr fuse", description="Register and fuse IR/visible pairs.")
    ap.add_argument("--checkpoint", required=True, help="checkpoint written by `bsr train` (final.pt)")
    ap.add_argument("ir", help="IR image, or a folder of IR images")
    ap.add_argument("vis", help="visible image, or a folder of visible images (paired by stem)")
    ap.add_argument("-o", "--output", required=True, help="fused image path (pair) or output folder (folders)")
    ap.add_argument("--save-registered", action="store_true", help="also write the registered IR")
    ap.add_argument("--save-flow", action="store_true", help="also write the field phi_p (.npz, key 'flow')")
    ap.add_argument("--save-flow-vis", action="store_true", help="also write a colour-wheel picture of the field")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args(argv)

    ir, vis, out = Path(args.ir), Path(args.vis), Path(args.output)
    for p, what in ((ir, "IR"), (vis, "visible")):
        if not p.exists():
            raise FileNotFoundError(f"{what} input {p} does not exist")
    if ir.is_dir() != vis.is_dir():
        raise ValueError(f"give two files or two folders; got {ir} ({'folder' if ir.is_dir() else 'file'}) "
                         f"and {vis} ({'folder' if vis.is_dir() else 'file'})")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from .model import load_checkpoint

    model = load_checkpoint(args.checkpoint, map_location=resolve_device(args.device))

    if ir.is_file():
        if out.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"output {out} needs an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if out.exists() and out.is_dir():
            raise ValueError(f"output {out} is a folder; give a file path for a single pair")
        res = fuse_pair(model, read_image(ir), read_image(vis))
        stem = out.with_suffix("")
        _write_outputs(res, out,
                       Path(f"{stem}_ir_registered.png") if args.save_registered else None,
                       Path(f"{stem}_flow.npz") if args.save_flow else None,
                       Path(f"{stem}_flow.png") if args.save_flow_vis else None)
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
        try:
            res = fuse_pair(model, read_image(irs[s]), read_image(viss[s]))
        except ValueError as e:
            failed.append(f"{s}: {e}")
            continue
        _write_outputs(res, out / f"{s}.png",
                       out / "registered" / f"{s}.png" if args.save_registered else None,
                       out / "flow" / f"{s}.npz" if args.save_flow else None,
                       out / "flow_vis" / f"{s}.png" if args.save_flow_vis else None)
    print(f"fused {len(stems) - len(failed)} of {len(stems)} pairs into {out}")
    if failed:
        print("bsr fuse: failed pairs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
