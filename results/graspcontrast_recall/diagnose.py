"""Where the feature-space nearest neighbour lands, for a pretrained backbone and
for the random initialisation of the same seed, on the held-out pairs.

    python results/graspcontrast_recall/diagnose.py RUN_DIR [key=value ...] > RUN_DIR/diagnose.json

RUN_DIR holds a `pcgrasp contrast-pretrain` run (backbone.pt); the key=value
overrides are the run's own (config contrast_demo). For every valid keypoint of
view 1 (FPS, as `contrast-evaluate`), j = argmax_n f_i . f2_n over all of view
2's points (the metric's nearest neighbour). Reported per backbone, over all
held-out pairs pooled:
  hit@r: fraction of valid keypoints with ||x_j - x_i|| < r in the world frame
         (hit@epsilon is `metrics.feature_match_recall`'s hit ratio);
  median_miss_m: the median of that distance;
  the same split by keypoints on the table (world z < 3 mm) and on objects;
  table_fraction: the share of valid keypoints on the table;
  rank_of_true: median rank (0 = first) of the true match's similarity among
         all of view 2's points;
  fmr: `metrics.feature_match_recall` (mutual, at epsilon), mean over pairs.
Written with `augment` as configured (held-out pairs get one fixed augmentation
each) and again with augment=false.
"""
import json
import os
import sys

import numpy as np
import torch

from pcgrasp.cli.common import config_path
from pcgrasp.metrics import feature_match_recall
from pcgrasp.train.config import load_config
from pcgrasp.train.contrast import _gather, _world, build_model, held_out, keypoint_pairs
from pcgrasp.train.engine import seed_everything

RADII = (0.0075, 0.015, 0.03, 0.06)


@torch.no_grad()
def measure(model, ds, eps, keypoints):
    model.eval()
    d_all, table_all, rank_all, fmr = [], [], [], []
    for i in range(len(ds)):
        p1, p2, T1, T2 = (t[None] for t in ds[i])
        f1, f2 = model(p1, p2)
        kp, match, valid, xyz = keypoint_pairs(p1, p2, T1, T2, keypoints, eps)
        v = valid[0]
        q = _gather(f1, kp)[0][v].double()
        w2 = _world(p2, T2)[0].double()
        qw = xyz[0][v].double()
        sim = q @ f2[0].double().T                      # [V, N2]
        j = sim.argmax(1)
        d_all.append(((w2[j] - qw) ** 2).sum(1).sqrt().numpy())
        table_all.append((qw[:, 2] < 0.003).numpy())
        true_j = torch.cdist(qw, w2).argmin(1)
        s_true = sim.gather(1, true_j[:, None])
        rank_all.append((sim > s_true).sum(1).numpy())
        fmr.append(feature_match_recall(_gather(f1, kp)[0], xyz[0], valid[0], f2[0], _world(p2, T2)[0],
                                        eps)["feature_match_recall"])
    d, tab, rank = np.concatenate(d_all), np.concatenate(table_all), np.concatenate(rank_all)

    def part(m):
        if not m.any():
            return {}
        return {**{f"hit@{r * 1000:g}mm": float((d[m] < r).mean()) for r in RADII},
                "median_miss_m": float(np.median(d[m])), "rank_of_true": float(np.median(rank[m])),
                "keypoints": int(m.sum())}
    return {"all": part(np.ones_like(tab)), "table": part(tab), "objects": part(~tab),
            "table_fraction": float(tab.mean()), "fmr": float(np.nanmean(fmr))}


if __name__ == "__main__":
    run, overrides = sys.argv[1], sys.argv[2:]
    cfg = load_config(config_path("contrast_demo"), list(overrides))
    out = {"run": run, "overrides": overrides}
    for aug in sorted({bool(cfg.get("augment", True)), False}, reverse=True):
        cfg["augment"] = aug
        ds = held_out(cfg)
        seed_everything(cfg.get("seed", 0))
        model = build_model(cfg)
        res = {"random_init": measure(model, ds, cfg["loss"]["epsilon"], cfg["loss"]["keypoints"])}
        model.backbone.load_state_dict(torch.load(os.path.join(run, "backbone.pt"), weights_only=True), strict=True)
        res["pretrained"] = measure(model, ds, cfg["loss"]["epsilon"], cfg["loss"]["keypoints"])
        res["pairs"] = len(ds)
        out[f"heldout_augment={str(aug).lower()}"] = res
    print(json.dumps(out, indent=1))
