"""One pretraining + frozen probe of a JEPA-target variant; appends a row to runs.csv.

    python results/jepa_targets/run.py VARIANT SEED [key=value ...]

Runs `pcgrasp pretrain --config study_small` (overrides after the shared data paths) with
output /tmp/jepa_exp/<VARIANT>_s<SEED>/ and data under /tmp/jepa_exp/data (generated once).
"""
import csv
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXP = "/tmp/jepa_exp"
COLS = ["variant", "seed", "epochs", "steps", "target_norm", "target_layers", "ema", "final_loss", "target_sd",
        "target_sd_between_clouds", "ln_output_sd", "target_drift", "context_drift", "knn_jepa", "knn_random",
        "linear_jepa", "linear_random", "r2_jepa", "r2_random", "wall_s", "overrides"]


def main(variant, seed, *overrides):
    out = f"{EXP}/{variant}_s{seed}"
    args = [f"{ROOT}/.venv/bin/pcgrasp", "pretrain", "--config", "study_small", "--quiet", f"seed={seed}",
            f"data.root={EXP}/data/grasps", f"data.splits={EXP}/data/splits",
            f"data.pretrain_cache={EXP}/data/pretrain_cache_s{seed}", f"data.pretrain_root={EXP}/data/shapenet",
            f"pretrain.out={out}", *overrides]
    t0 = time.time()
    r = subprocess.run(["nice", "-n", "5", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    with open(f"{out}.log", "w") as f:
        f.write(" ".join(args) + "\n" + r.stdout + r.stderr)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}); see {out}.log")
    probe = json.load(open(f"{out}/probe.json"))
    log = list(csv.DictReader(open(f"{out}/log.csv")))
    from pcgrasp.train.config import load_config
    from pcgrasp.cli.common import config_path
    cfg = load_config(config_path("study_small"), list(overrides))
    p, e, t = cfg["pretrain"], probe["encoders"], probe["targets"]
    row = dict(variant=variant, seed=seed, epochs=p["epochs"], steps=log[-1]["step"],
               target_norm=p.get("target_norm", "token_ln"), target_layers=p.get("target_layers", 1),
               ema="/".join(str(x) for x in p["ema"]), final_loss=f"{float(log[-1]['loss']):.4g}",
               target_sd=f"{t['target_sd']:.4f}", target_sd_between_clouds=f"{t['target_sd_between_clouds']:.4f}",
               ln_output_sd=f"{t['ln_output_sd']:.4f}", target_drift=f"{t['target_drift']:.4f}",
               context_drift=f"{t['context_drift']:.4f}",
               **{f"{k}_{i}": f"{e[i][m]:.3f}" for k, m in (("knn", "knn_acc"), ("linear", "linear_acc"),
                                                              ("r2", "property_r2")) for i in ("jepa", "random")},
               wall_s=f"{wall:.0f}", overrides=" ".join(overrides))
    path = f"{HERE}/runs.csv"
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLS)
        if new:
            w.writeheader()
        w.writerow(row)
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
