"""table.md + recall_vs_step.png from the runs' logs (logs/<run>.csv, copies of
each run's log.csv) and diagnoses (diagnose/<run>.json, diagnose.py's output).

    python results/graspcontrast_recall/summarise.py
"""
import csv
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = {  # name -> (training scenes, augment, keypoints M / gamma_D)
    "aug_8scenes": ("0-7 (the demo's 8)", "yes", "256 / 2 cm"),
    "aug": ("0-47 (48)", "yes", "256 / 2 cm"),
    "noaug": ("0-47 (48)", "no", "256 / 2 cm"),
    "aug_dense": ("0-47 (48)", "yes", "1024 / 7.5 mm"),
}


def rows(name):
    with open(os.path.join(HERE, "logs", f"{name}.csv")) as f:
        return list(csv.DictReader(f))


def main():
    names = [n for n in RUNS if os.path.exists(os.path.join(HERE, "logs", f"{n}.csv"))]
    out = ["## Held-out metrics per run (last epoch; `log.csv` of each run in `logs/`)", "",
           "| run | training scenes | augmentation | M / γ_D | epochs | steps | train loss | held-out loss | FMR "
           "| hit ratio | pos − neg sim |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        r = rows(n)[-1]
        out.append(f"| {n} | {RUNS[n][0]} | {RUNS[n][1]} | {RUNS[n][2]} | {r['epoch']} | {r['step']} | {float(r['loss']):.3f} | "
                   f"{float(r['val/loss']):.3f} | {float(r['val/feature_match_recall']):.4f} | "
                   f"{float(r['val/hit_ratio']):.4f} | {float(r['val/sim_gap']):.3f} |")
    out += ["", "Chance level of the loss: ln 256 = 5.55 (ln 1024 = 6.93 for M = 1024; held-out metrics use "
            "each run's own M). `aug_e8` / `noaug_e8` below are the same runs after 8 epochs (960 steps); "
            "`aug_dense_eval256` is `aug_dense` evaluated with M = 256 like the others.", ""]
    order = ["aug_8scenes", "aug_e8", "aug", "noaug_e8", "noaug", "aug_dense", "aug_dense_eval256"]
    diags = sorted(glob.glob(os.path.join(HERE, "diagnose", "*.json")),
                   key=lambda p: (order + [os.path.basename(p)]).index(os.path.splitext(os.path.basename(p))[0])
                   if os.path.splitext(os.path.basename(p))[0] in order else len(order))
    if diags:
        out += ["## Where the feature-space nearest neighbour lands (`diagnose.py`)", "",
                "Held-out pairs (8), every valid FPS keypoint of view 1 pooled; hit@r = share whose "
                "feature-space nearest neighbour among all 3000 view-2 points lies within r of it (world "
                "frame); rank = median rank of the true match among the 3000 (0 = nearest); "
                "FMR = the mutual version at 7.5 mm, mean over pairs.", "",
                "| run | held-out pairs | backbone | FMR | hit@7.5 mm | hit@15 mm | hit@30 mm | hit@60 mm | "
                "median miss (cm) | rank of true | hit@7.5 mm table / objects |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for path in diags:
            d = json.load(open(path))
            run = os.path.splitext(os.path.basename(path))[0]
            for k in sorted(x for x in d if x.startswith("heldout_")):
                for b in ("random_init", "pretrained"):
                    r = d[k][b]
                    a, t, o = r["all"], r["table"], r["objects"]
                    out.append(f"| {run} | {'augmented' if k.endswith('true') else 'unaugmented'} | {b} | "
                               f"{r['fmr']:.4f} | {a['hit@7.5mm']:.4f} | {a['hit@15mm']:.3f} | {a['hit@30mm']:.3f} | "
                               f"{a['hit@60mm']:.3f} | {100 * a['median_miss_m']:.1f} | {a['rank_of_true']:.0f} | "
                               f"{t['hit@7.5mm']:.4f} / {o['hit@7.5mm']:.4f} |")
        out.append("")
        frac = json.load(open(diags[0]))
        k = next(x for x in frac if x.startswith("heldout_"))
        out += [f"{100 * frac[k]['pretrained']['table_fraction']:.0f} % of the valid keypoints lie on the table "
                "(world z < 3 mm).", ""]
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for n in names:
        r = rows(n)
        steps = [int(x["step"]) for x in r]
        ax[0].plot(steps, [100 * float(x["val/feature_match_recall"]) for x in r], marker=".", label=n)
        ax[1].plot(steps, [float(x["val/loss"]) for x in r], marker=".", label=n)
    ax[0].set(xlabel="optimiser step", ylabel="held-out FMR (%)", title="feature-match recall (mutual, 7.5 mm)")
    ax[1].axhline(5.545, color="grey", ls=":", label="chance (ln 256)")
    ax[1].set(xlabel="optimiser step", ylabel="held-out loss", title="held-out FNE-InfoNCE loss")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "recall_vs_step.png"), dpi=110)


if __name__ == "__main__":
    main()
