"""Image and array I/O with clear errors and atomic writes.

Images are returned as float32 numpy arrays in [0, 1]: (H, W) for grey,
(H, W, 3) for colour. Grey images stored with three equal channels come back
as (H, W). 16-bit images are scaled by 1/65535; an alpha channel is refused
unless it is fully opaque (then dropped).

Colour conversion follows ITU-R BT.601 full range (as OpenCV's
``COLOR_RGB2YCrCb`` and the fusion field's code): Y in [0, 1], Cb/Cr centred
on 0.5.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ImageReadError", "IMAGE_SUFFIXES", "read_image", "write_image", "rgb_to_ycbcr",
    "ycbcr_to_rgb", "atomic_path", "save_npz", "to_uint8", "umask_mode",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class ImageReadError(ValueError):
    """An image file is missing, unreadable, or of an unsupported kind."""


def read_image(path, grey_tolerance: float = 0.0) -> np.ndarray:
    """Read an image as float32 in [0, 1]: (H, W) if grey, (H, W, 3) if colour.

    A 3-channel file whose channels are equal (within ``grey_tolerance``, on the
    [0, 1] scale) is returned as one channel.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None
    if mode in ("I;16", "I;16B", "I;16L", "I") or arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif mode == "F":
        raise ImageReadError(f"{path}: floating-point images are not supported (mode F)")
    else:
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype} (mode {mode})")
    if mode == "P":
        raise ImageReadError(f"{path}: palette images are not supported; save as grey or RGB")
    if arr.ndim == 3:
        if arr.shape[2] == 4 or mode in ("RGBA", "LA"):
            alpha = arr[..., -1]
            if alpha.min() < 1.0:
                raise ImageReadError(
                    f"{path}: has a transparent alpha channel; flatten it first")
            arr = arr[..., :-1]
        if arr.shape[2] == 1:
            arr = arr[..., 0]
        elif arr.shape[2] == 3:
            spread = max(np.abs(arr[..., 0] - arr[..., 1]).max(), np.abs(arr[..., 0] - arr[..., 2]).max())
            if spread <= grey_tolerance:
                arr = arr[..., 0]
        else:
            raise ImageReadError(f"{path}: {arr.shape[2]} channels; expected 1, 3 or 4")
    return np.ascontiguousarray(arr, dtype=np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W, 3) YCbCr (BT.601 full range, Cb/Cr offset 0.5)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return np.stack((y, cb, cr), axis=-1).astype(np.float32)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 0.5, ycc[..., 2] - 0.5
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return np.clip(np.stack((r, g, b), axis=-1), 0.0, 1.0).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding and clipping."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows
    (``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the umask: the permissions an ordinary ``open()``
    (0o666) or ``mkdir()`` (0o777) would give. ``tempfile`` creates private
    (0o600 / 0o700) entries; outputs renamed into place get this instead."""
    return mode & ~_umask()


@contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched,
    so no half-written output is ever left behind. The file gets the
    permissions of an ordinary write (0o666 less the umask), not
    ``mkstemp``'s private 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, umask_mode(0o666))
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_image(path, img: np.ndarray) -> Path:
    """Write a [0, 1] float (or uint8) image, grey (H, W) or RGB (H, W, 3), atomically."""
    path = Path(path)
    arr = img if np.asarray(img).dtype == np.uint8 else to_uint8(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path


def save_npz(path, **arrays) -> Path:
    """``np.savez_compressed`` with an atomic rename."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path
