"""The L_nda targets of a whole pair in both directions, left-right checked, and
their cache on disk (``$BSR_CACHE``)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from ..warp import warp
from .consistency import nda_consistency
from .search import nda_search


NDA_CACHE_VERSION = 2   # the key also holds a digest of the search's source (_nda_code_digest)


def nda_cache_dir() -> Path | None:
    """Where L_nda targets are cached: ``$BSR_CACHE/nda`` (``BSR_CACHE=off``
    disables the cache), else ``$XDG_CACHE_HOME/bsr/nda`` or ``~/.cache/bsr/nda``."""
    env = os.environ.get("BSR_CACHE")
    if env is not None and env.strip().lower() in ("off", "0", "none", "false", ""):
        return None
    if env:
        return Path(env).expanduser() / "nda"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bsr" / "nda"


@functools.lru_cache(maxsize=1)
def _nda_code_digest() -> str:
    """SHA-256 of the source the targets depend on (the search, the consensus
    filter, this module and :func:`bsr.warp.warp`), so an edited search never
    returns targets cached by the old one."""
    import inspect
    import sys

    from . import consistency, search

    src = "".join(inspect.getsource(m) for m in (search, consistency, sys.modules[__name__], warp))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def cached_nda_targets(ir: torch.Tensor, vis: torch.Tensor, options: dict) -> dict:
    """:func:`pair_targets`, cached on disk by the content of the two images and
    the options (SHA-256), so the many runs of a study that train on the same
    pairs search once (about 2 s per RoadScene pair on one core; benchmarks/bench_nda_targets.py). A cache file
    that cannot be read is recomputed and replaced; writes are atomic."""
    cache = nda_cache_dir()
    if cache is None:
        return pair_targets(ir, vis, options)
    a = ir.detach().to(torch.float32).contiguous().cpu().numpy()
    b = vis.detach().to(torch.float32).contiguous().cpu().numpy()
    h = hashlib.sha256()
    h.update(json.dumps({"v": NDA_CACHE_VERSION, "code": _nda_code_digest(), "opts": options,
                         "shape": [a.shape, b.shape]}, sort_keys=True, default=str).encode())
    h.update(a.tobytes())
    h.update(b.tobytes())
    path = cache / f"{h.hexdigest()}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: (torch.from_numpy(z[f"{k}_delta"]), torch.from_numpy(z[f"{k}_valid"]))
                        for k in ("nda_p", "nda_n")}
        except Exception:   # a damaged file: recompute below
            pass
    out = pair_targets(ir, vis, options)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {f"{k}_{n}": t.numpy() for k, (d, v) in out.items() for n, t in (("delta", d), ("valid", v))}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
    except OSError:       # a read-only or full cache only costs time
        pass
    return out


def pair_targets(ir: torch.Tensor, vis: torch.Tensor, options: dict) -> dict:
    """L_nda targets of one whole pair in both directions: {"nda_p": (delta, valid), "nda_n": ...}.

    ``options`` are :func:`nda_search` keywords plus ``lr_check``
    (px, default 1.0; None disables it): a left-right consistency check as in
    stereo matching. A target ``delta_p(p)`` (IR onto visible) is kept only
    where the reverse search agrees, ``|delta_p(p) + delta_n(p + delta_p(p))| <
    lr_check``, and likewise for ``delta_n``. Cross-modal matches are noisy; on
    RoadScene with a 5 px shift and 15 px windows this raises the share of
    targets within 1 px of the truth from 0.35 to 0.43 (docs/method.md).
    ``consensus`` (optional, a dict of :func:`nda_consistency`
    keywords, e.g. ``{"tau": 1.5, "window": 33}``) then drops the targets that
    disagree with the median of their neighbours; with ``"dense": True`` the
    targets become that median of the kept targets at every pixel that has
    enough of them around.
    """
    opts = dict(options)
    tol = opts.pop("lr_check", 1.0)
    consensus = opts.pop("consensus", None)
    ir, vis = ir.reshape(1, 1, *ir.shape[-2:]), vis.reshape(1, 1, *vis.shape[-2:])
    with torch.no_grad():
        tp = nda_search(ir, vis, **opts)   # phi_p: IR (moving) onto the visible image
        tn = nda_search(vis, ir, **opts)   # phi_n: visible (moving) onto the IR image
        vp, vn = tp.valid, tn.valid
        if tol is not None:
            def agree(a, b, b_valid):
                back = warp(b.delta, a.delta)                       # b's target at p + a(p)
                seen = warp(b_valid.to(a.delta.dtype), a.delta) > 0.99
                return seen & ((a.delta + back).norm(dim=1, keepdim=True) < tol)
            vp, vn = tp.valid & agree(tp, tn, tn.valid), tn.valid & agree(tn, tp, tp.valid)
        dp, dn = tp.delta, tn.delta
        if consensus and consensus.get("dense"):
            (dp, vp), (dn, vn) = nda_consistency(dp, vp, **consensus), nda_consistency(dn, vn, **consensus)
        elif consensus:
            vp, vn = nda_consistency(dp, vp, **consensus), nda_consistency(dn, vn, **consensus)
    return {"nda_p": (dp[0], vp[0]), "nda_n": (dn[0], vn[0])}
