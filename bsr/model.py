"""The B-SR model: registration U-Net + reconstruction/fusion auto-encoder.

``BSR`` holds both networks and implements the forward passes of the two
training phases (Algorithm 1 of the paper, with its typos fixed: V with V,
T with T) and inference:

* :meth:`BSR.register` -> ``(phi_p, phi_n)``; ``T_hat = warp(T, phi_p)`` lies on
  the visible image, ``V_hat = warp(V, phi_n)`` on the IR image.
* :meth:`BSR.phase1` -> every tensor the phase-1 losses need, for the plain
  branch and the PDG branch (with the IPDG-restored fields and images).
* :meth:`BSR.fuse` -> ``(fused, ir_registered, phi_p)``.

Model sizes (``SIZES``): ``quick`` (small, for CPU tests and smoke runs),
``mid`` (``quick`` with a larger U-Net) and ``paper`` (a VoxelMorph-size-plus
U-Net and a CDDFuse-size auto-encoder). :func:`bsr.checkpoint.load_checkpoint`
rebuilds a model from a checkpoint without the training code.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn

from .global_stage import GlobalStage
from .refine import Refiner
from .networks import AutoEncoder, RegUNet, count_parameters
from .warp import coarse_field, compose, warp

__all__ = ["BSR", "SIZES", "model_config", "complete_model_config"]

# Network sizes. Every value can be overridden from the training config
# (``model: {size: paper, unet: {...}, ae: {...}}``).
SIZES: dict[str, dict] = {
    "quick": {
        "unet": {"enc_channels": [8, 16, 16], "dec_channels": [16, 16], "final_channels": [8],
                 "convs_per_block": 1, "flow_scale": 4.0, "init_std": 1e-5, "corr": None},
        "global": None,
        "local": True,
        "local_grid": None,  # U-Net fields averaged onto a grid of this many px (bsr.warp.coarse_field), or None
        "refine": None,     # per-pair MIND refinement after the fields (bsr.refine): None, true or its settings
        # no Restormer blocks in the shared encoder / decoder (the global and local branches stay):
        # 3x cheaper per pass on a CPU (0.05 vs 0.14 s fwd+bwd, batch 8 x 64^2), the AE is the costly
        # part of a quick step (4 passes); docs/method.md#fusion-network
        "ae": {"dim": 8, "heads": 2, "enc_blocks": 0, "global_blocks": 1, "local_blocks": 1,
               "dec_blocks": 0, "ffn_expansion": 2.0},
        "fusion_rule": "sum",
    },
    # the quick model with a larger U-Net (4 levels, 16-32-32-32 channels, two convolutions per block):
    # the quick profile's run bsr_dilate10_mid and the released model's U-Net (with a cost volume)
    "mid": {
        "unet": {"enc_channels": [16, 32, 32, 32], "dec_channels": [32, 32, 32], "final_channels": [16],
                 "convs_per_block": 2, "flow_scale": 4.0, "init_std": 1e-5, "corr": None},
        "global": None,
        "local": True,
        "local_grid": None,
        "refine": None,
        "ae": {"dim": 8, "heads": 2, "enc_blocks": 0, "global_blocks": 1, "local_blocks": 1,
               "dec_blocks": 0, "ffn_expansion": 2.0},
        "fusion_rule": "sum",
    },
    "paper": {
        "unet": {"enc_channels": [32, 64, 64, 128, 128], "dec_channels": [128, 64, 64, 32],
                 "final_channels": [32, 16], "convs_per_block": 2, "flow_scale": 4.0, "init_std": 1e-5,
                 "corr": None},
        "global": None,
        "local": True,
        "local_grid": None,
        "refine": None,
        "ae": {"dim": 64, "heads": 8, "enc_blocks": 4, "global_blocks": 1, "local_blocks": 3,
               "dec_blocks": 4, "ffn_expansion": 2.0},
        "fusion_rule": "sum",
    },
}


def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if k not in out:
            raise ValueError(f"unknown model option {where}{k!r}; known: {', '.join(sorted(out))}")
        out[k] = _merge(out[k], v, f"{where}{k}.") if isinstance(out[k], dict) else v
    return out


def model_config(size: str = "quick", **overrides) -> dict:
    """Full model config of a named size, with ``unet``/``ae``/``fusion_rule`` overrides."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; expected one of {', '.join(SIZES)}")
    cfg = _merge(SIZES[size], overrides, "")
    cfg["size"] = size
    return cfg


def complete_model_config(cfg: dict | None) -> dict:
    """A stored model config with every key its size has now: keys added after
    it was written (e.g. ``unet.corr``) take their defaults, so a checkpoint of
    an older version compares equal to the same model built today. A config
    this version cannot read (unknown size or key) is returned as stored."""
    cfg = copy.deepcopy(cfg or {})
    if cfg.get("size") not in SIZES:
        return cfg
    try:
        return model_config(cfg["size"], **{k: v for k, v in cfg.items() if k != "size"})
    except ValueError:
        return cfg


class BSR(nn.Module):
    """Registration U-Net and auto-encoder, built from a model config dict."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        config = model_config("quick") if config is None else copy.deepcopy(config)
        self.config = config
        self.unet = RegUNet(**config["unet"])
        self.ae = AutoEncoder(**config["ae"])
        self.fusion_rule = config.get("fusion_rule", "sum")
        self.global_stage = GlobalStage.from_config(config.get("global"))
        if not isinstance(config.get("local", True), bool):
            raise ValueError(f"model option 'local' must be true or false; got {config.get('local')!r}")
        self.use_local = config.get("local", True)
        grid = config.get("local_grid")
        if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or grid < 1):
            raise ValueError(f"model option 'local_grid' must be null or a whole number of px >= 1; got {grid!r}")
        self.refiner = Refiner.from_config(config.get("refine"))
        self._amp: tuple[bool, torch.dtype] = (False, torch.bfloat16)
        self.set_channels_last(True)

    # ------------------------------------------------------------------ helpers
    def set_refine(self, refine) -> None:
        """Switch the per-pair MIND refinement (:mod:`bsr.refine`) on (``True`` or a dict of
        :class:`bsr.refine.Refiner` settings) or off (``False``/``None``); kept in ``config``."""
        self.refiner = Refiner.from_config(refine)
        self.config["refine"] = None if self.refiner is None else self.refiner.to_config()

    def set_amp(self, enabled: bool, dtype: torch.dtype = torch.bfloat16) -> None:
        """Run the networks under autocast (CUDA); losses and warps stay float32."""
        self._amp = (bool(enabled), dtype)

    def set_channels_last(self, enabled: bool = True) -> None:
        """Run the networks in channels-last memory format (the default: about
        1.5-2x faster on CPU for these conv/elementwise-heavy nets; the values
        are the same). Inputs are converted on the way in, outputs back."""
        self.channels_last = bool(enabled)
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        """Activation checkpointing of the auto-encoder's blocks in training
        (several times less activation memory for about a third more compute;
        results unchanged)."""
        self.ae.grad_checkpoint = bool(enabled)

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self, x: torch.Tensor):
        enabled, dtype = self._amp
        if not enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=dtype)

    def parameter_counts(self) -> dict[str, int]:
        return {"unet": count_parameters(self.unet), "ae": count_parameters(self.ae),
                "total": count_parameters(self)}

    def set_phase(self, phase: int, train_encoder: bool = False) -> None:
        """Phase 1: everything trains. Phase 2: only the decoder trains, the
        registration and the encoder frozen, as in the paper; with
        ``train_encoder`` the whole auto-encoder trains (CDDFuse's phase II)."""
        for p in self.parameters():
            p.requires_grad_(phase == 1)
        if phase == 2:
            modules = [self.ae] if train_encoder else self.ae.decoder_modules()
            for m in modules:
                for p in m.parameters():
                    p.requires_grad_(True)

    # ------------------------------------------------------------------ networks
    def register(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fields ``(phi_p, phi_n)``, each (B, 2, H, W) in pixels (float32).

        With a global stage (model config ``global``, e.g. the released model),
        the U-Net refines the IR after the stage's affine map: ``phi_p`` is the
        composition, and ``phi_n`` the U-Net's ``phi_n`` followed by the inverse
        of the affine map. The global stage has no gradient. With the model
        option ``refine`` (:mod:`bsr.refine`), a residual fitted to the pair by
        MIND follows both (no gradient either).
        """
        if self.global_stage is None:
            phi_p, phi_n = self.register_local(ir, vis)
        else:
            phi_g, inv_g = self.global_stage.fields(ir, vis)
            loc_p, loc_n = self.register_local(warp(ir, phi_g), vis)
            phi_p, phi_n = compose(phi_g, loc_p), compose(loc_n, inv_g)
        if self.refiner is not None:
            phi_p, phi_n = self.refiner(ir, vis, phi_p, phi_n)
        return phi_p, phi_n

    def register_local(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The U-Net's fields alone (no global stage). With the model option
        ``local: false`` the local stage is off and both fields are zero (the
        released model's setting while its U-Net does not improve on the global
        stage: docs/model_card.md)."""
        if not self.use_local:
            b, _, h, w = ir.shape
            zero = torch.zeros(b, 2, h, w, dtype=torch.float32, device=ir.device)
            return zero, zero.clone()
        with self._autocast(ir):
            out = self.unet(self._in(ir), self._in(vis))
        out = out.float().contiguous()
        grid = self.config.get("local_grid")
        if grid:
            return coarse_field(out[:, :2], grid), coarse_field(out[:, 2:4], grid)
        return out[:, :2], out[:, 2:4]

    def reconstruct(self, x: torch.Tensor):
        """``(reconstruction, global_features, local_features)`` of an image (float32)."""
        with self._autocast(x):
            rec, g, l = self.ae(self._in(x))
        return rec.float().contiguous(), g.float(), l.float()

    def fuse_aligned(self, ir_reg: torch.Tensor, vis: torch.Tensor):
        """``Decoder(combine(Enc(V), Enc(T_hat)))``; returns (fused, feats_vis, feats_ir)."""
        with self._autocast(vis):
            fused, fv, ft = self.ae.fuse(self._in(vis), self._in(ir_reg), self.fusion_rule)
        return fused.float().contiguous(), tuple(f.float() for f in fv), tuple(f.float() for f in ft)

    # ------------------------------------------------------------------ training passes
    def _branch(self, ir, vis, bidirectional: bool, joint: bool) -> dict:
        phi_p, phi_n = self.register(ir, vis)
        ir_reg = warp(ir, phi_p)
        out = {"phi_p": phi_p, "ir_reg": ir_reg}
        rec_in = ir_reg if joint else ir_reg.detach()
        out["ir_rec"], out["ir_glob"], out["ir_loc"] = self.reconstruct(rec_in)
        if bidirectional:
            vis_reg = warp(vis, phi_n)
            out.update(phi_n=phi_n, vis_reg=vis_reg)
            rec_in = vis_reg if joint else vis_reg.detach()
        else:
            # one direction (ablation IV): the auto-encoder sees the visible image itself
            rec_in = vis
        out["vis_rec"], out["vis_glob"], out["vis_loc"] = self.reconstruct(rec_in)
        return out

    def phase1(self, ir: torch.Tensor, vis: torch.Tensor, pdg=None, generator: torch.Generator | None = None,
               *, bidirectional: bool = True, joint: bool = True) -> dict:
        """Phase-1 forward pass (Algorithm 1, typos fixed).

        Plain branch: ``phi_p, phi_n = UNet(T, V)``; ``T_hat = T o phi_p``,
        ``V_hat = V o phi_n``; reconstructions ``T_hat^R``, ``V_hat^R``.
        PDG branch (when ``pdg`` is given): the same on ``P(T), P(V)`` (the same
        patch ops for both), then IPDG restores the fields (vector components
        transformed too), the aligned and the reconstructed images.

        Args:
            pdg: a :class:`bsr.pdg.ProxyDataGenerator` or None (no PDG branch:
                ablation V).
            generator: ``torch.Generator`` for the PDG's random ops.
            bidirectional: False drops ``phi_n`` and ``V_hat`` (ablation IV).
            joint: False detaches the aligned images before the auto-encoder,
                so no reconstruction gradient reaches the registration
                (ablation III).

        Returns a dict with ``ir``, ``vis``, ``phi_p``, ``ir_reg``, ``ir_rec``,
        ``ir_glob``, ``ir_loc``, ``vis_rec``, ``vis_glob``, ``vis_loc`` (+
        ``phi_n``, ``vis_reg`` when bidirectional; otherwise the visible image
        itself is reconstructed, so L_rec and L_dec keep both modalities); with a PDG branch the
        same keys with the suffix ``_new`` for the PDG branch (``ir_new``,
        ``vis_new`` its inputs), ``_restored`` for the IPDG-restored fields and
        images (``phi_p_restored``, ``ir_reg_restored``, ``ir_rec_restored``,
        ...), and ``ops`` (the recorded patch ops).
        """
        out = {"ir": ir, "vis": vis}
        out.update(self._branch(ir, vis, bidirectional, joint))
        if pdg is not None:
            ir_new, vis_new, ops = pdg(ir, vis, generator=generator)
            out.update(ir_new=ir_new, vis_new=vis_new, ops=ops)
            new = self._branch(ir_new, vis_new, bidirectional, joint)
            for k, v in new.items():
                if k.endswith(("_glob", "_loc")):
                    out[k + "_new"] = v   # features stay in the PDG frame (L_dec is global)
                    continue
                out[k + "_new"] = v
                kind = "flow" if k.startswith("phi") else "image"
                out[k + "_restored"] = pdg.inverse(v, ops, kind=kind)
        return out

    def phase2(self, ir: torch.Tensor, vis: torch.Tensor) -> dict:
        """Phase-2 forward pass: register (no gradient), then fuse.

        Returns ``fused``, ``ir_reg``, ``phi_p`` and the features of both
        inputs (``vis_glob``, ``vis_loc``, ``ir_glob``, ``ir_loc``).
        """
        with torch.no_grad():
            phi_p, _ = self.register(ir, vis)
            ir_reg = warp(ir, phi_p)
        fused, (vg, vl), (tg, tl) = self.fuse_aligned(ir_reg, vis)
        return {"ir": ir, "vis": vis, "phi_p": phi_p, "ir_reg": ir_reg, "fused": fused,
                "vis_glob": vg, "vis_loc": vl, "ir_glob": tg, "ir_loc": tl}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def fuse(self, ir: torch.Tensor, vis: torch.Tensor):
        """Register the IR to the visible image and fuse.

        ``ir``, ``vis``: (B, 1, H, W) in [0, 1], any H, W. Returns
        ``(fused, ir_registered, phi_p)``.
        """
        phi_p, _ = self.register(ir, vis)
        ir_reg = warp(ir, phi_p)
        fused, _, _ = self.fuse_aligned(ir_reg, vis)
        return fused, ir_reg, phi_p
