"""Label-efficiency sweep: fine-tune over budgets x inits x seeds, then a
markdown table (mean +- SD over seeds, relative delta of JEPA vs scratch, like
the study's Table I) and a PNG of RMSE vs budget (like its Fig. 5)."""
import copy
import json
import math
import os

import numpy as np

from .jepa import finetune, pretrain

METRIC = "top_logit_rmse"


def run_sweep(cfg, progress=False, log=print):
    s = cfg["sweep"]
    if "jepa" in s["inits"] and not os.path.exists(cfg["train"]["pretrained"]):
        log("pretraining first (no encoder at train.pretrained)")
        pretrain(cfg, progress=progress)
    rows = []
    for budget in s["budgets"]:
        for init in s["inits"]:
            for seed in s["seeds"]:
                c = copy.deepcopy(cfg)
                c["train"].update(budget=budget, init=init, seed=seed, out=os.path.join(s["out"], "runs"))
                _, m = finetune(c, progress=progress)
                rows.append({"budget": budget, "init": init, "seed": seed, **m})
                log(f"budget {budget:>5} init {init:>7} seed {seed}: {METRIC} {math.degrees(m[METRIC]):.2f} deg")
    os.makedirs(s["out"], exist_ok=True)
    with open(os.path.join(s["out"], "results.json"), "w") as f:
        json.dump({"config": cfg, "rows": rows}, f, indent=1)
    table = sweep_table(rows, s["budgets"], s["inits"])
    with open(os.path.join(s["out"], "table.md"), "w") as f:
        f.write(table)
    sweep_plot(rows, s["budgets"], s["inits"], os.path.join(s["out"], "rmse_vs_budget.png"))
    return rows, table


def _stats(rows, budget, init, key):
    v = [math.degrees(r[key]) if "rmse" in key or key == "diversity" else r[key]
         for r in rows if r["budget"] == budget and r["init"] == init]
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def sweep_table(rows, budgets, inits):
    cols = [(METRIC, "top-logit RMSE (deg)", 2), ("best_of_k_rmse", "best-of-K RMSE (deg)", 2),
            ("coverage@10", "coverage@10", 3)]
    head = ["budget"]
    for key, label, _ in cols:
        head += [f"{i} {label}" for i in inits]
        if key == METRIC:
            head.append("Δ top-logit, jepa vs scratch")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for b in budgets:
        cells = [f"{b * 100:g} %"]
        for key, _, digits in cols:
            means = {}
            for i in inits:
                m, sd = _stats(rows, b, i, key)
                means[i] = m
                cells.append(f"{m:.{digits}f} ± {sd:.{digits}f}")
            if key == METRIC:
                cells.append(f"{100 * (means['scratch'] - means['jepa']) / means['scratch']:+.1f} %"
                             if "jepa" in means and "scratch" in means else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± SD over seeds of the test-split metrics. Δ > 0: JEPA initialisation has the lower error.")
    return "\n".join(lines) + "\n"


def sweep_plot(rows, budgets, inits, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for i in inits:
        st = [_stats(rows, b, i, METRIC) for b in budgets]
        ax.errorbar([100 * b for b in budgets], [m for m, _ in st], yerr=[s for _, s in st], marker="o", capsize=3,
                    label=i)
    ax.set_xscale("log")
    ax.set_xlabel("training budget (% of objects)")
    ax.set_ylabel("top-logit joint RMSE (deg)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
