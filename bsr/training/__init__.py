"""Training of B-SR: phase 1 (registration + reconstruction), then phase 2 (fusion).

Usage::

    python -m bsr.training --config config/train/quick.yaml [--set key=value ...]
    bsr train --config FILE [--set phase1.steps=200 --set loss.nda=0.5] [--resume | --fresh]

    from bsr.training import TrainConfig, train

The config is a YAML mapping of :class:`TrainConfig` fields (nested
mappings for ``model``, ``loss``, ``phase1``, ``phase2``, ``data``); an
unknown key fails with a ValueError naming it (:mod:`bsr.training.config`).

Outputs in ``out_dir``: ``config.yaml`` (resolved config), ``log.csv`` (every
loss term per step, written as it goes), ``last.pt`` (the latest checkpoint,
rewritten every ``ckpt_every`` steps, atomically), ``phase1.pt`` (end of
phase 1) and ``final.pt``. A checkpoint (:mod:`bsr.checkpoint`) holds the
model config and weights (loadable with :func:`bsr.checkpoint.load_checkpoint`),
plus optimizer, scaler and RNG state for resuming: tensors and plain values
only, read with ``torch.load(weights_only=True)``. ``bsr train`` resumes only a
run of the same config (``resume="same"``; :mod:`bsr.training.resume`);
``--resume`` continues a changed one.

Determinism: the data order and crops of each epoch, and the PDG's random ops
of each step, come from generators seeded by (seed, phase, epoch/step), so a
run resumed from ``last.pt`` sees exactly the batches and patch ops it would
have seen; on CPU with ``deterministic: true`` the final weights equal those
of an uninterrupted run (:mod:`bsr.training.loop`).
"""

from .config import TrainConfig
from .loop import train

__all__ = ["TrainConfig", "train"]
