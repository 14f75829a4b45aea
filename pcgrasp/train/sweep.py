"""The label-efficiency study (the Point-JEPA paper's protocol).

For every init (JEPA, scratch) and seed: the learning rates are chosen on a
grid at one budget (``sweep.lr_grid``: backbone x head rates at 10 % of pack
A, Sec. IV-C; lowest mean validation top-logit RMSE over the grid's seeds,
``lr_grid.seeds``, by default the sweep's; per init),
then every (pack, budget) of ``sweep.packs`` (A: 1/10/25/100 %, B: 25/100 %)
is fine-tuned with them. Every run is skipped when its ``test_metrics.json``
exists, so an interrupted sweep continues where it stopped.

Outputs under ``sweep.out``: ``results.json`` (config, every run's metrics,
the Bayes floors of the test and held-out splits from the synthetic
generator's truth, the probe report), ``table.md`` (Table I: top-logit RMSE
mean ± SD and relative Δ with the held-out-category column; selection gap;
coverage@15°; the learning-rate grid; the floors; the probe) and
``rmse_vs_budget.png`` (Fig. 5 with error bars and the floors).
"""
import copy
import json
import math
import os

import numpy as np

from ..data import load_manifest
from ..data.grasps import load_recordings
from ..data.synthetic.grasps import bayes_floor
from ..metrics import mean_sd
from .jepa import finetune, pretrain, run_name

METRIC = "top_logit_rmse"


def sweep_packs(s):
    """{pack: [budgets]} from ``sweep.packs`` (or the older ``sweep.budgets``, pack A)."""
    packs = s.get("packs") or {"A": s["budgets"]}
    for pack, budgets in packs.items():
        if pack not in ("A", "B") or not budgets or not all(0 < b <= 1 for b in budgets):
            raise ValueError(f"sweep.packs must map 'A'/'B' to budgets in (0, 1], got {pack!r}: {budgets!r}")
    return {p: [float(b) for b in bs] for p, bs in packs.items()}


def _run(cfg, out, progress, log, **train):
    c = copy.deepcopy(cfg)
    train["lr_backbone"], train["lr_head"] = float(train["lr_backbone"]), float(train["lr_head"])
    c["train"].update(train)
    t = c["train"]
    run_dir = os.path.join(out, "runs", f"{run_name(t)}_lr{t['lr_backbone']:g}_{t['lr_head']:g}")
    done = os.path.join(run_dir, "test_metrics.json")
    if os.path.exists(done):
        with open(done) as f:
            m = json.load(f)
    else:
        _, m = finetune(c, run_dir=run_dir, progress=progress)
    row = {k: t[k] for k in ("pack", "budget", "init", "seed", "lr_backbone", "lr_head")}
    row.update({k: v for k, v in m.items() if isinstance(v, (int, float))})
    log(f"pack {t['pack']} budget {t['budget']:>5} {t['init']:>7} seed {t['seed']} lr {t['lr_backbone']:g}/"
        f"{t['lr_head']:g}: {METRIC} {math.degrees(m[METRIC]):.2f} deg")
    return row


def split_floors(cfg):
    """Bayes floors (radians) of the test and held-out splits, or {} when the
    data carries no generator truth (real recordings)."""
    d = cfg["data"]
    s = cfg["sweep"]
    pack, budgets = next(iter(sweep_packs(s).items()))
    man = load_manifest(d["splits"], pack, budgets[0])
    out = {}
    for name in ("test", "heldout"):
        if man.get(name):
            got = load_recordings(d["root"], set(man[name]), truth=True)[3]
            if got is not None:
                out[name] = bayes_floor(*got)
    return out


def run_sweep(cfg, progress=False, log=print):
    s = cfg["sweep"]
    packs = sweep_packs(s)
    out = s["out"]
    if "jepa" in s["inits"] and not os.path.exists(cfg["train"]["pretrained"]):
        log("pretraining first (no encoder at train.pretrained)")
        pretrain(cfg, progress=progress)
    grid_rows, chosen = [], {}
    g = s.get("lr_grid")
    for init in s["inits"]:
        if not g:
            chosen[init] = (cfg["train"]["lr_backbone"], cfg["train"]["lr_head"])
            continue
        for lb in g["lr_backbone"]:
            for lh in g["lr_head"]:
                for seed in g.get("seeds", s["seeds"]):
                    grid_rows.append(_run(cfg, out, progress, log, pack=g.get("pack", "A"), budget=g["budget"],
                                          init=init, seed=seed, lr_backbone=lb, lr_head=lh))
        chosen[init] = select_lr(grid_rows, init)
        log(f"{init}: learning rates backbone {chosen[init][0]:g}, head {chosen[init][1]:g} (lowest val {METRIC})")
    rows = []
    for pack, budgets in packs.items():
        for budget in budgets:
            for init in s["inits"]:
                for seed in s["seeds"]:
                    lb, lh = chosen[init]
                    rows.append(_run(cfg, out, progress, log, pack=pack, budget=budget, init=init, seed=seed,
                                     lr_backbone=lb, lr_head=lh))
    floors = split_floors(cfg)
    probe = None
    probe_path = os.path.join(cfg["pretrain"]["out"], "probe.json")
    if "jepa" in s["inits"] and os.path.exists(probe_path):
        with open(probe_path) as f:
            probe = json.load(f)
    os.makedirs(out, exist_ok=True)
    results = {"config": cfg, "rows": rows, "grid_rows": grid_rows, "chosen_lr": chosen, "floors": floors,
               "probe": probe}
    with open(os.path.join(out, "results.json.tmp"), "w") as f:
        json.dump(results, f, indent=1)
    os.replace(os.path.join(out, "results.json.tmp"), os.path.join(out, "results.json"))
    table = study_tables(rows, packs, s["inits"], floors, grid_rows, chosen, probe)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    sweep_plot(rows, packs, s["inits"], os.path.join(out, "rmse_vs_budget.png"), floors)
    return rows, table


def select_lr(grid_rows, init, key="val/" + METRIC):
    """(lr_backbone, lr_head) of ``init``'s grid runs with the lowest mean
    ``key`` over seeds (ties: the first in grid order)."""
    pairs = []
    for r in grid_rows:
        p = (r["lr_backbone"], r["lr_head"])
        if r["init"] == init and p not in pairs:
            pairs.append(p)
    if not pairs:
        raise ValueError(f"no grid runs for init {init!r}")
    means = [np.mean([r[key] for r in grid_rows if r["init"] == init and (r["lr_backbone"], r["lr_head"]) == p])
             for p in pairs]
    return pairs[int(np.argmin(means))]


# ---------------------------------------------------------------- tables
def _values(rows, key, **match):
    return [r[key] for r in rows if key in r and all(r[k] == v for k, v in match.items())]


def _cell(st, digits):
    return "—" if st is None else f"{st[0]:.{digits}f} ± {st[1]:.{digits}f}"


def _delta(a, b):
    """Relative Δ of JEPA (a) vs scratch (b): (scratch - jepa) / scratch, in %."""
    if a is None or b is None or b[0] == 0:
        return "—"
    return f"{100 * (b[0] - a[0]) / b[0]:+.1f} %"


def _by_budget_table(rows, packs, inits, key, label, scale, digits, delta=False):
    head = ["pack", "budget"] + [f"{i} {label}" for i in inits]
    if delta:
        head.append("Δ (jepa vs scratch)")
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for pack, budgets in packs.items():
        for b in budgets:
            st = {i: mean_sd(_values(rows, key, pack=pack, budget=b, init=i), scale) for i in inits}
            cells = [pack, f"{100 * b:g} %"] + [_cell(st[i], digits) for i in inits]
            if delta:
                cells.append(_delta(st.get("jepa"), st.get("scratch")))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def study_tables(rows, packs, inits, floors=None, grid_rows=(), chosen=None, probe=None):
    """The study's markdown: Table I (test and held-out top-logit RMSE, deg,
    mean ± SD over seeds, relative Δ > 0 when JEPA is lower), the selection
    gap (deg), coverage@15°, the learning-rate grid (validation RMSE), the
    Bayes floors and the probe."""
    deg = math.degrees(1.0)
    out = ["## Table I: top-logit joint RMSE (deg), test split", ""]
    out += _by_budget_table(rows, packs, inits, METRIC, "test", deg, 2, delta=True)
    if any("heldout/" + METRIC in r for r in rows):
        out += ["", "Held-out category (never trained on):", ""]
        out += _by_budget_table(rows, packs, inits, "heldout/" + METRIC, "held-out", deg, 2, delta=True)
    out += ["", "## Selection gap (top-logit − best-of-K RMSE, deg), test split", ""]
    out += _by_budget_table(rows, packs, inits, "selection_gap", "gap", deg, 2)
    out += ["", "## Coverage@15° (fraction of grasps whose best hypothesis is within 15°), test split", ""]
    out += _by_budget_table(rows, packs, inits, "coverage@15", "coverage@15", 1.0, 3)
    if grid_rows:
        pairs = sorted({(r["lr_backbone"], r["lr_head"]) for r in grid_rows})
        g0 = grid_rows[0]
        out += ["", f"## Learning-rate grid: validation top-logit RMSE (deg) at {100 * g0['budget']:g} % of pack "
                f"{g0['pack']} (* = chosen)", "",
                "| lr backbone | lr head | " + " | ".join(inits) + " |", "|---:|---:|" + "---:|" * len(inits)]
        for lb, lh in pairs:
            cells = [f"{lb:g}", f"{lh:g}"]
            for i in inits:
                c = _cell(mean_sd(_values(grid_rows, "val/" + METRIC, init=i, lr_backbone=lb, lr_head=lh), deg), 2)
                cells.append(c + (" *" if chosen and tuple(chosen.get(i, ())) == (lb, lh) else ""))
            out.append("| " + " | ".join(cells) + " |")
    if floors:
        out += ["", "## Floors from the generator's truth (top-logit RMSE, deg)", "",
                "| split | Bayes (pick the likelier mode) | conditional mean (invalid average) | "
                "mode-blind (one mode for all) | joint noise |", "|---|---:|---:|---:|---:|"]
        for name, f in floors.items():
            out.append(f"| {name} | {math.degrees(f['mode']):.2f} | {math.degrees(f['mean']):.2f} | "
                       f"{math.degrees(f['blind']):.2f} | {math.degrees(f['noise']):.2f} |")
    if probe:
        out += ["", f"## Frozen-feature probe ({probe['shapes']} held-out procedural shapes, half train / half "
                f"test; category chance {probe['chance']:.3f})", "",
                "| encoder | category kNN acc | category linear acc | elongation R² |", "|---|---:|---:|---:|"]
        for name, r in probe["encoders"].items():
            out.append(f"| {name} | {r['knn_acc']:.3f} | {r['linear_acc']:.3f} | {r['property_r2']:.3f} |")
    out += ["", "Mean ± SD over seeds. Δ > 0: JEPA initialisation has the lower error."]
    return "\n".join(out) + "\n"


def sweep_plot(rows, packs, inits, path, floors=None):
    """Fig. 5: test top-logit RMSE vs budget, mean ± SD error bars, one line per
    init and pack, with the test split's floors as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deg = math.degrees(1.0)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for pack, budgets in packs.items():
        for n, i in enumerate(inits):
            st = [mean_sd(_values(rows, METRIC, pack=pack, budget=b, init=i), deg) for b in budgets]
            keep = [(b, s) for b, s in zip(budgets, st) if s is not None]
            if not keep:
                continue
            ax.errorbar([100 * b for b, _ in keep], [s[0] for _, s in keep], yerr=[s[1] for _, s in keep],
                        marker="o" if pack == "A" else "s", capsize=3, color=f"C{n}",
                        linestyle="-" if pack == "A" else "--", label=f"{i}, pack {pack}")
    test = (floors or {}).get("test")
    if test:
        ax.axhline(math.degrees(test["mode"]), color="k", lw=1, label="Bayes floor (likelier mode)")
        ax.axhline(math.degrees(test["blind"]), color="gray", lw=1, ls=":", label="mode-blind floor")
    ax.set_xscale("log")
    ax.set_xlabel("training budget (% of objects)")
    ax.set_ylabel("top-logit joint RMSE (deg)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
