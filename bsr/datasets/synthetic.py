"""The embedded default dataset: procedural, seeded infrared/visible pairs.

No download is needed. Each pair shares one scene layout (a label map of sky,
ground, road, buildings with windows, trees, cars, people and "hot spots")
rendered twice with modality-specific physics:

* visible: per-material colour (albedo) under a smooth illumination field with
  cast shadow, multi-octave texture, lane markings, gamma, mild sensor noise;
* infrared: per-material temperature (smooth inside each object), warm people,
  engines, lit windows, and hot spots that are *invisible* in the visible image
  (dark-clothed people in shadow, animals in the dark); sky is cold (dark) while
  it is bright in the visible image, so contrast polarity differs; lower
  optical resolution (blur), Gaussian noise plus column fixed-pattern noise;
  automatic gain control to [0, 1].

The two renderings are pixel-aligned by construction; misalignment is added
by :mod:`bsr.datasets.simulate`. Everything is driven by ``numpy.random.Generator``
seeded from ``seed``, so a pair is a pure function of ``(seed, size)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse, polygon

from ..io import rgb_to_ycbcr

__all__ = ["SyntheticPair", "generate_pair", "make_pairs"]

# material table: name -> (visible RGB albedo range centre, texture amplitude, IR temperature)
_SKY, _GROUND, _ROAD, _MARK = 0, 1, 2, 3
_FIRST_OBJECT = 10


@dataclass
class SyntheticPair:
    """One generated pair; ``ir`` (H, W) and ``vis`` (H, W, 3) float32 in [0, 1]."""

    name: str
    ir: np.ndarray
    vis: np.ndarray
    labels: np.ndarray

    @property
    def vis_y(self) -> np.ndarray:
        return rgb_to_ycbcr(self.vis)[..., 0]


def _value_noise(rng, h, w, scales=(4, 8, 16, 32), weights=(0.5, 0.25, 0.15, 0.1)):
    """Multi-octave smooth noise in roughly [-1, 1] (cubic upsampling of random grids)."""
    out = np.zeros((h, w), np.float32)
    for s, wt in zip(scales, weights):
        gh, gw = max(h // s, 2) + 2, max(w // s, 2) + 2
        g = rng.standard_normal((gh, gw)).astype(np.float32)
        up = ndimage.zoom(g, (h / (gh - 2), w / (gw - 2)), order=3, mode="nearest", grid_mode=True)
        up = up[:h, :w] if up.shape[0] >= h and up.shape[1] >= w else np.resize(up, (h, w))
        out += wt * up
    return out


class _Scene:
    """Label map plus per-label properties, built with simple shapes."""

    def __init__(self, h, w, rng):
        self.h, self.w, self.rng = h, w, rng
        self.labels = np.zeros((h, w), np.int32)      # what the IR camera sees
        self.vis_labels = np.zeros((h, w), np.int32)  # what the visible camera sees
        self.props: dict[int, dict] = {}
        self.next_id = _FIRST_OBJECT

    def add(self, rr, cc, **props):
        keep = (rr >= 0) & (rr < self.h) & (cc >= 0) & (cc < self.w)
        lid = self.next_id
        self.next_id += 1
        self.labels[rr[keep], cc[keep]] = lid
        if props.get("rgb") is not None:   # IR-only objects leave the visible scene as it was
            self.vis_labels[rr[keep], cc[keep]] = lid
        self.props[lid] = props
        return lid


def _layout(h, w, rng) -> _Scene:
    sc = _Scene(h, w, rng)
    horizon = int(h * rng.uniform(0.28, 0.45))
    sc.labels[horizon:] = _GROUND
    # road: a trapezoid towards a vanishing point
    vx = w * rng.uniform(0.35, 0.65)
    half_bottom = w * rng.uniform(0.3, 0.55)
    rr, cc = polygon([horizon, horizon, h - 1, h - 1],
                     [vx - 3, vx + 3, vx + half_bottom, vx - half_bottom], (h, w))
    sc.labels[rr, cc] = _ROAD
    # dashed lane marks along the road centre line
    for t0 in np.arange(0.1, 1.0, 0.18):
        t1 = t0 + 0.08
        y0, y1 = horizon + t0 * (h - horizon), horizon + t1 * (h - horizon)
        wd0, wd1 = 0.5 + 3 * t0, 0.5 + 3 * t1
        rr, cc = polygon([y0, y0, y1, y1], [vx - wd0, vx + wd0, vx + wd1, vx - wd1], (h, w))
        sc.labels[rr, cc] = _MARK
    sc.vis_labels = sc.labels.copy()  # background shared; IR-only objects come later
    # buildings on the horizon, with windows
    x = rng.uniform(-0.05, 0.05) * w
    while x < w:
        bw = w * rng.uniform(0.08, 0.22)
        bh = h * rng.uniform(0.12, 0.35)
        top = max(horizon - bh, 1)
        if rng.random() < 0.8 and abs(x + bw / 2 - vx) > 0.12 * w:
            rr, cc = polygon([top, top, horizon + 2, horizon + 2], [x, x + bw, x + bw, x], (h, w))
            tone = rng.uniform(0.25, 0.75)
            sc.add(rr, cc, rgb=np.array([tone, tone * rng.uniform(0.85, 1.0), tone * rng.uniform(0.75, 1.0)]),
                   tex=0.06, temp=rng.uniform(0.35, 0.5))
            ww, wh = max(bw / 8, 2), max(bh / 10, 2)
            for wy in np.arange(top + wh, horizon - wh, 2.2 * wh):
                for wx in np.arange(x + ww, x + bw - ww, 2.2 * ww):
                    lit = rng.random() < 0.4
                    rr, cc = polygon([wy, wy, wy + wh, wy + wh], [wx, wx + ww, wx + ww, wx], (h, w))
                    sc.add(rr, cc, rgb=np.full(3, 0.9 if lit else 0.12) * np.array([1, 0.95, 0.7 if lit else 1]),
                           tex=0.02, temp=0.62 if lit else 0.42, emissive=lit)
        x += bw * rng.uniform(1.0, 1.4)
    # trees: canopy ellipses on the ground line
    for _ in range(rng.integers(2, 6)):
        cx = rng.uniform(0, w)
        if abs(cx - vx) < 0.15 * w:
            continue
        r = h * rng.uniform(0.05, 0.12)
        rr, cc = ellipse(horizon - r * 0.3, cx, r, r * rng.uniform(0.7, 1.2), (h, w))
        g = rng.uniform(0.25, 0.5)
        sc.add(rr, cc, rgb=np.array([0.35 * g, g, 0.3 * g]), tex=0.2, temp=rng.uniform(0.25, 0.35))
    # cars on the road: body + warm engine + wheels
    for _ in range(rng.integers(1, 4)):
        t = rng.uniform(0.25, 0.9)
        cy = horizon + t * (h - horizon)
        cw, ch = w * 0.12 * (0.3 + t), h * 0.05 * (0.3 + t)
        cx = vx + rng.uniform(-0.8, 0.8) * half_bottom * t
        rr, cc = polygon([cy - ch, cy - ch, cy + ch, cy + ch], [cx - cw, cx + cw, cx + cw, cx - cw], (h, w))
        sc.add(rr, cc, rgb=rng.uniform(0.05, 0.95, 3), tex=0.03, temp=rng.uniform(0.45, 0.6))
        rr, cc = ellipse(cy, cx + cw * 0.6, ch * 0.6, cw * 0.3, (h, w))
        sc.add(rr, cc, rgb=None, tex=0.0, temp=0.85)  # engine: IR only (same visible colour)
        for sx in (-0.7, 0.7):
            rr, cc = ellipse(cy + ch, cx + sx * cw, ch * 0.4, ch * 0.4, (h, w))
            sc.add(rr, cc, rgb=np.full(3, 0.05), tex=0.0, temp=0.7)
    # people: body + head; some in dark clothes (nearly invisible in the visible image)
    for _ in range(rng.integers(2, 6)):
        t = rng.uniform(0.1, 0.9)
        cy = horizon + t * (h - horizon)
        ph = h * 0.09 * (0.4 + t)
        cx = rng.uniform(0.05, 0.95) * w
        dark = rng.random() < 0.4
        cloth = np.full(3, 0.1) if dark else rng.uniform(0.2, 0.9, 3)
        rr, cc = ellipse(cy - ph * 0.45, cx, ph * 0.45, ph * 0.14, (h, w))
        sc.add(rr, cc, rgb=cloth, tex=0.03, temp=rng.uniform(0.82, 0.95), shadowed=dark)
        rr, cc = ellipse(cy - ph * 1.0, cx, ph * 0.1, ph * 0.08, (h, w))
        sc.add(rr, cc, rgb=None if dark else np.array([0.8, 0.6, 0.5]), tex=0.0, temp=0.97)
    # hot spots invisible in the visible image (animals / exhausts in the dark)
    for _ in range(rng.integers(1, 3)):
        cy, cx = rng.uniform(horizon, h), rng.uniform(0, w)
        r = h * rng.uniform(0.015, 0.04)
        rr, cc = ellipse(cy, cx, r, r * 1.6, (h, w))
        sc.add(rr, cc, rgb=None, tex=0.0, temp=rng.uniform(0.75, 0.9))
    return sc


def _render_visible(sc: _Scene, rng) -> np.ndarray:
    h, w = sc.h, sc.w
    albedo = np.zeros((h, w, 3), np.float32)
    tex_amp = np.zeros((h, w), np.float32)
    base = {
        _SKY: (np.array([0.6, 0.75, 0.95]) * rng.uniform(0.8, 1.1), 0.02),
        _GROUND: (np.array([0.45, 0.42, 0.3]) * rng.uniform(0.7, 1.2), 0.25),
        _ROAD: (np.full(3, rng.uniform(0.25, 0.4)), 0.12),
        _MARK: (np.full(3, 0.92), 0.02),
    }
    for lid, (rgb, tex) in base.items():
        m = sc.vis_labels == lid
        albedo[m] = rgb
        tex_amp[m] = tex
    shadow = np.zeros((h, w), bool)
    for lid, p in sc.props.items():
        if p["rgb"] is None:       # invisible in the visible image
            continue
        m = sc.vis_labels == lid
        albedo[m] = p["rgb"]
        tex_amp[m] = p["tex"]
        if p.get("shadowed"):
            shadow |= ndimage.binary_dilation(m, iterations=6)
    sky_grad = np.linspace(1.1, 0.85, h, dtype=np.float32)[:, None]
    illum = 0.85 + 0.15 * _value_noise(rng, h, w, scales=(64, 128), weights=(0.6, 0.4))
    illum = illum * np.where(sc.labels == _SKY, sky_grad, 1.0)
    illum = np.where(shadow, illum * 0.35, illum)
    texture = _value_noise(rng, h, w, scales=(2, 4, 8), weights=(0.5, 0.3, 0.2))
    if rng.random() < 0.3:  # night: dim scene, dark sky; lit windows and lights keep their glow
        glow = np.zeros((h, w), bool)
        for lid, p in sc.props.items():
            if p.get("emissive"):
                glow |= sc.vis_labels == lid
        illum = np.where(glow, 1.0, illum * rng.uniform(0.15, 0.35))
    vis = albedo * (illum * (1 + tex_amp * texture))[..., None]
    vis = ndimage.gaussian_filter(vis, sigma=(0.6, 0.6, 0))
    vis = np.clip(vis, 0, 1) ** (1 / rng.uniform(1.0, 1.3))
    vis = vis + rng.normal(0, 0.008, vis.shape)
    return np.clip(vis, 0, 1).astype(np.float32)


def _render_infrared(sc: _Scene, rng) -> np.ndarray:
    h, w = sc.h, sc.w
    temp = np.zeros((h, w), np.float32)
    ground_t = rng.uniform(0.35, 0.5)
    road_t = ground_t + rng.uniform(0.03, 0.12)
    # lane marks sit on the road at nearly its temperature: visible-only structure
    base_t = {_SKY: rng.uniform(0.05, 0.15), _GROUND: ground_t, _ROAD: road_t,
              _MARK: road_t + rng.uniform(-0.01, 0.01)}
    for lid, t in base_t.items():
        temp[sc.labels == lid] = t
    for lid, p in sc.props.items():
        temp[sc.labels == lid] = p["temp"]
    # smooth within-object variation (heat diffusion) and a vertical ground gradient
    temp += 0.05 * _value_noise(rng, h, w, scales=(16, 32, 64), weights=(0.3, 0.4, 0.3))
    temp += np.where(sc.labels != _SKY, np.linspace(-0.04, 0.06, h, dtype=np.float32)[:, None], 0)
    ir = ndimage.gaussian_filter(temp, sigma=rng.uniform(1.0, 1.8))     # optics: lower resolution
    ir = ir + rng.normal(0, rng.uniform(0.006, 0.015), (h, w))           # temporal noise
    ir = ir + rng.normal(0, 0.006, (1, w))                                # column fixed-pattern noise
    lo, hi = np.percentile(ir, [0.5, 99.8])                               # automatic gain control
    return np.clip((ir - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def generate_pair(seed: int, size: tuple[int, int] = (256, 256)) -> SyntheticPair:
    """Generate one aligned pair; a pure function of ``(seed, size)``.

    Args:
        seed: any non-negative integer.
        size: (H, W); at least 32 x 32.
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise ValueError(f"synthetic image size must be at least 32 x 32; got {h} x {w}")
    rng = np.random.default_rng([int(seed), h, w])
    sc = _layout(h, w, rng)
    vis = _render_visible(sc, rng)
    ir = _render_infrared(sc, rng)
    return SyntheticPair(name=f"synth_{int(seed):05d}", ir=ir, vis=vis, labels=sc.labels)


def make_pairs(n: int, size: tuple[int, int] = (256, 256), seed: int = 0) -> list[SyntheticPair]:
    """``n`` pairs with seeds ``seed, seed + 1, ...``."""
    return [generate_pair(seed + i, size) for i in range(int(n))]
