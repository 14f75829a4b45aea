"""Energy-based grasp planner on top of the training engine: Dex-Net-layout
data (the synthetic default generated when missing), ``GraspEnergyModel``,
the NCE loss, alignment / ranking metrics, the temperature sweep and
refinement by energy descent."""
import copy
import json
import math
import os

import numpy as np
import torch

from ..data.dexnet import DexNetDataset, image_split
from ..losses import energy_nce_loss
from ..metrics import energy_alignment, mean_sd
from ..models import GraspEnergyModel
from .engine import BEST, check_early_stop, check_stage, fit, logged_values, pick_device, read_checkpoint, seed_everything, world


GENERATED = "synthetic_dexnet.json"  # written by ensure_data beside the data it generates


def ensure_data(cfg, progress=True):
    """Generates the synthetic Dex-Net data under ``data.root`` when the root
    holds none, and completes a generation that was interrupted (the root's
    ``synthetic_dexnet.json`` says ``complete: false``; finished chunks are
    kept). A root with data and no such file (a real Dex-Net folder) is used
    as it is."""
    d = cfg["data"]
    root = d["root"]
    marker = os.path.join(root, GENERATED)
    has_data = os.path.isdir(root) and any(f.startswith("depth_ims_tf_table_") for f in os.listdir(root))
    state = None
    if os.path.exists(marker):
        with open(marker) as f:
            state = json.load(f)
    if has_data and (state is None or state.get("complete")):
        return
    from ..data.synthetic.dexnet import generate_dexnet

    settings = {"seed": cfg.get("seed", 0), "crop_window": d.get("crop_window", 64), **d.get("generate", {})}
    os.makedirs(root, exist_ok=True)
    with open(marker, "w") as f:
        json.dump({"complete": False, "settings": settings}, f, indent=1)
    summary = generate_dexnet(root, progress=progress, **settings)
    with open(marker, "w") as f:
        json.dump({"complete": True, "settings": settings, "summary": summary}, f, indent=1)


def datasets(cfg, test=False):
    """(train, val) ``DexNetDataset``s, split image-wise; with ``test``,
    (train, val, test) where test holds ``data.test_fraction`` of the images
    (None when that is 0, the default). The test images are drawn first, so
    that fraction's images are the same whatever ``val_fraction`` is. The
    split is drawn with ``data.split_seed`` (default: the run's ``seed``);
    fixing it keeps one split across the seeds of a sweep."""
    d = cfg["data"]
    full = DexNetDataset(d["root"])
    ids = full.image_ids.numpy() if full.image_ids is not None else np.arange(len(full))
    seed = d.get("split_seed")
    if seed is None:
        seed = cfg.get("seed", 0)
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"data.split_seed must be an integer >= 0 (or null: the run's seed), got {seed!r}")
    tf, vf = d.get("test_fraction", 0.0), d.get("val_fraction", 0.2)
    for key, v in (("test_fraction", tf), ("val_fraction", vf)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ValueError(f"data.{key} must be a number in [0, 1), got {v!r}")
    if tf + vf >= 1:
        raise ValueError(f"data.val_fraction + data.test_fraction must be < 1, got {vf!r} + {tf!r}")
    te = None
    if tf > 0:
        ids, te = image_split(ids, tf, seed + 1_000_003)  # its own stream: independent of the val draw
        vf = vf / (1 - tf)  # val_fraction stays a share of all images
    tr, va = image_split(ids, vf, seed)
    out = (DexNetDataset(d["root"], images=tr), DexNetDataset(d["root"], images=va))
    if test:
        out += (DexNetDataset(d["root"], images=te) if te is not None else None,)
    return out


def build_model(cfg):
    return GraspEnergyModel(**cfg.get("model", {}))


def nce_loss(tau):
    """The engine's loss_fn: NCE over a batch, the batch's failures are the
    negatives shared by every success (no successes: zero loss)."""
    def loss_fn(net, batch):
        crops, grasps, labels = batch
        e = net(crops, grasps)
        pos = labels > 0.5
        if not pos.any():
            return e.sum() * 0
        return energy_nce_loss(e[pos].float(), e[~pos].float(), tau)
    return loss_fn


@torch.no_grad()
def evaluate(model, dataset, device, batch_size, tau=None, seed=0):
    """alignment: mean over shuffled batches of ``batch_size`` of the fraction
    of the batch's successes below all its failures; ranking_accuracy: over
    all (success, failure) pairs of the set, the fraction with E(success) <
    E(failure) (ties count half: the ROC AUC of -E); plus the NCE loss."""
    model.eval().to(device)
    g = torch.Generator().manual_seed(seed)
    energies, labels, align, losses = [], [], [], []
    for crops, grasps, lab in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g):
        e = model(crops.to(device), grasps.to(device)).float().cpu()
        pos = lab > 0.5
        if pos.any():
            align.append(energy_alignment(e[pos], e[~pos]))
            if tau is not None:
                losses.append(float(energy_nce_loss(e[pos], e[~pos], tau)))
        energies.append(e)
        labels.append(lab)
    if not energies:
        return {}
    e, lab = torch.cat(energies).double(), torch.cat(labels) > 0.5
    ep, en = e[lab], e[~lab]
    out = {"alignment": float(np.mean(align))} if align else {}  # no successes: nothing to align
    if len(ep) and len(en):
        # AUC by ranks: pairs (p, n) with e_p < e_n, ties half
        r = torch.from_numpy(_average_ranks(torch.cat([ep, en]).numpy()))
        out["ranking_accuracy"] = float((len(ep) * len(en) + len(ep) * (len(ep) + 1) / 2 - r[:len(ep)].sum())
                                        / (len(ep) * len(en)))
    if losses:
        out["nce_loss"] = float(np.mean(losses))
    return out


def _average_ranks(x):
    """1-based ranks, ties get their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def train(cfg, resume=False, run_dir=None, progress=True):
    """Trains one energy model at ``train.tau``; returns (run_dir, val metrics)."""
    check_stage(cfg, "train")
    check_early_stop(cfg["train"].get("early_stop"))
    t = cfg["train"]
    seed = cfg.get("seed", 0)
    seed_everything(seed)
    ensure_data(cfg, progress)
    device = pick_device(cfg.get("device", "auto"))
    train_ds, val_ds, test_ds = datasets(cfg, test=True)
    seed_everything(seed)
    model = build_model(cfg)
    model.set_normalization(train_ds.crops, train_ds.grasps)
    run_dir = run_dir or os.path.join(t["out"], f"tau_{t['tau']:g}")
    stage = {"schedule": "constant", **t}
    fit(model, nce_loss(t["tau"]), train_ds, stage, run_dir,
        [{"params": model.parameters(), "lr": t.get("lr", 1e-4)}], seed, device, resume,
        eval_fn=lambda: evaluate(model, val_ds, device, t["batch_size"], t["tau"], seed), desc=f"ebm tau={t['tau']:g}",
        progress=progress, make_optimizer=lambda groups: torch.optim.Adam(groups, weight_decay=t.get("weight_decay", 0)))
    # the reported numbers: the test images when there are some (early stopping and restore_best chose the model
    # on val, so val numbers of that model are biased upwards), else val
    report = test_ds if test_ds is not None else val_ds
    metrics = evaluate(model, report, device, t["batch_size"], t["tau"], seed)
    if world()[0] == 0:
        torch.save({"model": model.state_dict(), "cfg": cfg}, os.path.join(run_dir, "model.pt"))
        stopped = os.path.join(run_dir, "early_stop.json")
        extra = {"epochs_trained": len(logged_values(os.path.join(run_dir, "log.csv"), "epoch")),
                 "reported_split": "test" if test_ds is not None else "val"}
        if test_ds is not None:
            extra["test"] = len(test_ds)
            extra["val_metrics"] = evaluate(model, val_ds, device, t["batch_size"], t["tau"], seed)
        if os.path.exists(stopped):
            with open(stopped) as f:
                extra["early_stop"] = json.load(f)
        best = os.path.join(run_dir, BEST)
        if (t.get("early_stop") or {}).get("restore_best") and os.path.exists(best):
            extra["restored_epoch"] = torch.load(best, map_location="cpu", weights_only=False)["epoch"]
        with open(os.path.join(run_dir, "val_metrics.json"), "w") as f:
            json.dump({"train": len(train_ds), "val": len(val_ds),
                       "train_success_fraction": float(train_ds.labels.mean()), **extra, **metrics}, f, indent=1)
    return run_dir, metrics


def load_model(path, device="cpu"):
    state = read_checkpoint(path, ("cfg", "model"), "`pcgrasp ebm train` model.pt")
    model = build_model(state["cfg"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state["cfg"]


# ---------------------------------------------------------------- sweep
def sweep(cfg, progress=True, log=print):
    """Trains one model per temperature in ``sweep.taus`` and seed in
    ``sweep.seeds`` (default: the config's seed alone; run folders
    ``tau_<tau>``, or ``tau_<tau>_s<seed>`` when ``sweep.seeds`` is given).
    A finished run (val_metrics.json) is skipped and an interrupted one
    resumes from its last epoch. Writes table.md (mean ± SD over seeds),
    results.json and alignment_vs_tau.png (error bars: SD) under ``sweep.out``."""
    s = cfg["sweep"]
    seeds = s.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or
                              any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in seeds)):
        raise ValueError(f"sweep.seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    taus = s.get("taus")
    if not isinstance(taus, list) or not taus or any(
            isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0 for x in taus):
        raise ValueError(f"sweep.taus must be a non-empty list of numbers > 0, got {taus!r}")
    check_stage(cfg, "train")
    check_early_stop(cfg["train"].get("early_stop"))
    rows = []
    # seed-major: an interrupted sweep has whole tau curves for its first seeds
    for seed in (seeds or [cfg.get("seed", 0)]):
        for tau in s["taus"]:
            c = copy.deepcopy(cfg)
            c["seed"] = seed
            c["train"].update(tau=tau, out=os.path.join(s["out"], "runs"))
            run = os.path.join(c["train"]["out"], f"tau_{tau:g}" + (f"_s{seed}" if seeds is not None else ""))
            done = os.path.join(run, "val_metrics.json")
            if os.path.exists(done):
                with open(done) as f:
                    m = json.load(f)
            else:
                run, m = train(c, resume=True, run_dir=run, progress=progress)
                with open(done) as f:
                    m = json.load(f)
            rows.append({"tau": tau, "seed": seed, "run": run, **m})
            log(f"tau {tau:>6g} seed {seed}: alignment {m.get('alignment', float('nan')):.3f} "
                f"ranking accuracy {m.get('ranking_accuracy', float('nan')):.3f}"
                + (f", {m['epochs_trained']} epochs" if "epochs_trained" in m else ""))
    os.makedirs(s["out"], exist_ok=True)
    with open(os.path.join(s["out"], "results.json"), "w") as f:
        json.dump({"config": cfg, "rows": rows}, f, indent=1)
    split = rows[0].get("reported_split", "val") if rows else "val"
    table = sweep_table(rows, cfg["train"]["batch_size"], split)
    with open(os.path.join(s["out"], "table.md"), "w") as f:
        f.write(table)
    sweep_plot(rows, os.path.join(s["out"], "alignment_vs_tau.png"), split)
    return rows, table


def _by_tau(rows):
    """tau -> the rows of that temperature, in first-seen order."""
    out = {}
    for r in rows:
        out.setdefault(r["tau"], []).append(r)
    return out


def _cell(rows, key, scale=1.0, fmt="{:.1f}"):
    """"m" for one value, "m ± sd" (``metrics.mean_sd``) for several, "—" for none."""
    v = [r[key] for r in rows if key in r and r[key] is not None and not math.isnan(r[key])]
    if not v:
        return "—"
    m, sd = mean_sd(v, scale)
    return fmt.format(m) if len(v) == 1 else f"{fmt.format(m)} ± {fmt.format(sd)}"


def sweep_table(rows, batch_size, split="val"):
    name = {"val": "Validation split (image-wise).",
            "test": "Test split (image-wise, images used neither for training nor for choosing the epoch)."}[split]
    lines = [f"| τ | seeds | alignment (%) | ranking accuracy (%) | {split} NCE loss | epochs |",
             "|---:|---:|---:|---:|---:|---:|"]
    for tau, rs in _by_tau(rows).items():
        lines.append(f"| {tau:g} | {len(rs)} | {_cell(rs, 'alignment', 100)} | "
                     f"{_cell(rs, 'ranking_accuracy', 100)} | {_cell(rs, 'nce_loss', 1, '{:.3f}')} | "
                     f"{_cell(rs, 'epochs_trained', 1, '{:.0f}')} |")
    lines += ["", "Mean ± SD (ddof 1) over seeds where there are several. "
              f"{name} Alignment: mean over shuffled batches of {batch_size} of the share "
              "of successful grasps whose energy is below every failed grasp of the batch. Ranking accuracy: share of "
              "all (success, failure) pairs ordered correctly by energy (ROC AUC of −E)."]
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sweep_plot(rows, path, split="val"):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    groups = _by_tau(rows)
    taus = list(groups)
    for key, label in (("alignment", "alignment"), ("ranking_accuracy", "ranking accuracy")):
        stats = [mean_sd([r.get(key, float("nan")) for r in groups[t]], 100) for t in taus]
        ax.errorbar(taus, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel({"val": "validation", "test": "test"}[split] + " (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- refinement
def refine(cfg, checkpoint=None, progress=True, log=print):
    """Random grasps on held-out synthetic images, refined by energy descent;
    success rates (the generator's analytic label) before and after, and an
    energy-contour figure of one image. Writes results.json, table.md and
    energy_contour.png under ``refine.out``."""
    from ..data.synthetic.dexnet import make_view, robust_grasp_metric
    from ..data.dexnet import SUCCESS_THRESHOLD
    from ..planning import grasp_energy, refine_grasps

    r, d = cfg["refine"], cfg["data"]
    for key in ("images", "grasps_per_image"):
        if isinstance(r[key], bool) or not isinstance(r[key], int) or r[key] < 1:
            raise ValueError(f"refine.{key} must be an integer >= 1, got {r[key]!r}")
    checkpoint = checkpoint or r.get("checkpoint") or _best_checkpoint(cfg)
    model, mcfg = load_model(checkpoint)
    gen = {**mcfg["data"].get("generate", {}), **d.get("generate", {})}
    size, window = gen.get("image_size", 128), d.get("crop_window", 64)
    rng = np.random.default_rng(cfg.get("seed", 0) + 1)
    results, first = [], None
    it = range(r["images"])
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="refine", dynamic_ncols=True)
    for k in it:
        view = make_view(r.get("first_image", 100000) + k, cfg.get("seed", 0), size)
        depth = torch.from_numpy(view["depth"])
        valid = view["depth"][view["depth"] > 0]
        bounds = [[0, size - 1], [0, size - 1], [float(valid.min()) - 0.01, float(valid.max())], [0, math.pi]]
        n = r["grasps_per_image"]
        y0 = torch.tensor(np.stack([rng.uniform(*bounds[0], n), rng.uniform(*bounds[1], n),
                                    rng.uniform(*bounds[2], n), rng.uniform(0, math.pi, n)], 1), dtype=torch.float32)
        traj, energies = refine_grasps(model, depth, y0, r["steps"], r["lr"], bounds, model.crop_size, window)
        label = lambda y: robust_grasp_metric(view["mesh"], y.numpy(), view["K"], view["camera_pose"],
                                              gen.get("perturbations", 8), np.random.default_rng(k)) > SUCCESS_THRESHOLD
        s0, s1 = label(traj[0]), label(traj[-1])
        best = int(energies[-1].argmin())
        results.append({"image": k, "initial_success": float(s0.mean()), "refined_success": float(s1.mean()),
                        "lowest_energy_success": float(s1[best]), "initial_energy": float(energies[0].mean()),
                        "refined_energy": float(energies[-1].mean())})
        if first is None:
            first = (view, traj, energies, s0, s1)
    summary = {"checkpoint": checkpoint, "images": r["images"], "grasps_per_image": r["grasps_per_image"],
               "steps": r["steps"], "lr": r["lr"]}
    for key in ("initial_success", "refined_success", "lowest_energy_success", "initial_energy", "refined_energy"):
        summary[key] = float(np.mean([x[key] for x in results]))
    os.makedirs(r["out"], exist_ok=True)
    with open(os.path.join(r["out"], "results.json"), "w") as f:
        json.dump({"summary": summary, "per_image": results}, f, indent=1)
    table = ("| grasps | success rate (%) | mean energy |\n|---|---:|---:|\n"
             f"| random initial | {100 * summary['initial_success']:.1f} | {summary['initial_energy']:.3f} |\n"
             f"| refined ({r['steps']} steps) | {100 * summary['refined_success']:.1f} | "
             f"{summary['refined_energy']:.3f} |\n"
             f"| lowest-energy refined grasp per image | {100 * summary['lowest_energy_success']:.1f} | — |\n")
    with open(os.path.join(r["out"], "table.md"), "w") as f:
        f.write(table)
    contour_plot(model, *first, window, os.path.join(r["out"], "energy_contour.png"), grasp_energy)
    log(table)
    return summary, table


def _best_checkpoint(cfg):
    path = os.path.join(cfg["sweep"]["out"], "results.json")
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)["rows"]
        best = max(rows, key=lambda x: x.get("alignment", -1))  # the best single run (any seed)
        return os.path.join(best["run"], "model.pt")
    return os.path.join(cfg["train"]["out"], f"tau_{cfg['train']['tau']:g}", "model.pt")


@torch.no_grad()
def contour_plot(model, view, traj, energies, s0, s1, window, path, grasp_energy, grid=48):
    """Left: the depth image with the descent paths (start o, end x; green =
    refined grasp succeeds). Right: E over (row, col) with the lowest-energy
    refined grasp's depth and angle, as the EBM report's Figures 8-9."""
    plt = _plt()
    depth = torch.from_numpy(view["depth"])
    H, W = depth.shape
    best = traj[-1, int(energies[-1].argmin())]
    rows, cols = torch.linspace(0, H - 1, grid), torch.linspace(0, W - 1, grid)
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    ys = torch.stack([rr.flatten(), cc.flatten(), best[2].expand(grid * grid), best[3].expand(grid * grid)], 1)
    e = torch.cat([grasp_energy(model, depth, ys[i:i + 512], model.crop_size, window) for i in range(0, len(ys), 512)])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5), dpi=110)
    ax[0].imshow(view["depth"], cmap="gray")
    for i in range(traj.shape[1]):
        col = "tab:green" if s1[i] else "tab:red"
        ax[0].plot(traj[:, i, 1], traj[:, i, 0], "-", color=col, lw=0.8, alpha=0.8)
        ax[0].plot(traj[0, i, 1], traj[0, i, 0], "o", color=col, ms=3, mfc="none")
        ax[0].plot(traj[-1, i, 1], traj[-1, i, 0], "x", color=col, ms=4)
    ax[0].set_title(f"descent paths: success {100 * s0.mean():.0f}% → {100 * s1.mean():.0f}%")
    cs = ax[1].contourf(cc.numpy(), rr.numpy(), e.view(grid, grid).numpy(), levels=20, cmap="viridis")
    ax[1].contour(cc.numpy(), rr.numpy(), (torch.from_numpy(view["hit"])[rr.long(), cc.long()] == 0).float().numpy(),
                  levels=[0.5], colors="w", linewidths=1)
    ax[1].plot(best[1], best[0], "r*", ms=10)
    ax[1].invert_yaxis()
    ax[1].set_aspect("equal")
    ax[1].set_title(f"E(row, col) at depth {best[2]:.3f} m, angle {math.degrees(best[3]):.0f}°")
    fig.colorbar(cs, ax=ax[1], label="energy")
    for a in ax:
        a.set_xlabel("column (px)")
        a.set_ylabel("row (px)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
