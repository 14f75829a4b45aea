"""Markdown table of runs.csv: every run, then per variant the JEPA - random
differences (paired by seed: the probe shapes and the random encoder depend on
the seed) with their mean and range over seeds.

    python results/jepa_targets/summarise.py > results/jepa_targets/table.md
"""
import csv
import os
import statistics

rows = list(csv.DictReader(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs.csv"))))
print("| variant | seed | epochs (steps) | target_norm | k | EMA | final loss | target SD | LN-output SD | "
      "target drift | kNN JEPA / random | linear JEPA / random | elong. R² JEPA / random | wall (s) |")
print("|---|---:|---|---|---:|---|---:|---:|---:|---:|---|---|---|---:|")
for r in rows:
    print(f"| {r['variant']} | {r['seed']} | {r['epochs']} ({r['steps']}) | {r['target_norm']} | "
          f"{r['target_layers']} | "
          f"{r['ema']} | {r['final_loss']} | {r['target_sd']} | {r['ln_output_sd']} | {r['target_drift']} | "
          f"{r['knn_jepa']} / {r['knn_random']} | {r['linear_jepa']} / {r['linear_random']} | "
          f"{r['r2_jepa']} / {r['r2_random']} | {r['wall_s']} |")
print()
print("Per variant, JEPA − random (paired by seed): mean [min, max] over seeds; random's own spread between "
      "seeds is in the last row.")
print()
print("| variant | seeds | Δ kNN | Δ linear | Δ elong. R² |")
print("|---|---|---|---|---|")
by = {}
for r in rows:
    by.setdefault(r["variant"], {})[r["seed"]] = r  # a rerun of (variant, seed) replaces the earlier row
fmt = lambda v: f"{statistics.mean(v):+.3f} [{min(v):+.3f}, {max(v):+.3f}]" if len(v) > 1 else f"{v[0]:+.3f}"


def frame(r):
    """The probe clouds' frame: pretrain.canonical puts them (and the pretraining clouds) in their
    principal-axis frame, where the random encoder reads other numbers."""
    over = r["overrides"].split()
    return next((o.split("=", 1)[1] for o in over if o.startswith("pretrain.canonical=")), "as generated")


rand = {}
for name, runs in by.items():
    d = {m: [float(r[f"{m}_jepa"]) - float(r[f"{m}_random"]) for r in runs.values()] for m in ("knn", "linear", "r2")}
    print(f"| {name} | {','.join(sorted(runs))} | {fmt(d['knn'])} | {fmt(d['linear'])} | {fmt(d['r2'])} |")
    for s, r in runs.items():
        rand.setdefault(frame(r), {})[s] = r
for fr, runs in rand.items():
    if len(runs) > 1:
        v = {m: [float(r[f"{m}_random"]) for r in runs.values()] for m in ("knn", "linear", "r2")}
        label = "random encoder itself" + ("" if fr == "as generated" else f" (probe clouds: {fr} frame)")
        print(f"| {label} | {','.join(sorted(runs))} | " + " | ".join(
            f"{min(v[m]):.3f} – {max(v[m]):.3f}" for m in ("knn", "linear", "r2")) + " |")
