"""B-SR: bi-directional self-registration for misaligned infrared-visible fusion.

The core modules (``warp``, ``simulate``, ``synthetic``, ``data``, ``pdg``,
``models``, ``losses``, ``train``, ``fuse``, ``metrics``, ``baselines``) need
only torch, numpy, scipy, scikit-image, pandas, pyyaml, tqdm and pillow.
Plotting and workflow helpers import matplotlib and friends lazily.
"""

__version__ = "0.1.0"


def load_pretrained(name=None, map_location="cpu"):
    """The shipped model (default: the RoadScene-trained one) in eval mode; see :mod:`bsr.pretrained`."""
    from .pretrained import load_pretrained as _load

    return _load(name, map_location=map_location)
