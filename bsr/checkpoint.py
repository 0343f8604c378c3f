"""The B-SR checkpoint file: one home for its format, writing and reading.

A checkpoint is a ``torch.save`` dict of tensors and plain values only, so it
loads with ``torch.load(weights_only=True)``:

* ``format``: :data:`CHECKPOINT_FORMAT`;
* ``model_config`` and ``model``: the model config and the weights, enough to
  rebuild the model with :func:`load_checkpoint` (no training code needed);
* ``train_config``, ``step``, ``phase``, ``optimizer``, ``scaler``, ``rng``
  and ``torch_version``: what ``bsr train`` needs to resume a run.

:func:`read_checkpoint` reads the dict without running code from the file:
any pickled object other than a tensor or a plain value is refused. Format 1
files (which also held numpy RNG state) are read all the same.
"""

from __future__ import annotations

import dataclasses
import io
import numbers
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .io import atomic_path
from .model import BSR, complete_model_config

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_FORMATS", "write_torch", "save_checkpoint", "read_checkpoint", "load_checkpoint",
           "load_state_checked", "plain_values", "stored_train_config", "rng_state", "set_rng_state"]

# format 2: tensors and plain values only (loads with ``torch.load(weights_only=True)``);
# format 1 (before) also held numpy RNG state, read by :func:`read_checkpoint` all the same
CHECKPOINT_FORMAT = "bsr-checkpoint/2"
CHECKPOINT_FORMATS = ("bsr-checkpoint/1", CHECKPOINT_FORMAT)


# ----------------------------------------------------------------------------- writing

def plain_values(x, where: str = "config"):
    """``x`` as plain dicts, lists, strings, numbers, booleans and None (numpy scalars and
    arrays, tuples and paths converted); anything else is a ValueError naming ``where``."""
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, dict):
        return {(k if type(k) in (str, int) else str(k)): plain_values(v, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_values(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (str, os.PathLike)):
        return str(x) if isinstance(x, str) else os.fspath(x)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return plain_values(x.tolist(), where)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return plain_values(dataclasses.asdict(x), where)
    raise ValueError(f"{where}: a {type(x).__name__} cannot be stored in a checkpoint (plain values only)")


def stored_train_config(train_config) -> dict:
    """A training config (a mapping, or a dataclass such as ``TrainConfig``) as a checkpoint stores it."""
    return plain_values(train_config, "train_config")


def rng_state() -> dict:
    """RNG states as tensors and plain values (a checkpoint loads with ``weights_only=True``)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"kind": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore the RNG states of :func:`rng_state` (or of a format-1 checkpoint)."""
    torch.set_rng_state(st["torch"])
    npst = st["numpy"]
    if isinstance(npst, dict):            # format 2; format 1 stored numpy's own tuple
        key = npst["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        npst = (npst["kind"], key.astype(np.uint32), int(npst["pos"]), int(npst["has_gauss"]),
                float(npst["cached_gaussian"]))
    np.random.set_state(npst)
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def write_torch(obj, path) -> Path:
    """``torch.save(obj)`` to ``path`` by an atomic rename, its bytes a function of ``obj`` alone.

    torch names the archive's root folder after the file it writes, so saving
    straight to the temporary file would put that file's random name into the
    bytes and the checksum; the archive is built in memory instead.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        Path(tmp).write_bytes(buf.getbuffer())
    return path


def save_checkpoint(path, model: BSR, train_config, step: int, phase: int, optimizer=None,
                    scaler=None) -> Path:
    """Write a checkpoint atomically (temp file + rename). It holds tensors and plain
    values only, so it loads with ``torch.load(weights_only=True)``.

    ``train_config`` is the training config as a mapping (or a dataclass such as
    ``bsr.training.TrainConfig``); it is stored as plain values.
    """
    ck = {
        "format": CHECKPOINT_FORMAT,
        "model_config": plain_values(model.config, "model_config"),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": stored_train_config(train_config),
        "step": int(step),
        "phase": int(phase),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "torch_version": str(torch.__version__),      # a plain str, not torch's TorchVersion object
    }
    return write_torch(ck, path)


# ----------------------------------------------------------------------------- reading

# the only non-plain objects a format-1 checkpoint holds: numpy arrays (RNG state) and torch's version string
_V1_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray",
               "numpy.dtype", "numpy.dtypes.UInt32DType", "torch.torch_version.TorchVersion")


def _v1_safe_globals() -> list:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:   # numpy < 2
        from numpy.core.multiarray import _reconstruct
    from torch.torch_version import TorchVersion

    return [(_reconstruct, "numpy._core.multiarray._reconstruct"),
            (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
            type(np.dtype(np.uint32)), TorchVersion]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def read_checkpoint(path, map_location="cpu") -> dict:
    """The dict of a B-SR checkpoint, read without running any code from the file.

    Only tensors and plain values are unpickled (``weights_only=True``); a
    format-1 file may also hold numpy arrays and torch's version string. A
    file that holds any other pickled object is refused (ValueError), as is a
    corrupt file or one that is not a B-SR checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a refused global, or any failure of a damaged file
        import zipfile

        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: corrupt or not a checkpoint (not a torch.save archive: truncated, "
                             "damaged or another kind of file)") from None
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - not a readable torch.save archive
            unsafe = []
        if not unsafe:
            raise ValueError(f"{path}: corrupt or not a checkpoint ({_first_line(e)})") from None
        if not set(unsafe) <= set(_V1_GLOBALS):
            names = ", ".join(sorted(set(unsafe) - set(_V1_GLOBALS)))
            raise ValueError(f"{path}: refused: the file holds pickled Python objects ({names}) that could run "
                             "code when loaded; a B-SR checkpoint holds only tensors and plain values (if an "
                             "older bsr version wrote it, retrain with this version)") from None
        try:
            with torch.serialization.safe_globals(_v1_safe_globals()):
                ck = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e2:  # noqa: BLE001
            raise ValueError(f"{path}: corrupt or not a checkpoint ({_first_line(e2)})") from None
    if not isinstance(ck, dict) or ck.get("format") not in CHECKPOINT_FORMATS:
        raise ValueError(f"{path}: not a B-SR checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return ck


def load_state_checked(model: nn.Module, state, path) -> None:
    """``model.load_state_dict(state)`` with a one-line ValueError naming ``path`` when they do not match."""
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the checkpoint holds no model weights")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shape = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
    if missing or extra or shape:
        parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                 (("missing", missing), ("unexpected", extra), ("of another shape", shape)) if v]
        raise ValueError(f"{path}: the weights do not fit the checkpoint's model config: "
                         f"{'; '.join(parts)} (a damaged or edited checkpoint)")
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - e.g. a non-tensor value
        raise ValueError(f"{path}: the weights cannot be loaded ({_first_line(e)})") from None


def load_checkpoint(path, map_location="cpu") -> BSR:
    """Rebuild a :class:`~bsr.model.BSR` from a checkpoint (:func:`save_checkpoint`, ``bsr train``).

    The checkpoint stores the model config beside the weights, so no training
    config or code is needed. The model comes back in eval mode. The file is
    read by :func:`read_checkpoint`, so it cannot run code; every problem
    with it is a one-line ValueError naming the file.
    """
    ck = read_checkpoint(path, map_location)
    cfg = ck.get("model_config")
    if not isinstance(cfg, dict) or not cfg:
        raise ValueError(f"{path}: the checkpoint holds no model config (not written by bsr train?)")
    try:
        model = BSR(complete_model_config(cfg))
    except Exception as e:  # noqa: BLE001 - an unknown key or a wrong value in the stored config
        raise ValueError(f"{path}: its model config cannot be built ({_first_line(e)})") from None
    load_state_checked(model, ck.get("model"), path)
    model.eval()
    return model
