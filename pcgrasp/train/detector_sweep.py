"""The label-efficiency sweep of the GSNet-style detector (the GraspContrast
paper's Tables I/II): scratch / GraspContrast / GraspContrast without FNE x
frame budgets x seeds, trained with ``detector`` and scored with
``detector_eval``, its tables and AP-vs-budget plot; and the untrained
reference (randomly initialised detectors scored alike: the chance level of
the tables).
"""
import copy
import json
import os
import re

import numpy as np

from ..metrics import mean_sd
from .detector import (BUDGETS, INITS, _views, build_model, check_config, ensure_backbone, ensure_data,
                       frames_per_scene, run_name, save_detector, set_threads, train_detector)
from .detector_eval import METRICS, SPLIT_RANGES, evaluate_detector
from .engine import seed_everything

LABELS = {"scratch": "scratch", "graspcontrast": "GraspContrast", "graspcontrast_nofne": "GraspContrast w/o FNE"}


def sweep_tables(rows, budgets, inits, splits=tuple(SPLIT_RANGES)):
    """Markdown: Table I (AP per test split, mean ± SD over seeds, scratch vs
    GraspContrast per frame budget), Table II (GraspContrast with vs without
    false-negative elimination) and every metric in full. ``rows``: dicts
    with init, frames, seed and ``splits`` {split: {AP, AP0.8, AP0.4}}."""
    splits = [s for s in splits if any(s in r["splits"] for r in rows)]

    def cell(init, frames, split, key):
        v = [r["splits"][split][key] for r in rows if r["init"] == init and r["frames"] == frames
             and split in r["splits"]]
        if not v:
            return "—", None
        m, sd = mean_sd(v)
        return f"{m:.2f} ± {sd:.2f}", m

    def table(title, use, note):
        head = ["frames / scene"] + [f"{LABELS.get(i, i)} {s.replace('test_', '')} AP" for s in splits for i in use]
        lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for b in budgets:
            cells = [f"{b}/256"]
            for s in splits:
                for i in use:
                    cells.append(cell(i, b, s, "AP")[0])
            lines.append("| " + " | ".join(cells) + " |")
        return lines + ["", note, ""]

    out = []
    t1 = [i for i in ("scratch", "graspcontrast") if i in inits]
    if t1:
        out += table("Table I: label efficiency (AP, mean ± SD over seeds)", t1,
                     "AP in percent (graspnetAPI semantics) on each test split; the budget is the paper's frames "
                     "per scene of 256, mapped onto the synthetic scenes' views (see settings.json).")
    t2 = [i for i in ("graspcontrast", "graspcontrast_nofne") if i in inits]
    if len(t2) == 2:
        out += table("Table II: false-negative elimination (AP, mean ± SD over seeds)", t2,
                     "GraspContrast pretrained with and without false-negative elimination, then fine-tuned alike.")
    head = ["frames / scene", "init", "seeds"] + [f"{s.replace('test_', '')} {k}" for s in splits for k in METRICS]
    out += ["### All metrics (mean ± SD over seeds)", "", "| " + " | ".join(head) + " |",
            "|---|---|---:|" + "---:|" * (len(head) - 3)]
    for b in budgets:
        for i in inits:
            n = len({r["seed"] for r in rows if r["init"] == i and r["frames"] == b})
            out.append("| " + " | ".join([f"{b}/256", LABELS.get(i, i), str(n)] +
                                         [cell(i, b, s, k)[0] for s in splits for k in METRICS]) + " |")
    return "\n".join(out) + "\n"


def sweep_plot(rows, budgets, inits, path, splits=tuple(SPLIT_RANGES)):
    """AP vs frame budget (log axis), one panel per test split, mean ± SD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in splits if any(s in r["splits"] for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(3.6 * max(1, len(splits)), 3.3), dpi=120,
                             squeeze=False)
    for ax, s in zip(axes[0], splits):
        for i in inits:
            st = [mean_sd([r["splits"][s]["AP"] for r in rows if r["init"] == i and r["frames"] == b
                           and s in r["splits"]]) or (np.nan, np.nan) for b in budgets]
            ax.errorbar(budgets, [m for m, _ in st], yerr=[sd for _, sd in st], marker="o", capsize=3,
                        label=LABELS.get(i, i))
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [f"{b}/256" for b in budgets])
        ax.set(xlabel="fine-tuning frames per scene", ylabel="AP (%)", title=s)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sweep_out(cfg):
    """The sweep's folder: ``sweep.out`` (default ``<train.out>/sweep``); its
    runs go to ``runs/`` in it."""
    return (cfg.get("sweep") or {}).get("out", os.path.join(cfg["train"]["out"], "sweep"))


def run_sweep(cfg, progress=False, log=print, report_only=False):
    """scratch / GraspContrast / GraspContrast without FNE x ``sweep.budgets``
    x ``sweep.seeds``: pretrains the two backbones (contrast pipeline), then
    fine-tunes and evaluates every run, seed by seed (all of seed 0 first);
    finished runs (metrics.json) are skipped and an interrupted one resumes
    from its last epoch. ``report_only``: no training, the tables of the
    finished runs (the missing ones are listed). Writes ``<sweep.out>/{results.json,
    tables.md, ap_vs_budget.png}`` and returns (rows, tables)."""
    check_config(cfg)
    set_threads(cfg)
    s = cfg.get("sweep") or {}
    out = sweep_out(cfg)
    inits, budgets, seeds = list(s.get("inits", INITS)), list(s.get("budgets", BUDGETS)), list(s.get("seeds", [0]))
    bad = [i for i in inits if i not in INITS]
    if bad:
        raise ValueError(f"sweep.inits: unknown {bad} (known: {', '.join(INITS)})")
    for b in budgets:
        frames_per_scene(b, 256)
    c = copy.deepcopy(cfg)
    c["train"]["out"] = os.path.join(out, "runs")
    c.setdefault("pretrain", {}).setdefault("train", {})["out"] = os.path.join(out, "pretrain")
    if not report_only:
        ensure_data(c, progress, log)
        for i in inits:
            if i != "scratch":
                ensure_backbone(c, i, progress, log)
    rows, missing = [], []
    for seed in seeds:
        for b in budgets:
            for i in inits:
                run_dir = os.path.join(c["train"]["out"], run_name(i, b, seed))
                mpath = os.path.join(run_dir, "metrics.json")
                if not os.path.exists(mpath):
                    if report_only:
                        missing.append(run_name(i, b, seed))
                        continue
                    train_detector(c, i, b, seed, resume=True, progress=progress, log=log)
                    evaluate_detector(c, run_dir, progress=progress, log=log)
                with open(mpath) as f:
                    m = json.load(f)
                rows.append({"init": i, "frames": b, "seed": seed, "splits": m["splits"]})
                log(f"[sweep] {i:>20} {b:>3}/256 seed {seed}: " +
                    ", ".join(f"{k} AP {v['AP']:.2f}" for k, v in m["splits"].items()))
    if not rows:
        raise ValueError(f"no finished run under {c['train']['out']}")
    os.makedirs(out, exist_ok=True)
    tables = sweep_tables(rows, budgets, inits)
    if missing:
        tables += f"\nNot run (missing from the means above): {', '.join(missing)}.\n"
    views = _views(c)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"config": c, "views_per_scene": views, "missing": missing,
                   "frames_per_scene": {b: frames_per_scene(b, views, c["data"].get("frames_map"))
                                        for b in budgets}, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "tables.md"), "w") as f:
        f.write(tables)
    sweep_plot(rows, budgets, inits, os.path.join(out, "ap_vs_budget.png"))
    return rows, tables


# ---------------------------------------------------------------- untrained reference
def parse_seeds(spec):
    """"0-2", "0,3,5" or "4" -> the sorted, distinct seeds (integers >= 0)."""
    seeds = set()
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if not m:
            raise ValueError(f"cannot parse {part!r} in {spec!r} (use e.g. 0-2 or 0,3,5)")
        a, b = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if a < 0 or b < 0:
            raise ValueError(f"seeds must be integers >= 0, got {part!r}")
        if b < a:
            raise ValueError(f"the range {part!r} ends before it starts")
        seeds.update(range(a, b + 1))
    if not seeds:
        raise ValueError(f"no seeds in {spec!r}")
    return sorted(seeds)


def untrained_run_dir(cfg, seed):
    """``<sweep.out>/runs/untrained_s<seed>``: beside the sweep's runs."""
    return os.path.join(sweep_out(cfg), "runs", f"untrained_s{int(seed)}")


def _read_untrained(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        try:
            done = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path} is not JSON: {e}") from None
    if not isinstance(done, dict) or not all(isinstance(v, dict) for v in done.values()):
        raise ValueError(f"{path} is not an untrained-reference JSON ({{seed: {{split: {{AP, ...}}}}}})")
    return done


def run_untrained(cfg, seeds=(0, 1, 2), json_path=None, progress=False, log=print):
    """AP of randomly initialised detectors, one per seed (the model built after
    ``seed_everything(seed)``, as ``train_detector`` builds it, and not trained):
    the chance reference of the sweep's tables. Each is saved to
    ``<sweep.out>/runs/untrained_s<seed>/model.pt`` and scored by
    ``evaluate_detector`` on ``data.test_scenes`` (metrics.json, dump/ in that
    folder). Writes ``json_path`` (default ``<sweep.out>/untrained.json``:
    ``{seed: {split: {AP, AP0.8, AP0.4}}}``) after every seed. Resumable: a
    seed already in the JSON, or whose folder holds a finished evaluation
    (metrics.json), is not run again. The scenes are generated when missing;
    no labels are needed. Returns ``(splits per seed, the seeds skipped,
    {split: (mean, sample SD)} over ``seeds``)``."""
    check_config(cfg)
    set_threads(cfg)
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be integers >= 0, got {seeds!r}")
    json_path = json_path or os.path.join(sweep_out(cfg), "untrained.json")
    done = _read_untrained(json_path)
    ensure_data({**cfg, "data": {**cfg["data"], "labels": None}}, progress, log)  # only the test scenes are read
    results, skipped = {}, []
    for seed in seeds:
        run_dir = untrained_run_dir(cfg, seed)
        mpath = os.path.join(run_dir, "metrics.json")
        if str(seed) in done:
            results[seed], why = done[str(seed)], f"in {json_path}"
        elif os.path.exists(mpath):
            with open(mpath) as f:
                results[seed], why = json.load(f)["splits"], f"finished evaluation in {run_dir}"
        else:
            seed_everything(seed)
            save_detector(build_model(cfg["model"]), cfg["model"], run_dir)
            results[seed], why = evaluate_detector(cfg, run_dir, progress=progress, log=log)["splits"], None
        if why:
            skipped.append(seed)
        done[str(seed)] = results[seed]
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        tmp = json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(done, f, indent=1)
        os.replace(tmp, json_path)
        log(f"[untrained] seed {seed}: " + ", ".join(f"{k} AP {v['AP']:.2f}" for k, v in results[seed].items())
            + (f" (skipped: {why})" if why else ""))
    splits = [s for s in results[seeds[0]] if all(s in r for r in results.values())]
    summary = {s: mean_sd([results[k][s]["AP"] for k in seeds]) for s in splits}
    return results, skipped, summary
