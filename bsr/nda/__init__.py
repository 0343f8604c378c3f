"""L_nda, the neighbourhood dynamic alignment term of Sec. 3.4 (Eq. 5-6), in one place.

=========================  =======================================================
name                       what it is
=========================  =======================================================
:class:`NDATargets`        where each edge pixel's match lies (delta, valid, score)
:func:`nda_search`         the non-differentiable neighbourhood search (nearest or NCC)
:func:`nda_consistency`    optional local-consensus filter of the targets (not in the paper)
:func:`nda_from_targets`   the differentiable part: L_di and L_an of a field
:func:`nda_loss`           search and loss in one call
:func:`cached_nda_targets` both directions of a whole pair, left-right checked, on disk
=========================  =======================================================

Images are (B, C, H, W) in [0, 1], fields (B, 2, H, W) in pixels, x first,
for backward warping (:mod:`bsr.warp`). The targets depend on the two images
only, never on the network, so they are searched once per image and cached
(``$BSR_CACHE``); training moves them to the PDG branch with
:meth:`NDATargets.through_pdg`. Choices and their measured reasons are in
``docs/method.md``; :func:`bsr.study.diagnostics.nda_target_accuracy` scores the
targets against the ground truth.

The package holds one module per part: ``search``, ``consistency``, ``loss`` and
``cache`` (the whole pair's targets, :func:`bsr.nda.cache.pair_targets` uncached).
"""

from __future__ import annotations

from .cache import cached_nda_targets, nda_cache_dir
from .consistency import nda_consistency
from .loss import nda_from_targets, nda_loss
from .search import NDATargets, nda_search

__all__ = ["NDATargets", "nda_search", "nda_consistency", "nda_from_targets", "nda_loss",
           "cached_nda_targets", "nda_cache_dir"]
