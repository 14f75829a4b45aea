"""table.md, alignment_vs_tau.png and curves.png from the finished runs of the
convergence sweep (runs/tau_<tau>_s<seed>/: copies of each run's log.csv,
val_metrics.json and early_stop.json; the weights are not kept here).

    python results/ebm/converge/summarise.py [--collect SWEEP_RUNS_DIR ...]

--collect copies those files from sweep run folders (e.g. runs/ebm_converge/sweep/runs)
first; only finished runs (with val_metrics.json) are taken. The table and the plot are
the sweep's own (pcgrasp.train.ebm.sweep_table / sweep_plot) over the runs present.
"""
import argparse
import csv
import glob
import json
import os
import shutil

from pcgrasp.metrics import mean_sd
from pcgrasp.train.ebm import sweep_plot, sweep_table

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ("log.csv", "val_metrics.json", "early_stop.json")


def collect(dirs):
    for d in dirs:
        for run in sorted(glob.glob(os.path.join(d, "tau_*_s*"))):
            if not os.path.exists(os.path.join(run, "val_metrics.json")):
                continue
            dst = os.path.join(HERE, "runs", os.path.basename(run))
            os.makedirs(dst, exist_ok=True)
            for f in FILES:
                if os.path.exists(os.path.join(run, f)):
                    shutil.copy(os.path.join(run, f), dst)


def load_rows():
    rows = []
    for run in glob.glob(os.path.join(HERE, "runs", "tau_*_s*")):
        tau, seed = os.path.basename(run)[4:].split("_s")
        with open(os.path.join(run, "val_metrics.json")) as f:
            m = json.load(f)
        rows.append({"tau": float(tau), "seed": int(seed), "run": os.path.relpath(run, HERE), **m})
    rows.sort(key=lambda r: (r["tau"], r["seed"]))
    return rows


def curves(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = sorted({r["tau"] for r in rows})
    fig, axes = plt.subplots(1, len(taus), figsize=(3.2 * len(taus), 3), dpi=120, sharey=True, squeeze=False)
    for ax, tau in zip(axes[0], taus):
        for r in (r for r in rows if r["tau"] == tau):
            with open(os.path.join(HERE, r["run"], "log.csv")) as f:
                log = list(csv.DictReader(f))
            ep = [int(x["epoch"]) for x in log]
            a = [100 * float(x["val/alignment"]) for x in log]
            line, = ax.plot(ep, a, lw=1, color=f"C{r['seed']}", label=f"seed {r['seed']}")
            if "restored_epoch" in r:
                k = ep.index(r["restored_epoch"])
                ax.plot(ep[k], a[k], "o", color=line.get_color())
        ax.set_title(f"τ = {tau:g}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val alignment (%)")
    axes[0][0].legend(fontsize=7)  # the first panel: the seeds that ran first have every tau
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collect", nargs="*", default=[])
    args = ap.parse_args()
    collect(args.collect)
    rows = load_rows()
    if not rows:
        raise SystemExit("no finished runs under runs/")
    split = rows[0].get("reported_split", "val")
    table = sweep_table(rows, 512, split)
    per_run = ["", "| τ | seed | epochs | restored epoch | best 5-epoch val alignment (%) | test alignment (%) | "
               "test ranking accuracy (%) | val alignment of the restored model (%) |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        es = r.get("early_stop", {})
        per_run.append(f"| {r['tau']:g} | {r['seed']} | {r['epochs_trained']} | {r.get('restored_epoch', '—')} | "
                       f"{100 * es['best_smoothed']:.1f} | {100 * r['alignment']:.1f} | "
                       f"{100 * r['ranking_accuracy']:.1f} | {100 * r['val_metrics']['alignment']:.1f} |"
                       if es else f"| {r['tau']:g} | {r['seed']} | {r['epochs_trained']} | (no stop) | | | | |")
    # the seed sets the split, and the splits differ a lot in difficulty; within a seed every tau sees the same
    # images, so tau is compared seed-paired: test alignment minus the same seed's at tau = 100 (the report's)
    ref = {r["seed"]: r["alignment"] for r in rows if r["tau"] == 100}
    paired = ["", "Seed-paired: test alignment minus the same seed's at τ = 100 (points; mean ± SD over the seeds "
              "that have both).", "", "| τ | seeds | Δ alignment vs τ = 100 |", "|---:|---:|---:|"]
    for tau in sorted({r["tau"] for r in rows}):
        d = [100 * (r["alignment"] - ref[r["seed"]]) for r in rows if r["tau"] == tau and r["seed"] in ref]
        if tau != 100 and d:
            m, sd = mean_sd(d)
            paired.append(f"| {tau:g} | {len(d)} | {m:+.1f}" + (f" ± {sd:.1f} |" if len(d) > 1 else " |"))
    per_run += paired
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write(table + "\n".join(per_run) + "\n")
    sweep_plot(rows, os.path.join(HERE, "alignment_vs_tau.png"), split)
    curves(rows, os.path.join(HERE, "curves.png"))
    print(table + "\n".join(per_run))


if __name__ == "__main__":
    main()
