"""Registration U-Net: (IR, VIS) pair -> two dense fields in pixels.

A VoxelMorph-style U-Net (Balakrishnan et al., IEEE TMI 2019; Ronneberger et
al., MICCAI 2015): conv blocks with LeakyReLU(0.2), max-pool down, nearest
upsampling plus skip concatenation up, and a 3x3 head with four output
channels. Channels 0-1 are ``phi_p`` (IR -> VIS: ``warp(ir, phi_p)`` lies on
the visible image), channels 2-3 are ``phi_n`` (VIS -> IR), each (x, y) in
pixels (see :mod:`bsr.warp` for the sign convention).

The head is initialised with tiny weights (normal, std ``init_std``) and a zero
bias, so training starts at (almost) the identity. Its output is multiplied by
a fixed ``flow_scale`` (px per unit), which sets how fast the field can grow
under a given learning rate.

Any input size works: the pair is padded (replicate) on the bottom/right to a
multiple of ``2 ** (levels - 1)`` and the fields are cropped back.

``corr`` (off by default, a deviation from the paper): a cost volume of
cross-modal matching scores (:mod:`bsr.networks.correlation`; edge NCC or MIND)
computed at encoder level ``corr["level"]`` and concatenated to that level's
input, so the network reads matching scores instead of having to discover
correspondence from the raw pair.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .correlation import cost_volume, cost_volume_channels, soft_argmax

__all__ = ["RegUNet", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the bottom/right of ``x`` (B, C, H, W) to a multiple; returns (x, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class _ConvBlock(nn.Sequential):
    """``n`` 3x3 convolutions, each followed by LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, n: int = 1):
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.LeakyReLU(0.2)]
        super().__init__(*layers)


class RegUNet(nn.Module):
    """U-Net producing ``phi_p`` and ``phi_n`` from the (IR, VIS) pair.

    Args:
        enc_channels: channels per encoder level, finest first; level ``i`` runs
            at ``1 / 2**i`` of the input resolution.
        dec_channels: channels per decoder level, coarsest first; one entry per
            upsampling step (``len(enc_channels) - 1`` entries).
        final_channels: extra full-resolution 3x3 conv layers before the head
            (VoxelMorph's two trailing 16-channel convs).
        convs_per_block: convolutions in each encoder/decoder block.
        flow_scale: fixed output scale in pixels per unit.
        init_std: standard deviation of the head's initial weights.
        in_channels: 2 (IR, VIS), 1 channel each.
        out_channels: 4 (phi_p, phi_n).
        corr: None (the paper's U-Net) or a dict with ``descriptor``
            (``"edge_ncc"``, default, or ``"mind"``), ``radius`` r, ``level`` l,
            ``window`` w and ``readout`` (optional soft-argmax beta; 0/None:
            off): a cost volume over (2r+1)^2 displacements in steps of
            ``2**l`` px, at encoder level ``l`` (``0 <= l < len(enc_channels)``),
            aggregated over odd ``w`` x ``w`` windows at that level. See
            :mod:`bsr.networks.correlation`.
    """

    def __init__(self, enc_channels=(16, 32, 32, 32), dec_channels=(32, 32, 32),
                 final_channels=(16, 16), convs_per_block: int = 1, flow_scale: float = 1.0,
                 init_std: float = 1e-5, in_channels: int = 2, out_channels: int = 4,
                 corr: dict | None = None):
        super().__init__()
        enc_channels, dec_channels = list(enc_channels), list(dec_channels)
        if len(enc_channels) < 1:
            raise ValueError("enc_channels needs at least one level")
        if len(dec_channels) != len(enc_channels) - 1:
            raise ValueError(f"dec_channels needs {len(enc_channels) - 1} entries (one per "
                             f"upsampling step); got {len(dec_channels)}")
        self.levels = len(enc_channels)
        self.multiple = 2 ** (self.levels - 1)
        self.flow_scale = float(flow_scale)
        self.corr, self.corr_readout = None, 0.0
        if corr:
            unknown = set(corr) - {"descriptor", "radius", "level", "window", "readout"}
            if unknown:
                raise ValueError(f"unknown corr option(s) {sorted(unknown)}; known: descriptor, radius, "
                                 f"level, window, readout")
            self.corr = {"descriptor": str(corr.get("descriptor", "edge_ncc")),
                         "radius": int(corr.get("radius", 3)), "level": int(corr.get("level", 2)),
                         "window": int(corr.get("window", 3))}
            if self.corr["descriptor"] not in ("edge_ncc", "mind"):
                raise ValueError(f"corr descriptor must be 'edge_ncc' or 'mind'; got {self.corr['descriptor']!r}")
            self.corr_readout = float(corr.get("readout") or 0.0)
            if not 0 <= self.corr["level"] < self.levels:
                raise ValueError(f"corr level must be in [0, {self.levels - 1}] for a {self.levels}-level "
                                 f"U-Net; got {self.corr['level']}")
            if self.corr["radius"] < 0 or self.corr["window"] < 3 or self.corr["window"] % 2 == 0:
                raise ValueError(f"corr needs radius >= 0 and an odd window >= 3; got {self.corr}")
        self.enc = nn.ModuleList()
        c = in_channels
        for i, ch in enumerate(enc_channels):
            extra = 0
            if self.corr and i == self.corr["level"]:
                extra = cost_volume_channels(self.corr["radius"]) + (3 if self.corr_readout else 0)
            self.enc.append(_ConvBlock(c + extra, ch, convs_per_block))
            c = ch
        self.dec = nn.ModuleList()
        for i, ch in enumerate(dec_channels):
            skip = enc_channels[self.levels - 2 - i]
            self.dec.append(_ConvBlock(c + skip, ch, convs_per_block))
            c = ch
        self.final = nn.Sequential(*[_ConvBlock(ci, co) for ci, co in
                                     zip([c] + list(final_channels[:-1]), final_channels)])
        if final_channels:
            c = final_channels[-1]
        self.head = nn.Conv2d(c, out_channels, 3, padding=1)
        nn.init.normal_(self.head.weight, 0.0, init_std)
        nn.init.zeros_(self.head.bias)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) x 2 -> (B, out_channels, H, W) fields in pixels."""
        x = torch.cat((ir, vis), dim=1)
        x, (h, w) = pad_to_multiple(x, self.multiple)
        cost = None
        if self.corr is not None:
            cost = cost_volume(x[:, :1], x[:, 1:2], **self.corr)
            if self.corr_readout:
                cost = torch.cat((cost, soft_argmax(cost, self.corr["radius"], self.corr_readout)), 1)
            cost = cost.to(x.dtype)
        skips = []
        for i, block in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            if cost is not None and i == self.corr["level"]:
                if x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last):
                    cost = cost.contiguous(memory_format=torch.channels_last)   # keep the block's format
                x = torch.cat((x, cost), dim=1)
            x = block(x)
            skips.append(x)
        for i, block in enumerate(self.dec):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat((x, skips[self.levels - 2 - i]), dim=1))
        x = self.final(x)
        flow = self.head(x) * self.flow_scale
        return flow[..., :h, :w]
