"""The Xydeas-Petrovic edge-transfer measure Q^{AB/F} (``bsr.metrics.fusion``
gives the source and the conventions)."""

from __future__ import annotations

import math

import numpy as np

from .common import _choose, _triple

# Xydeas-Petrovic constants as used by every common implementation.
QABF_CONSTANTS = dict(L=1.0, Tg=0.9994, kg=-15.0, Dg=0.5, Ta=0.9879, ka=-22.0, Da=0.8)


# ----------------------------------------------------------------------------
# Qabf



_QSTRIP = 16  # image rows per Qabf strip (three images at once)


def _strip_sobel(p: np.ndarray):
    """Field-convention Sobel of the inner rows of zero-padded strips ``p`` (C, R+2, L),
    L = W + 2 (Sx = left - right, Sy = bottom - top, as convolve2d with the field's
    kernels). Returns (magnitude, angle), each (C, R*L) in the padded-column layout:
    entry r*L + c is image pixel (r, c - 1), and columns 0 and L-1 hold junk (finite)
    values that the callers leave out of their sums. Working on whole flattened rows
    keeps every operation a single contiguous loop.

    The angle is arctan(Sy / Sx), and exactly pi/2 where Sx == 0: there the ratio is made
    +inf by fmax with (Sx == 0) * inf, which is inf where Sx == 0 and NaN elsewhere (fmax
    ignores NaN); this also replaces the NaN of 0/0 and the -inf of negative/0."""
    ch, n, width = p.shape
    m = (n - 2) * width
    u = p[:, :-1] + p[:, 1:]
    sm = (u[:, :-1] + u[:, 1:]).reshape(ch, m)  # rows: top + 2 mid + bottom
    dv = (p[:, 2:] - p[:, :-2]).reshape(ch, m)  # bottom - top
    sx = np.empty((ch, m))
    sy = np.empty((ch, m))
    sx[:, 0] = sx[:, -1] = sy[:, 0] = sy[:, -1] = 0.0
    np.subtract(sm[:, :-2], sm[:, 2:], out=sx[:, 1:-1])
    w1 = dv[:, :-1] + dv[:, 1:]
    np.add(w1[:, :-1], w1[:, 1:], out=sy[:, 1:-1])  # columns: left + 2 mid + right
    g = np.multiply(sx, sx)
    g += np.multiply(sy, sy, out=sm)
    np.sqrt(g, out=g)
    fix = np.multiply(sx == 0, np.inf, out=dv)
    np.divide(sy, sx, out=sy)
    np.fmax(sy, fix, out=sy)
    np.arctan(sy, out=sy)
    return g, sy


def _strip_edge_transfer(gs, as_, gf, af, tie_gf: bool) -> np.ndarray:
    """g_S * Q^{SF} / (Tg * Ta) for strips of both sources (gs, as_: (2, M); gf, af:
    (M,)), in place of a temporary that is returned; the constant factor is applied once.

    Q^{SF} = Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (A - Da))), with
    G = min(g_S, g_F) / max(g_S, g_F) (ties: g_F for the field rule, else 1) and
    A = 1 - |alpha_S - alpha_F| / (pi / 2)."""
    c = QABF_CONSTANTS
    G = np.minimum(gs, gf)
    mx = np.maximum(gs, gf)
    if tie_gf:
        # field rule: G = g_F where g_S == g_F, i.e. divide by 1 there instead of by g_F
        # (this also turns 0/0 into 0)
        eq = gs == gf
        t = np.subtract(1.0, mx)
        t *= eq
        mx += t
    else:
        # strict rule: ratio 1 at nonzero ties already; zero ties (weight 0) give 0/tiny = 0
        np.maximum(mx, 1e-300, out=mx)
    G /= mx
    G *= c["kg"]
    G -= c["kg"] * c["Dg"]
    np.exp(G, out=G)
    G += 1.0
    d = np.subtract(as_, af, out=mx)
    np.abs(d, out=d)
    d *= -2.0 * c["ka"] / math.pi
    d += c["ka"] * (1.0 - c["Da"])
    np.exp(d, out=d)
    d += 1.0
    G *= d
    np.divide(gs, G, out=G)
    return G


def _qabf_core(f: np.ndarray, a: np.ndarray, b: np.ndarray, variant: str) -> tuple[float, float]:
    """(Qabf, sum of the fused image's zero-padded Sobel magnitude), by row strips of the
    three images at once (zero-padded copies in one reused buffer)."""
    c = QABF_CONSTANTS
    h, w = f.shape
    rows = min(_QSTRIP, h)
    buf = np.zeros((3, rows + 2, w + 2))
    tie_gf = variant == "field"
    num = wsum = fsum = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for i0 in range(0, h, rows):
            i1 = min(i0 + rows, h)
            p = buf[:, :i1 - i0 + 2]
            lo, hi = max(i0 - 1, 0), min(i1 + 1, h)
            top = lo - (i0 - 1)  # 1 when the strip starts at image row 0
            if top:
                p[:, 0] = 0.0
            if i1 + 1 > h:
                p[:, -1] = 0.0
            for ch, img in enumerate((f, a, b)):
                p[ch, top:top + hi - lo, 1:-1] = img[lo:hi]
            g, ang = _strip_sobel(p)
            q = _strip_edge_transfer(g[1:], ang[1:], g[0], ang[0], tie_gf)
            r = i1 - i0
            num += float(q.reshape(2, r, w + 2)[:, :, 1:-1].sum())  # drop the junk columns
            g = g.reshape(3, r, w + 2)[:, :, 1:-1]
            wsum += float(g[1:].sum())
            fsum += float(g[0].sum())
    q = 0.0 if wsum == 0.0 else c["Tg"] * c["Ta"] * num / wsum
    return q, fsum


def qabf_max() -> float:
    """Q_g(G=1) * Q_a(A=1) = 0.97479... with the usual constants (the sigmoids are not
    normalised to reach 1): the score of a fused image equal to both sources under the
    'strict' variant, and its upper bound."""
    c = QABF_CONSTANTS
    return (c["Tg"] / (1 + math.exp(c["kg"] * (1 - c["Dg"])))) * (c["Ta"] / (1 + math.exp(c["ka"] * (1 - c["Da"]))))


def qabf_field_max() -> float:
    """Upper bound of the 'field' variant, Tg * Q_a(A=1) = 0.97533...: its tie rule
    G = g_F feeds strengths > 1 into the sigmoid, which then exceeds Q_g(1)."""
    c = QABF_CONSTANTS
    return c["Tg"] * c["Ta"] / (1 + math.exp(c["ka"] * (1 - c["Da"])))


def qabf(fused, ir, vis, variant: str | None = None) -> float:
    """Xydeas-Petrovic edge-transfer measure Q^{AB/F}.

    Q = sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B), w = g^L (L = 1), with
    Q^{SF} = Q_g Q_a the sigmoid-mapped strength ratio and orientation agreement
    of Sobel gradients. Range [0, 0.9748] ('strict', see :func:`qabf_max`) or
    [0, 0.9753] ('field', :func:`qabf_field_max`). If neither source has any
    gradient (only possible for all-zero sources, since borders are zero-filled)
    the value is defined as 0.
    """
    f, a, b = _triple(fused, ir, vis)
    return _qabf_core(f, a, b, _choose("Qabf", variant))[0]
