"""B-SR: bi-directional self-registration for misaligned infrared-visible fusion.

The core modules (``warp``, ``simulate``, ``synthetic``, ``data``, ``pdg``,
``models``, ``losses``, ``train``, ``fuse``, ``metrics``, ``baselines``) need
only torch, numpy, scipy, scikit-image, pandas, pyyaml, tqdm and pillow.
Plotting and workflow helpers import matplotlib and friends lazily.
"""

__version__ = "0.1.0"
