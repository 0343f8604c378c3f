"""Which local stage the released model ships with, chosen on the held-out validation pairs of
RoadScene's train split (never the test split): identity, the global stage alone, and the global
stage followed by each candidate U-Net. Prints mean EPE (px, 8 px border left out) per kind.

    BSR_DATA=../shared/datasets python experiments/select_release.py AE_CKPT UNET.pt [UNET.pt ...]
"""

import sys
import time

import numpy as np
import torch

from bsr.training import pretrain
from bsr.checkpoint import load_checkpoint
from bsr.pretrained import assemble

GLOBAL = {"method": "ecc", "max_side": 640}


def main(argv):
    torch.set_num_threads(1)
    ae, unets = argv[0], argv[1:]
    cfg = pretrain.resolve({"data": {"val_count": 16}})
    _, val = pretrain._split(cfg)
    items = pretrain.validation_set(val, cfg)
    models = {}
    for u in unets:
        path = assemble(u, ae, f"/tmp/select_{len(models)}.pt", GLOBAL)
        models[u] = load_checkpoint(path)
    rows = {"identity": [], "global only": [], **{f"global + {u}": [] for u in unets}}
    t0 = time.time()
    for it in items:
        gt = it["gt"]
        sl = (slice(None), slice(None), slice(8, -8), slice(8, -8))
        epe = lambda f: (f - gt)[sl].pow(2).sum(1).sqrt().mean().item()
        rows["identity"].append((it["kind"], epe(torch.zeros_like(gt))))
        m0 = next(iter(models.values()))
        with torch.no_grad():
            phi_g, _ = m0.global_stage.fields(it["mis"], it["vis"])
            rows["global only"].append((it["kind"], epe(phi_g)))
            for u, m in models.items():
                rows[f"global + {u}"].append((it["kind"], epe(m.register(it["mis"], it["vis"])[0])))
    kinds = sorted({k for k, _ in rows["identity"]})
    print(f"{len(items)} validation items, {time.time() - t0:.0f} s")
    print("method".ljust(60), "all".rjust(6), *[k.rjust(8) for k in kinds])
    for name, r in rows.items():
        print(name[:60].ljust(60), f"{np.mean([e for _, e in r]):6.2f}",
              *[f"{np.mean([e for k, e in r if k == kk]):8.2f}" for kk in kinds])


if __name__ == "__main__":
    main(sys.argv[1:])
