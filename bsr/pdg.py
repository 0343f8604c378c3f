"""Proxy data generator (PDG) and its inverse (IPDG), Sec. 3.1 of the paper.

``P(I)`` cuts each image of a batch into an N x N grid of equal patches,
applies a random element of the dihedral group D4 (the 8 flips/rotations of a
square) to every patch in place, and stitches the patches back (Eq. 1).
``IP`` undoes the recorded ops (Eq. 2, 4). IR and visible images get the same
ops; each sample of the batch gets its own.

Op codes (``code = r + 4 * f``): the op is ``rot90^r`` followed, when
``f = 1``, by a left-right mirror, where ``rot90`` is ``torch.rot90(x, 1,
dims=(-2, -1))`` (counter-clockwise as the image is displayed, y down)::

    0 identity      1 rot90 (ccw)     2 rot180          3 rot270 (cw)
    4 flip_x (l-r)  5 anti-transpose  6 flip_y (u-d)    7 transpose

Grid sizes: ``n >= 1`` is an n x n grid; ``n = 0`` means "flip the whole
image" (codes {0, 4, 6}: none, left-right or up-down), as the paper's N = 0;
``n = None`` (or :meth:`ProxyDataGenerator.off`) disables PDG: every op is the
identity and inputs are returned unchanged. H and W must be divisible by the
grid size (``ValueError`` otherwise; nothing is padded). Rotations by 90/270
degrees and the two transposes (codes 1, 3, 5, 7) change a non-square
patch's shape, so for non-square patches only the shape-preserving codes
{0, 2, 4, 6} are drawn.

Fields. A PDG op on a patch is ``I_new(p) = I(S(p))`` with ``S(p) = R p + t``
(R a signed permutation matrix, our x-right / y-down pixel coordinates). For a
backward field (``warp(I, phi)(q) = I(q + phi(q))``) the field on the new image
that does the same thing is::

    phi_new(p) = R^T phi(S(p))                    (apply, kind="flow")

because ``I_new(p + phi_new(p)) = I(S(p) + R phi_new(p)) = I(S(p) + phi(S(p)))``
whenever ``p + phi_new(p)`` stays inside the patch. So the values are moved
like an image and the vectors are rotated/reflected by ``R^T`` (= R^-1); a
left-right flip negates x, a ccw rotation turns +x into -y (up). The inverse,
``phi(q) = R psi(S^-1(q))``, is the same formula with the inverse op, which
is how :meth:`ProxyDataGenerator.inverse` is written. Bilinear sampling is
exactly equivariant under D4, so ``IP(warp(P(I), P_flow(phi))) ==
warp(I, phi)`` to float precision away from patch edges (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import torch

__all__ = ["ProxyDataGenerator", "PDGOps", "OP_NAMES", "apply_op", "op_matrix",
           "inverse_code", "seam_mask", "SHAPE_PRESERVING", "WHOLE_IMAGE_FLIPS"]

OP_NAMES = ("identity", "rot90", "rot180", "rot270",
            "flip_x", "anti_transpose", "flip_y", "transpose")
SHAPE_PRESERVING = (0, 2, 4, 6)
WHOLE_IMAGE_FLIPS = (0, 4, 6)
_OP_SETS = {
    "all": tuple(range(8)),
    "flips": WHOLE_IMAGE_FLIPS,
    "shape": SHAPE_PRESERVING,
    "rotations": (0, 1, 2, 3),
    "none": (0,),
}


def apply_op(x: torch.Tensor, code: int) -> torch.Tensor:
    """Apply the D4 op ``code`` to the last two dims of ``x`` (reference, unbatched)."""
    code = int(code)
    if not 0 <= code < 8:
        raise ValueError(f"op code must be in 0..7; got {code}")
    y = torch.rot90(x, code % 4, dims=(-2, -1))
    return y.flip(-1) if code >= 4 else y


def _compute_tables():
    """Derive R (2x2) of every op and the inverse table numerically."""
    n = 3
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mats = []
    for c in range(8):
        sx, sy = apply_op(xs, c), apply_op(ys, c)       # S(p) for the new pixel p
        col_x = (sx[0, 1] - sx[0, 0], sy[0, 1] - sy[0, 0])   # dS/dx
        col_y = (sx[1, 0] - sx[0, 0], sy[1, 0] - sy[0, 0])   # dS/dy
        mats.append([[col_x[0], col_y[0]], [col_x[1], col_y[1]]])
    mats = torch.tensor(mats, dtype=torch.float64)
    probe = torch.arange(16.0).view(4, 4)
    inv = []
    for c in range(8):
        y = apply_op(probe, c)
        inv.append(next(d for d in range(8) if torch.equal(apply_op(y, d), probe)))
    return mats, tuple(inv)


_R, _INV = _compute_tables()


def op_matrix(code: int) -> torch.Tensor:
    """R of op ``code``: the new pixel p shows the old pixel ``R p + t`` (float64, (2, 2))."""
    return _R[int(code)].clone()


def inverse_code(code: int) -> int:
    """The op code that undoes ``code``."""
    return _INV[int(code)]


@dataclass(frozen=True)
class PDGOps:
    """The ops PDG drew for a batch.

    Attributes:
        codes: (B, P) int64 tensor of D4 codes (see the module docstring), one
            per patch in row-major patch order; P = g * g with g = max(n, 1).
        n: the grid parameter they were drawn for (0 = whole-image flip).
    """

    codes: torch.Tensor
    n: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def grid(self) -> int:
        return max(int(self.n), 1)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def inverse(self) -> "PDGOps":
        """The ops that undo these (per patch)."""
        if "inverse" not in self._cache:
            inv = torch.tensor(_INV, dtype=torch.long)[self.codes.cpu()].to(self.codes.device)
            self._cache["inverse"] = PDGOps(inv, self.n)
        return self._cache["inverse"]

    def is_identity(self) -> bool:
        if "identity" not in self._cache:
            self._cache["identity"] = not bool((self.codes != 0).any())
        return self._cache["identity"]

    def _index(self, b: int, h: int, w: int, device) -> torch.Tensor:
        """Cached (B, H*W) gather index for images of this size on ``device``."""
        key = ("index", b, h, w, str(device))
        if key not in self._cache:
            codes = self.codes if self.codes.shape[0] == b else self.codes.expand(b, -1)
            self._cache[key] = _gather_index(codes, h, w, self.grid, device)
        return self._cache[key]


def _grid_of(n) -> int:
    return 1 if n is None else max(int(n), 1)


def _check_divisible(h: int, w: int, g: int) -> tuple[int, int]:
    if h % g or w % g:
        raise ValueError(f"PDG with a {g}x{g} grid needs H and W divisible by {g}; got H={h}, W={w} "
                         "(crop or pad the images first)")
    return h // g, w // g


@lru_cache(maxsize=64)
def _local_tables(ph: int, pw: int, w: int, device: torch.device) -> torch.Tensor:
    """(8, ph, pw) int64: for each op, the source offset ``dy * W + dx`` of every
    pixel of a ph x pw patch, relative to the patch's top-left pixel, in an
    image of width W. Codes that would change the patch's shape get the
    identity table (they are never drawn for such patches; ``_transform``
    rejects them)."""
    lin = torch.arange(ph * pw).view(ph, pw)
    tabs = []
    for c in range(8):
        t = apply_op(lin, c)
        tabs.append(t if t.shape == lin.shape else lin)
    t = torch.stack(tabs)
    return ((t // pw) * w + t % pw).to(device)


def _gather_index(codes: torch.Tensor, h: int, w: int, g: int, device) -> torch.Tensor:
    """(B, H*W) linear source index of every output pixel for the given codes."""
    ph, pw = h // g, w // g
    tab = _local_tables(ph, pw, w, torch.device(device))
    b = codes.shape[0]
    c = codes.to(device).view(b, g, g)
    ar = torch.arange(g, device=device)
    origin = (ar[:, None] * (ph * w) + ar[None, :] * pw).view(1, g, g, 1, 1)
    src = (tab[c] + origin).permute(0, 1, 3, 2, 4)    # (B, g, ph, g, pw)
    return src.reshape(b, h * w)


class ProxyDataGenerator:
    """PDG / IPDG.

    Usage::

        pdg = ProxyDataGenerator(2)
        ir_new, vis_new, ops = pdg(ir, vis, generator=g)       # (B,C,H,W) each
        phi_restored = pdg.inverse(phi_new, ops, kind="flow")   # (B,2,H,W)
        img_restored = pdg.inverse(img_new, ops)                # kind="image"

    Args:
        n: grid size N (default 2). ``0``: whole-image flip only; ``None``:
            PDG off (identity).
        ops: which codes to draw: ``"all"`` (D4, default), ``"shape"``
            (0, 2, 4, 6), ``"flips"`` (0, 4, 6), ``"rotations"`` (0-3),
            ``"none"`` or an iterable of codes. It is intersected with
            (0, 4, 6) for n = 0, and with the shape-preserving set for
            non-square patches. Codes are drawn uniformly (identity included).
        enabled: ``False`` is the same as ``n=None``.
    """

    def __init__(self, n: int | None = 2, ops: str | Iterable[int] = "all", enabled: bool = True):
        if n is not None and int(n) < 0:
            raise ValueError(f"n must be >= 0 or None; got {n}")
        self.n = None if (n is None or not enabled) else int(n)
        if isinstance(ops, str):
            if ops not in _OP_SETS:
                raise ValueError(f"ops must be one of {sorted(_OP_SETS)} or a list of codes; got {ops!r}")
            codes = _OP_SETS[ops]
        else:
            codes = tuple(sorted({int(c) for c in ops}))
            if not codes or any(not 0 <= c < 8 for c in codes):
                raise ValueError(f"op codes must be a non-empty subset of 0..7; got {ops!r}")
        self.op_set = codes

    @classmethod
    def off(cls) -> "ProxyDataGenerator":
        """A PDG that does nothing (the 'N = x' / no-PDG setting)."""
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.n is not None

    @property
    def grid(self) -> int:
        return _grid_of(self.n)

    def __repr__(self) -> str:
        return f"ProxyDataGenerator(n={self.n}, ops={self.op_set})"

    def allowed_codes(self, h: int, w: int) -> tuple[int, ...]:
        """The codes drawn for H x W images (after the n = 0 / non-square rules)."""
        if not self.enabled:
            return (0,)
        ph, pw = _check_divisible(h, w, self.grid)
        allowed = set(self.op_set)
        if self.n == 0:
            allowed &= set(WHOLE_IMAGE_FLIPS)
        if ph != pw:
            allowed &= set(SHAPE_PRESERVING)
        return tuple(sorted(allowed)) or (0,)

    def sample(self, batch: int, h: int, w: int, generator: torch.Generator | None = None) -> PDGOps:
        """Draw ops for ``batch`` images of size H x W (codes on the CPU)."""
        g = self.grid
        allowed = torch.tensor(self.allowed_codes(h, w), dtype=torch.long)
        if not self.enabled or len(allowed) == 1:
            codes = allowed[0].repeat(batch, g * g)
        else:
            idx = torch.randint(len(allowed), (batch, g * g), generator=generator)
            codes = allowed[idx]
        return PDGOps(codes, 1 if self.n is None else self.n)

    def __call__(self, ir: torch.Tensor, vis: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, ops: PDGOps | None = None):
        """``P``: returns ``(ir_new, vis_new, ops)`` (vis_new is None when vis is).

        ``ir`` and ``vis`` are (B, C, H, W) with the same B, H, W (C may
        differ). ``ops``: reuse given ops instead of drawing new ones.
        """
        if ir.ndim != 4:
            raise ValueError(f"ir must be (B, C, H, W); got {tuple(ir.shape)}")
        b, _, h, w = ir.shape
        if vis is not None and (vis.ndim != 4 or vis.shape[0] != b or vis.shape[-2:] != ir.shape[-2:]):
            raise ValueError(f"vis shape {tuple(vis.shape)} does not match ir {tuple(ir.shape)}")
        if ops is None:
            ops = self.sample(b, h, w, generator=generator)
        ir_new = self.apply(ir, ops)
        vis_new = None if vis is None else self.apply(vis, ops)
        return ir_new, vis_new, ops

    forward = __call__

    def _as_ops(self, ops) -> PDGOps:
        if isinstance(ops, PDGOps):
            return ops
        if isinstance(ops, torch.Tensor):
            return PDGOps(ops.long(), 1 if self.n is None else self.n)
        raise TypeError(f"ops must be PDGOps or a (B, P) code tensor; got {type(ops)}")

    def apply(self, x: torch.Tensor, ops, kind: str = "image") -> torch.Tensor:
        """Apply recorded ops to ``x`` (B, C, H, W).

        ``kind="image"``: move values only (any C). ``kind="flow"``: ``x`` is
        a backward displacement field (B, 2, H, W), x component first; values
        are moved and the vectors transformed, ``phi_new(p) = R^T phi(S(p))``.
        """
        return _transform(x, self._as_ops(ops), kind)

    def inverse(self, x: torch.Tensor, ops, kind: str = "image") -> torch.Tensor:
        """``IP``: undo recorded ops on an image or (``kind="flow"``) a field."""
        return _transform(x, self._as_ops(ops).inverse(), kind)


def _transform(x: torch.Tensor, ops: PDGOps, kind: str) -> torch.Tensor:
    if kind not in ("image", "flow"):
        raise ValueError(f"kind must be 'image' or 'flow'; got {kind!r}")
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W); got {tuple(x.shape)}")
    if kind == "flow" and x.shape[1] != 2:
        raise ValueError(f"a flow must be (B, 2, H, W); got {tuple(x.shape)}")
    b, c, h, w = x.shape
    codes = ops.codes
    g = ops.grid
    if codes.ndim != 2 or codes.shape[1] != g * g:
        raise ValueError(f"ops.codes must be (B, {g * g}); got {tuple(codes.shape)}")
    if codes.shape[0] != b:
        if codes.shape[0] == 1:
            codes = codes.expand(b, -1)
        else:
            raise ValueError(f"ops are for a batch of {codes.shape[0]}, x has {b}")
    if ops.is_identity():
        return x
    ph, pw = _check_divisible(h, w, g)
    if ph != pw and bool(((codes % 2) == 1).any()):
        raise ValueError(f"codes 1, 3, 5, 7 need square patches; patches here are {ph}x{pw}")
    idx = ops._index(b, h, w, x.device)
    out = torch.gather(x.reshape(b, c, h * w), 2, idx[:, None, :].expand(b, c, h * w)).view(b, c, h, w)
    if kind == "image":
        return out
    # vectors: v_new = R^T v, one R per patch
    rt = _R.to(device=x.device, dtype=x.dtype).transpose(1, 2)[codes.to(x.device)]   # (B, P, 2, 2)
    rt = rt.view(b, g, g, 2, 2)
    o = out.view(b, 2, g, ph, g, pw)
    res = torch.einsum("bpqij,bjpyqx->bipyqx", rt, o)
    return res.reshape(b, 2, h, w)


def seam_mask(h: int, w: int, n: int | None, margin: int = 0, include_border: bool = False,
              device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 1, H, W) mask: 0 within ``margin`` px of a patch seam, 1 elsewhere.

    A pixel at distance ``d`` (in pixels, along x or y) from a seam between two
    patches is masked when ``d < margin``, i.e. the ``margin`` pixel rows and
    columns on each side of a seam. ``margin=0`` gives all ones (the paper's
    consistency loss covers every pixel). With ``include_border=True`` the
    image border is treated as a patch edge too (the strict region where the
    PDG branch and the plain branch see the same neighbourhood: a patch edge on
    the image border can move inside after a flip/rotation). n = 0, 1 or None
    have no seams.
    """
    m = torch.ones(1, 1, h, w, device=device, dtype=dtype)
    margin = int(margin)
    if margin <= 0:
        return m
    g = _grid_of(n)
    ph, pw = _check_divisible(h, w, g)
    dy = _edge_distance(h, ph, g, include_border)
    dx = _edge_distance(w, pw, g, include_border)
    keep = (dy[:, None] >= margin) & (dx[None, :] >= margin)
    return keep.to(device=device, dtype=dtype)[None, None]


def _edge_distance(size: int, patch: int, g: int, include_border: bool) -> torch.Tensor:
    """Pixels between each position and the nearest patch boundary (0 = touching it)."""
    bounds = list(range(patch, size, patch))          # interior seams, between b-1 and b
    if include_border:
        bounds = [0] + bounds + [size]
    pos = torch.arange(size)
    if not bounds:
        return torch.full((size,), size, dtype=torch.long)
    b = torch.tensor(bounds)[:, None]
    d = torch.where(pos[None] < b, b - 1 - pos[None], pos[None] - b)
    return d.min(0).values
