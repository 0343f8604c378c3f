"""Loss composition for the two training phases, with every term switchable.

All loss weights the paper does not give live in :class:`LossConfig` (one
place); the paper's own numbers are ``w1 = 5``, ``w2 = 1`` (L_ss) and
``mu = 1e-4`` (effective-edge threshold).

Phase 1 (registration + reconstruction), per branch (plain, and the PDG
branch when on) and per direction (IR -> VIS with ``phi_p``, VIS -> IR with
``phi_n`` when bidirectional); each term below is the mean over the
(branch, direction) instances it has, so a weight keeps its meaning across
ablations::

    total = nda    * (L_di + L_an)           alignment = "nda"
          + edge   * L_sobel_edge            alignment = "sobel" (Exp. I)
          + epr    * L_epr                   use_epr
          + ss     * (ss_field * L_ss(fields) + L_ss(aligned) + L_ss(reconstructed))   use_pdg
          + smooth * L_smooth                use_smooth
          + rec    * L_recp                  use_rec
          + dec    * L_dec                   use_dec

Phase 2 (fusion; decoder only)::

    total = fusion_int * L_int + fusion_grad * L_grad + fusion_dec * L_dec
          + fusion_qabf * (qabf_max - Q_soft)   not in the paper; off by default

L_nda's penalty is ``nda_form`` (default ``vector``, a Charbonnier penalty on the
vector difference; ``polar`` is Eq. 6 as printed); ``ss_teacher`` can detach one
side of every L_ss pair. Every deviation from the paper is a field of
:class:`LossConfig` with its measured reason in docs/method.md.

L_dec in phase 2 depends only on the frozen encoder, so it is a constant
there (logged, no gradient), as in the paper's Eq. 13.

Ablations (``VARIANTS``): I = Sobel edge loss instead of L_nda; II = no
alignment loss; III = no joint optimisation (the auto-encoder sees detached
aligned images); IV = one direction only (no ``phi_n``, no L_epr); V = no
PDG/IPDG branch (no L_ss).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from . import losses
from .metrics.qabf import qabf_max
from .nda import NDATargets, nda_loss, nda_search
from .pdg import seam_mask

__all__ = ["LossConfig", "Objective", "VARIANTS", "variant_config"]

ALIGNMENTS = ("nda", "sobel", "none")
NDA_FORMS = ("polar", "polar_l1", "vector")
SS_TEACHERS = ("none", "plain", "pdg")
NDA_LR_CHECK = 1.0          # px: left-right check of precomputed L_nda targets (bsr.nda.cache.pair_targets)
NDA_CONSENSUS_WINDOW = 33   # px: the neighbourhood of the consensus filter (with nda_consensus)

# Switch settings of each ablation (Table 4 of the paper). "full" is B-SR.
VARIANTS: dict[str, dict] = {
    "full": {},
    "I": {"alignment": "sobel"},
    "II": {"alignment": "none"},
    "III": {"joint": False},
    "IV": {"bidirectional": False, "use_epr": False},
    "V": {"use_pdg": False},
}


@dataclass
class LossConfig:
    """Weights, loss parameters and switches (defaults: the full model)."""

    # -- phase-1 weights (not given by the paper; our defaults)
    nda: float = 1.0          # L_nda = L_di + L_an
    edge: float = 1.0         # Sobel edge loss (Exp. I only)
    epr: float = 1.0          # L_epr
    ss: float = 1.0           # L_ss (its inner w1/w2 below)
    smooth: float = 1.0       # L_smooth
    rec: float = 1.0          # L_recp
    dec: float = 1.0          # L_dec in phase 1
    # -- phase-2 weights
    fusion_int: float = 1.0   # intensity term of L_fusion (paper Eq. 13: 1)
    fusion_grad: float = 1.0  # gradient term of L_fusion (paper Eq. 13: 1; CDDFuse uses 10)
    fusion_dec: float = 1.0   # L_dec in L_fusion
    fusion_qabf: float = 0.0  # qabf_max() - differentiable Q^{AB/F} of the crop (bsr.losses.edge_transfer; 0: paper)
    fusion_target: str = "max"  # L_int target: "max" (paper Eq. 13) | "saliency" | "two_scale" (bsr.losses.fusion_loss)
    # -- the paper's loss parameters
    w1: float = 5.0           # L1 weight in L_ss (paper)
    w2: float = 1.0           # L2 weight in L_ss (paper)
    mu: float = 1e-4          # effective-edge threshold (paper)
    nda_radius: int = 8       # L_nda neighbourhood radius in px (not given by the paper)
    # -- switches (ablations, Table 4)
    alignment: str = "nda"    # "nda" | "sobel" (Exp. I) | "none" (Exp. II)
    use_epr: bool = True
    use_pdg: bool = True      # PDG/IPDG branch and L_ss (Exp. V: False)
    bidirectional: bool = True  # phi_n (Exp. IV: False)
    joint: bool = True        # reconstruction gradient into registration (Exp. III: False)
    use_smooth: bool = True
    use_rec: bool = True
    use_dec: bool = True
    # -- deviations from the paper, each with its measured reason in docs/method.md; the `paper`
    #    profile (config/paper.yaml) sets the paper's loss forms (nda_form, ss_field, ss_teacher)
    nda_match: str = "ncc"    # L_nda search: "ncc" (patch match) | "nearest" (the literal reading); see bsr.nda
    nda_window: int = 15      # NCC window of the search (px); 15 beats 7 cross-modally
    nda_pdg_targets: str = "search"  # PDG branch: own search (paper) | "transfer" (PDG of the plain targets)
    nda_targets: str = "precomputed"  # "precomputed": searched once per whole training image by the data
                              # loader (the search depends only on the input pair), carried with each
                              # crop; the PDG branch gets them through the PDG ops. "search": every step.
    nda_consensus: float | None = None  # px; keep a precomputed target only within this distance of the median
                              # of the targets around it, in a 33 px window (bsr.nda.nda_consistency; None: paper)
    nda_consensus_dense: bool = False  # targets = that median of the kept targets at every pixel with enough
                              # of them around (dense targets in flat regions; needs nda_consensus)
    nda_form: str = "vector"  # L_nda penalty: "vector" (Charbonnier of f - d, eps 0.1 px: registers faster and is
                              # robust to the noisy cross-modal targets) | "polar" (Eq. 6 as printed:
                              # (|f|-|d|)^2 + angle) | "polar_l1" (| |f|-|d| | + angle); see bsr.nda.nda_from_targets
    ss_field: float = 1.0     # extra factor on L_ss's field term (fields are in px, images in [0, 1]; 1 = paper)
    ss_teacher: str = "none"  # L_ss gradient: "none" (both branches, paper) | "plain" (plain branch detached:
                              # the PDG branch follows it) | "pdg" (restored PDG branch detached)

    def __post_init__(self):
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"loss.alignment must be one of {ALIGNMENTS}; got {self.alignment!r}")
        if self.fusion_target not in losses.FUSION_TARGETS:
            raise ValueError(f"loss.fusion_target must be one of {losses.FUSION_TARGETS}; got {self.fusion_target!r}")
        if self.nda_targets not in ("precomputed", "search"):
            raise ValueError(f"loss.nda_targets must be 'precomputed' or 'search'; got {self.nda_targets!r}")
        if self.nda_form not in NDA_FORMS:
            raise ValueError(f"loss.nda_form must be one of {NDA_FORMS}; got {self.nda_form!r}")
        if self.ss_teacher not in SS_TEACHERS:
            raise ValueError(f"loss.ss_teacher must be one of {SS_TEACHERS}; got {self.ss_teacher!r}")
        if self.nda_consensus is not None and self.nda_targets != "precomputed":
            raise ValueError("loss.nda_consensus filters precomputed targets only: set loss.nda_targets: "
                             "precomputed or loss.nda_consensus: null")
        tau = self.nda_consensus
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0):
            raise ValueError(f"loss.nda_consensus must be a number > 0 (px); got {tau!r}")
        if not isinstance(self.nda_consensus_dense, bool):
            raise ValueError(f"loss.nda_consensus_dense must be true or false; got {self.nda_consensus_dense!r}")
        if self.nda_consensus_dense and self.nda_consensus is None:
            raise ValueError("loss.nda_consensus_dense needs loss.nda_consensus (the filter's threshold, px)")
        if self.nda_pdg_targets not in ("search", "transfer"):
            raise ValueError(f"loss.nda_pdg_targets must be 'search' or 'transfer'; got {self.nda_pdg_targets!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "LossConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in names:
                raise ValueError(f"unknown loss option {k!r}; known: {', '.join(sorted(names))}")
        return cls(**d)


    def search_options(self) -> dict:
        """Keyword arguments of :func:`bsr.nda.nda_search` for this config."""
        return dict(radius=self.nda_radius, mu=self.mu, match=self.nda_match, window=self.nda_window,
                    min_score=0.5, edge_norm="none", stride=1)

    def precompute_options(self) -> dict | None:
        """What the data loader needs to precompute L_nda targets (None: not needed)."""
        if self.alignment != "nda" or self.nda_targets != "precomputed":
            return None
        opts = {**self.search_options(), "lr_check": NDA_LR_CHECK}
        if self.nda_consensus is not None:   # the key only when on (the cache key also digests the code)
            opts["consensus"] = {"tau": float(self.nda_consensus), "window": NDA_CONSENSUS_WINDOW}
            if self.nda_consensus_dense:
                opts["consensus"]["dense"] = True
        return opts


def variant_config(variant: str, **overrides) -> LossConfig:
    """A :class:`LossConfig` for a named variant (``full``, ``I`` ... ``V``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return LossConfig.from_dict({**VARIANTS[variant], **overrides})


def _mean(xs):
    return torch.stack(list(xs)).mean() if xs else None


class Objective:
    """Callable loss composition: ``phase1(out)`` / ``phase2(out)`` -> (total, terms).

    ``out`` is the dict of :meth:`bsr.model.BSR.phase1` / ``phase2``; ``terms``
    maps every computed term (unweighted) and ``total`` to a float.
    ``last_tensors`` keeps the unweighted term tensors of the last call.
    """

    def __init__(self, cfg: LossConfig | None = None, pdg=None):
        self.cfg = cfg or LossConfig()
        self.pdg = pdg
        self.last_tensors: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def _directions(self, d: dict, suffix: str = ""):
        """(moving, fixed, field, warped) per direction of one branch."""
        s = suffix
        dirs = [(d["ir" + s], d["vis" + s], d["phi_p" + s], d["ir_reg" + s])]
        if self.cfg.bidirectional and ("phi_n" + s) in d:
            dirs.append((d["vis" + s], d["ir" + s], d["phi_n" + s], d["vis_reg" + s]))
        return dirs

    def _nda_seam_mask(self, ref: torch.Tensor):
        """Pixels of the PDG image farther than the search radius from a seam (None: no seams)."""
        if self.pdg is None or self.pdg.n < 2:
            return None
        h, w = ref.shape[-2:]
        return seam_mask(h, w, self.pdg.n, self.cfg.nda_radius, device=ref.device, dtype=ref.dtype)

    # ------------------------------------------------------------------ phase 1
    def phase1(self, d: dict, progress: float = 1.0):
        """``progress``: the fraction of phase 1 done (for the L_ss ramp-up)."""
        c = self.cfg
        branches = [""] + (["_new"] if c.use_pdg and "phi_p_new" in d else [])
        t: dict[str, torch.Tensor] = {}
        weighted = []

        if c.alignment == "nda":
            search = c.search_options()
            pre = c.nda_targets == "precomputed"
            if pre and "nda_p_delta" not in d:
                raise ValueError("loss.nda_targets is 'precomputed' but the batch carries no L_nda targets "
                                 "(build the loader with nda=LossConfig.precompute_options())")
            di, an, plain_targets = [], [], []
            for s in branches:
                # a precomputed target must not cross a patch seam of the PDG image
                mask = self._nda_seam_mask(d["ir"]) if s and pre else None
                for j, (mov, fix, flow, _) in enumerate(self._directions(d, s)):
                    if pre and not s:
                        key = ("nda_p", "nda_n")[j]
                        tg = NDATargets(d[f"{key}_delta"], d[f"{key}_valid"], d[f"{key}_valid"].float())
                        plain_targets.append(tg)
                    elif s and (pre or c.nda_pdg_targets == "transfer"):
                        tg = plain_targets[j].through_pdg(self.pdg, d["ops"])
                    else:
                        tg = nda_search(mov, fix, **search)
                        if not s:
                            plain_targets.append(tg)
                    a, b = nda_loss(mov, fix, flow, mask=mask, targets=tg, form=c.nda_form)
                    di.append(a)
                    an.append(b)
            t["nda_di"], t["nda_an"] = _mean(di), _mean(an)
            weighted.append(c.nda * (t["nda_di"] + t["nda_an"]))
        elif c.alignment == "sobel":
            t["edge"] = _mean([losses.sobel_edge_loss(warped, fix)
                               for s in branches for _, fix, _, warped in self._directions(d, s)])
            weighted.append(c.edge * t["edge"])

        if c.use_epr:
            t["epr"] = _mean([losses.epr_loss(mov, fix, warped)
                              for s in branches for mov, fix, _, warped in self._directions(d, s)])
            weighted.append(c.epr * t["epr"])

        if c.use_smooth:
            t["smooth"] = _mean([losses.smooth_loss(flow)
                                 for s in branches for _, _, flow, _ in self._directions(d, s)])
            weighted.append(c.smooth * t["smooth"])

        names = ["ir"] + (["vis"] if "vis_rec" in d else [])
        if c.use_rec:
            rec = []
            for s in branches:
                for n in names:
                    target = d.get(f"{n}_reg{s}", d[f"{n}{s}"])
                    if not c.joint:   # Exp. III: no reconstruction gradient into the registration, target included
                        target = target.detach()
                    rec.append(losses.recon_loss(target, d[f"{n}_rec{s}"]))
            t["rec"] = _mean(rec)
            weighted.append(c.rec * t["rec"])

        if c.use_dec and "vis_glob" in d:
            t["dec"] = _mean([losses.decomposition_loss(d["ir_glob" + s], d["vis_glob" + s],
                                                        d["ir_loc" + s], d["vis_loc" + s])
                              for s in branches])
            weighted.append(c.dec * t["dec"])

        if "_new" in branches:
            def ss(a, b):   # L_ss of one (plain, restored) pair, with the teacher side detached
                if c.ss_teacher == "plain":
                    a = a.detach()
                elif c.ss_teacher == "pdg":
                    b = b.detach()
                return losses.ss_loss(a, b, c.w1, c.w2)

            fields = ["phi_p"] + (["phi_n"] if c.bidirectional and "phi_n" in d else [])
            t["ss_field"] = _mean([ss(d[k], d[k + "_restored"]) for k in fields])
            regs = ["ir_reg"] + (["vis_reg"] if c.bidirectional and "vis_reg" in d else [])
            t["ss_aligned"] = _mean([ss(d[k], d[k + "_restored"]) for k in regs])
            t["ss_rec"] = _mean([ss(d[f"{n}_rec"], d[f"{n}_rec_restored"]) for n in names])
            weighted.append(c.ss * (c.ss_field * t["ss_field"] + t["ss_aligned"] + t["ss_rec"]))

        if not weighted:
            raise ValueError("every phase-1 loss term is switched off")
        total = torch.stack(weighted).sum()
        return total, self._finish(total, t)

    # ------------------------------------------------------------------ phase 2
    def phase2(self, d: dict):
        c = self.cfg
        t: dict[str, torch.Tensor] = {}
        fl = losses.fusion_loss(d["fused"], d["ir_reg"], d["vis"], target=c.fusion_target)
        t["fusion_int"], t["fusion_grad"] = fl
        weighted = [c.fusion_int * fl[0] + c.fusion_grad * fl[1]]
        if c.fusion_qabf:
            t["fusion_qabf"] = qabf_max() - losses.edge_transfer(d["fused"], d["ir_reg"], d["vis"],
                                                                 padding="replicate")
            weighted.append(c.fusion_qabf * t["fusion_qabf"])
        if c.use_dec:
            t["dec"] = losses.decomposition_loss(d["ir_glob"], d["vis_glob"], d["ir_loc"], d["vis_loc"])
            weighted.append(c.fusion_dec * t["dec"])
        total = torch.stack(weighted).sum()
        return total, self._finish(total, t)

    def _finish(self, total, t):
        self.last_tensors = dict(t)
        terms = {k: float(v.detach()) for k, v in t.items()}
        terms["total"] = float(total.detach())
        return terms
