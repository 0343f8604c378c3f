"""Training batches: random crops of misaligned pairs (:class:`MisalignedCrops`)
and the shuffling loader a training config describes (:func:`make_loader`).

Each pair is misaligned once as a whole image (:mod:`bsr.datasets.simulate`),
so content enters the crop from outside as it would in a real camera; the
L_nda targets of that whole image can ride along (:mod:`bsr.nda`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..nda import cached_nda_targets
from . import simulate
from .readers import DataError, Pair, load_pairs

__all__ = ["MisalignedCrops", "make_loader"]


class MisalignedCrops(torch.utils.data.Dataset):
    """Random crops of misaligned pairs, for training.

    The misalignment is applied once to each whole IR image (so content
    enters from outside the crop as it would in a real camera); each item is
    then a random ``crop`` window of the same position in both images.
    Item ``i`` is pair ``i % len(pairs)`` with a crop position drawn from a
    generator seeded by ``(seed, epoch, i)``: repeatable and worker-independent.

    Items are dicts of float tensors: ``ir`` (1, h, w) misaligned IR, ``vis``
    (1, h, w) visible Y, ``ir_aligned`` (1, h, w), ``flow_gt`` (2, h, w).

    With ``nda`` (a dict of :func:`bsr.nda.nda_search` options), the
    L_nda targets are searched once per whole image at construction, in both
    directions (``nda_p``: IR moving onto the visible image, for phi_p;
    ``nda_n``: visible onto IR, for phi_n), and each item carries the crop of
    them: ``nda_p_delta``/``nda_n_delta`` (2, h, w) and
    ``nda_p_valid``/``nda_n_valid`` (1, h, w) bool. The search depends only
    on the input pair, never on the network, so this removes it from the
    training step. A target pointing outside the crop is dropped (the crop
    cannot sample there).
    """

    def __init__(self, pairs: list[Pair], crop: tuple[int, int], kind: str = "shift", level: float = 5.0,
                 seed: int = 0, length: int | None = None, nda: dict | None = None, progress: bool = False):

        if not pairs:
            raise DataError("no pairs to train on")
        ch, cw = int(crop[0]), int(crop[1])
        small = [f"{p.name} ({p.ir.shape[1]}x{p.ir.shape[0]})" for p in pairs
                 if p.ir.shape[0] < ch or p.ir.shape[1] < cw]
        if small:
            raise DataError(f"crop {cw}x{ch} is larger than {len(small)} image(s): {', '.join(small[:5])}")
        self.crop, self.seed, self.epoch = (ch, cw), int(seed), 0
        self.length = int(length) if length else len(pairs)
        g = torch.Generator().manual_seed(self.seed)
        self.items = []
        for p in pairs:
            ir = torch.from_numpy(p.ir_aligned if p.ir_aligned is not None else p.ir)[None, None]
            if p.flow_gt is not None:  # already misaligned (a simulated set): keep as is
                mis, flow = torch.from_numpy(p.ir)[None, None], torch.from_numpy(p.flow_gt)[None]
            else:
                mis, flow = simulate.apply(ir, kind, level, generator=g)
            self.items.append((mis[0], torch.from_numpy(p.vis)[None], ir[0], flow[0]))
        self.nda = None
        if nda is not None:
            self.nda = [cached_nda_targets(mis, vis[None], nda)
                        for mis, vis, _, _ in tqdm(self.items, desc="L_nda targets", disable=not progress,
                                                   leave=False)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        mis, vis, ir, flow = self.items[i % len(self.items)]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        ch, cw = self.crop
        h, w = vis.shape[-2:]
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        sl = (slice(None), slice(y, y + ch), slice(x, x + cw))
        item = {"ir": mis[sl], "vis": vis[sl], "ir_aligned": ir[sl], "flow_gt": flow[sl]}
        if self.nda is not None:
            for key, (delta, valid) in self.nda[i % len(self.items)].items():
                d = delta[sl]
                # keep targets whose matched position lies inside the crop
                gx = torch.arange(cw, dtype=d.dtype)[None, :] + d[0]
                gy = torch.arange(ch, dtype=d.dtype)[:, None] + d[1]
                inside = (gx >= 0) & (gx <= cw - 1) & (gy >= 0) & (gy <= ch - 1)
                item[f"{key}_delta"] = d
                item[f"{key}_valid"] = valid[sl] & inside[None]
        return item


def make_loader(data_cfg: dict, crop: tuple[int, int], batch_size: int, seed: int, split: str = "train",
                num_workers: int = 0, length: int | None = None, nda: dict | None = None,
                progress: bool = False):
    """A shuffling DataLoader of :class:`MisalignedCrops` from a data config.

    ``data_cfg`` keys: ``name`` (dataset), ``root`` (data root, optional),
    ``misalignment`` ({``kind``, ``level``}), ``synthetic`` (generator
    options), ``limit`` (max pairs), ``split`` (overrides the argument; null
    uses all pairs). ``nda``: precompute L_nda targets (see
    :class:`MisalignedCrops`).
    """
    cfg = dict(data_cfg)
    mis = cfg.pop("misalignment", {"kind": "shift", "level": 5})
    split = cfg.pop("split", split)
    pairs = load_pairs(cfg.pop("name"), root=cfg.pop("root", None), split=split,
                       limit=cfg.pop("limit", None), synthetic=cfg.pop("synthetic", None))
    if cfg:
        raise DataError(f"unknown data option(s): {', '.join(sorted(cfg))}")
    ds = MisalignedCrops(pairs, crop, mis.get("kind", "shift"), mis.get("level", 5), seed=seed, length=length,
                         nda=nda, progress=progress)
    g = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                                       num_workers=num_workers, generator=g)
