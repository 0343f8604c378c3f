"""B-SR: bi-directional self-registration for misaligned infrared-visible fusion.

The core (``warp``, ``pdg``, ``nda``, ``losses``, ``objective``, ``model``,
``networks``, ``datasets``, ``training``, ``checkpoint``, ``fuse``, ``metrics``,
``baselines``) needs only torch, numpy, scipy, scikit-image, OpenCV, pandas,
pyyaml, tqdm, pillow and threadpoolctl. ``study`` runs the paper's tables;
plotting and workflow helpers import matplotlib and friends lazily.
"""

__version__ = "0.1.0"


def load_pretrained(name=None, map_location="cpu", refine=None):
    """The shipped model (default: the RoadScene-trained one) in eval mode, with its per-pair MIND
    refinement (:mod:`bsr.refine`) on; ``refine=False`` switches it off, ``True`` or a dict of settings
    sets it; see :mod:`bsr.pretrained`."""
    from .pretrained import load_pretrained as _load

    return _load(name, map_location=map_location, refine=refine)
