"""Reconstruction / fusion auto-encoder in the spirit of CDDFuse.

Structure after Zhao et al., "CDDFuse: Correlation-Driven Dual-Branch Feature
Decomposition for Multi-Modality Image Fusion", CVPR 2023, with blocks after
Restormer (Zamir et al., CVPR 2022) and invertible coupling layers after
Dinh et al. (RealNVP, ICLR 2017). Written from the papers' descriptions.

* Shared shallow encoder: a 3x3 patch embedding (1 -> ``dim`` channels) and
  ``enc_blocks`` Restormer-style blocks (channel-wise multi-head attention,
  "MDTA", and a gated depth-wise feed-forward network, "GDFN").
* Global branch (low frequency): ``global_blocks`` light transformer blocks
  whose attention runs across channels over the whole image (a global
  receptive field), followed by a depth-wise conv MLP.
* Local branch (high frequency): ``local_blocks`` invertible affine coupling
  blocks whose sub-networks are small inverted-residual convs (local
  receptive field).
* Decoder: concatenated (global, local) features -> 1x1 reduction ->
  ``dec_blocks`` Restormer-style blocks -> two 3x3 convs -> sigmoid.

:meth:`AutoEncoder.forward` returns the reconstruction and the two feature
maps (for the decomposition loss). Phase 2 fuses two images by combining
their features (:meth:`AutoEncoder.fuse`): ``"sum"`` (default, the paper's
``Decoder(Encoder(V) + Encoder(T_hat))``) adds the global features of both and
the local features of both; ``"mean"`` averages them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["AutoEncoder", "LayerNorm2d", "RestormerBlock", "GlobalBlock", "InvertibleBlock"]

FUSION_RULES = ("sum", "mean", "absmax")


class LayerNorm2d(nn.Module):
    """Layer norm over the channel dimension of a (B, C, H, W) tensor."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        # one fused kernel on the channels-last view (a free view for channels_last tensors)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """Multi-head attention across channels ("transposed" attention).

    q, k, v come from a 1x1 conv and a 3x3 depth-wise conv; per head, the
    (C/h x C/h) attention map is the softmax of the cosine similarity of the
    L2-normalised q and k over all pixels, times a learned temperature. Cost is
    linear in the number of pixels.
    """

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dw = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.proj = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """1x1 expand to two streams, 3x3 depth-wise, GELU gate, 1x1 project."""

    def __init__(self, dim: int, expansion: float = 2.0, bias: bool = False):
        super().__init__()
        hidden = int(dim * expansion)
        self.inp = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dw = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x):
        a, g = self.dw(self.inp(x)).chunk(2, dim=1)
        return self.out(F.gelu(g) * a)


class RestormerBlock(nn.Module):
    """Pre-norm residual block: x + MDTA(LN(x)); x + GDFN(LN(x))."""

    def __init__(self, dim: int, heads: int, expansion: float = 2.0, bias: bool = False):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.attn = ChannelAttention(dim, heads, bias)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedFeedForward(dim, expansion, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class GlobalBlock(nn.Module):
    """Light transformer block for the global (low-frequency) branch.

    Channel attention over the whole image, then a conv MLP (1x1 expand,
    3x3 depth-wise, GELU, 1x1 project).
    """

    def __init__(self, dim: int, heads: int, expansion: float = 1.0, bias: bool = False):
        super().__init__()
        hidden = max(int(dim * expansion), 1)
        self.norm1 = LayerNorm2d(dim)
        self.attn = ChannelAttention(dim, heads, bias)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=bias),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1, bias=bias),
        )

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _InvertedResidual(nn.Module):
    """1x1 expand, ReLU6, 3x3 depth-wise, ReLU6, 1x1 project (MobileNetV2-style)."""

    def __init__(self, cin: int, cout: int, expansion: int = 2):
        super().__init__()
        hidden = cin * expansion
        self.net = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
        )

    def forward(self, x):
        return self.net(x)


class InvertibleBlock(nn.Module):
    """Affine coupling block (invertible given its sub-networks).

    A 1x1 channel mixing, then with ``(a, b)`` the two channel halves:
    ``b <- b + f(a)``; ``a <- a * exp(s(b)) + t(b)`` where the log-scale is
    bounded by ``tanh`` for stability.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"InvertibleBlock needs an even dim; got {dim}")
        half = dim // 2
        self.mix = nn.Conv2d(dim, dim, 1, bias=True)
        self.f = _InvertedResidual(half, half)
        self.s = _InvertedResidual(half, half)
        self.t = _InvertedResidual(half, half)

    def forward(self, x):
        a, b = self.mix(x).chunk(2, dim=1)
        b = b + self.f(a)
        a = a * torch.exp(torch.tanh(self.s(b))) + self.t(b)
        return torch.cat((a, b), dim=1)


class AutoEncoder(nn.Module):
    """Shared encoder, global/local branches and a decoder (see module doc).

    Args:
        dim: feature channels.
        heads: attention heads (``dim`` must be divisible by it).
        enc_blocks: Restormer blocks in the shared encoder.
        global_blocks: light transformer blocks in the global branch.
        local_blocks: invertible blocks in the local branch.
        dec_blocks: Restormer blocks in the decoder.
        ffn_expansion: GDFN expansion factor.
        in_channels / out_channels: image channels (1: luminance).
    """

    def __init__(self, dim: int = 64, heads: int = 8, enc_blocks: int = 4, global_blocks: int = 1,
                 local_blocks: int = 3, dec_blocks: int = 4, ffn_expansion: float = 2.0,
                 in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoder = nn.Sequential(*[RestormerBlock(dim, heads, ffn_expansion) for _ in range(enc_blocks)])
        self.global_branch = nn.Sequential(*[GlobalBlock(dim, heads) for _ in range(global_blocks)])
        self.local_branch = nn.Sequential(*[InvertibleBlock(dim) for _ in range(local_blocks)])
        self.reduce = nn.Conv2d(dim * 2, dim, 1, bias=False)
        self.decoder = nn.Sequential(*[RestormerBlock(dim, heads, ffn_expansion) for _ in range(dec_blocks)])
        self.out = nn.Sequential(
            nn.Conv2d(dim, max(dim // 2, 1), 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(max(dim // 2, 1), out_channels, 3, padding=1),
        )
        # activation checkpointing of every block while training (memory <-> compute);
        # a run-time switch, not part of the architecture
        self.grad_checkpoint = False

    def _run(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpoint and torch.is_grad_enabled():
            for blk in blocks:
                x = checkpoint(blk, x, use_reentrant=False)
            return x
        return blocks(x)

    # -- parts --------------------------------------------------------------
    def encoder_modules(self) -> list[nn.Module]:
        """Modules frozen in phase 2 unless ``phase2.train_encoder`` (shared encoder and both branches)."""
        return [self.embed, self.encoder, self.global_branch, self.local_branch]

    def decoder_modules(self) -> list[nn.Module]:
        """Modules trained in phase 2."""
        return [self.reduce, self.decoder, self.out]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) -> (global features, local features), each (B, dim, H, W)."""
        shared = self._run(self.encoder, self.embed(x))
        return self._run(self.global_branch, shared), self._run(self.local_branch, shared)

    def decode(self, glob: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Features -> image in [0, 1] (sigmoid output)."""
        x = self._run(self.decoder, self.reduce(torch.cat((glob, local), dim=1)))
        return torch.sigmoid(self.out(x))

    def forward(self, x: torch.Tensor):
        """Returns ``(reconstruction, global_features, local_features)``."""
        g, l = self.encode(x)
        return self.decode(g, l), g, l

    @staticmethod
    def combine(feats_a, feats_b, rule: str = "sum"):
        """Combine two (global, local) feature pairs by ``rule``.

        "sum" (CDDFuse's, the default) | "mean" | "absmax": per element, the feature of larger
        magnitude (the choose-max rule of transform-domain fusion; not in the paper).
        """
        if rule not in FUSION_RULES:
            raise ValueError(f"unknown fusion rule {rule!r}; expected one of {FUSION_RULES}")
        if rule == "absmax":
            return tuple(torch.where(a.abs() >= b.abs(), a, b) for a, b in zip(feats_a, feats_b))
        k = 1.0 if rule == "sum" else 0.5
        return tuple(k * (a + b) for a, b in zip(feats_a, feats_b))

    def fuse(self, a: torch.Tensor, b: torch.Tensor, rule: str = "sum"):
        """Fuse two aligned images: ``Decoder(combine(Enc(a), Enc(b)))``.

        Returns ``(fused, feats_a, feats_b)``; each feats is (global, local).
        """
        fa, fb = self.encode(a), self.encode(b)
        return self.decode(*self.combine(fa, fb, rule)), fa, fb
