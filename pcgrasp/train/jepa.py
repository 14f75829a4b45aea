"""Point-JEPA grasp-joint pipeline on top of the training engine: data setup,
JEPA pretraining, grasp fine-tuning (WTA / MSE heads), evaluation."""
import json
import math
import os

import numpy as np
import torch

from ..data import GraspDataset, ShapeNetPointClouds, generate_dataset, load_manifest, make_splits
from ..data.augment import CANONICAL, CloudAugmentation, canonical_pose
from ..data.grasps import load_recordings
from ..data.procedural import ProceduralShapes
from ..data.synthetic.grasps import SYNSETS
from ..eval.probe import elongation, probe_report
from ..metrics import grasp_joint_metrics
from ..models import GraspModel, PointEncoder, PointJEPA, ema_momentum
from ..models.jepa import MASKING_DEFAULTS, check_masking
from .engine import check_stage, fit, pick_device, read_checkpoint, seed_everything, world


def encoder_kwargs(m):
    return dict(dim=m["dim"], depth=m["depth"], heads=m["heads"], centers=m["centers"],
                group_size=m["group_size"], grouping=m.get("grouping", "knn"), radius=m.get("radius", 0.05),
                token_width=m.get("token_width", 128), input_scale=m.get("input_scale", 1.0))


def ensure_data(cfg):
    """Generates the synthetic default and its splits when they are missing."""
    d = cfg["data"]
    if not os.path.isdir(d["root"]) or not os.listdir(d["root"]):
        generate_dataset(d["root"], pretrain_root=d.get("pretrain_root"), seed=cfg.get("seed", 0),
                         **d.get("generate", {}))
    if not os.path.isdir(d["splits"]) or not os.listdir(d["splits"]):
        ids, _, _ = load_recordings(d["root"])
        held = d.get("heldout_category")
        make_splits(ids, d["splits"], split_seed=cfg.get("seed", 0), budgets=sorted(
            set([0.01, 0.1, 0.25, 1.0] + list(cfg.get("sweep", {}).get("budgets", [])))),
            heldout_category=SYNSETS.get(held, held))


MASKING_KEYS = tuple(MASKING_DEFAULTS)
CANONICAL_RMS = 0.05  # metres: the RMS radius pose+size-normalised clouds are scaled to


def canonicaliser(cfg):
    """``pretrain.canonical`` (``none``, absent = none; ``pose``; ``pose+size``)
    as a function of a [B, N, 3] batch (``data.augment.canonical_pose``; size
    ``CANONICAL_RMS``), or None for ``none``. A diagnostic: pretraining and
    probe clouds are put in their principal-axis frame, so pose (and size)
    no longer vary between them; fine-tuning's clouds are not."""
    c = cfg.get("pretrain", {}).get("canonical", "none")
    if c not in CANONICAL:
        raise ValueError(f"pretrain.canonical must be one of {', '.join(CANONICAL)}, got {c!r}")
    if c == "none":
        return None
    size = CANONICAL_RMS if c == "pose+size" else None
    return lambda pts: canonical_pose(pts, size)


def probe_clouds(cfg, n):
    """The ``n`` held-out procedural shapes the probes read (indices from
    10,000,000, beyond any pretraining one), put in the ``pretrain.canonical``
    frame: (ProceduralShapes, clouds [n, points, 3])."""
    d, seed = cfg["data"], cfg.get("seed", 0)
    ds = ProceduralShapes(n, d["points"], seed, start=10_000_000)
    clouds = torch.stack([ds[i] for i in range(n)])
    canon = canonicaliser(cfg)
    return ds, (canon(clouds) if canon is not None else clouds)


def masking_kwargs(p):
    """The ``pretrain.masking`` section ({n_targets, target_ratio,
    context_ratio}, each optional; absent = Point-JEPA's, ``MASKING_DEFAULTS``)
    as PointJEPA keyword arguments; a bad section raises
    ``ValueError`` naming the key."""
    sec = p.get("masking")
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise ValueError(f"pretrain.masking must be a mapping with keys {', '.join(MASKING_KEYS)}; got {sec!r}")
    unknown = set(sec) - set(MASKING_KEYS)
    if unknown:
        raise ValueError(f"pretrain.masking: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(MASKING_KEYS)})")
    kw = dict(MASKING_DEFAULTS)
    kw.update(sec)
    check_masking(kw["n_targets"], kw["target_ratio"], kw["context_ratio"], "pretrain.masking")
    return kw


def build_jepa(cfg):
    """PointJEPA of ``cfg["model"]``, its targets set by ``pretrain.target_norm``
    and ``pretrain.target_layers`` (``token_ln`` and 1 when absent, the
    behaviour of configs written before these keys existed) and its block
    masking by ``pretrain.masking`` (``masking_kwargs``)."""
    m, p = cfg["model"], cfg.get("pretrain", {})
    return PointJEPA(pred_dim=m["pred_dim"], pred_depth=m["pred_depth"], pred_heads=m["pred_heads"],
                     target_norm=p.get("target_norm", "token_ln"), target_layers=p.get("target_layers", 1),
                     **masking_kwargs(p), **encoder_kwargs(m))


# ---------------------------------------------------------------- stages
def pretrain(cfg, resume=False, progress=True):
    """Point-JEPA pretraining; writes <pretrain.out>/encoder.pt (context encoder only).
    ``pretrain.augment`` ({scale: [lo, hi], translate: t, rotate: none|z|so3},
    ``data.augment.CloudAugmentation``; absent = none) augments every
    pretraining cloud afresh each step. ``pretrain.target_view`` (the same
    keys) computes the targets on a second, independently drawn view of each
    augmented cloud (``PointJEPA.forward``'s ``target_view``; absent = the
    same view, Point-JEPA's). ``pretrain.masking`` sets the block masking
    (``masking_kwargs``) and ``pretrain.canonical`` puts the pretraining and
    probe clouds in their principal-axis frame first (``canonicaliser``)."""
    aug = CloudAugmentation.from_config(cfg.get("pretrain", {}).get("augment"))  # None: clouds as generated
    tview = CloudAugmentation.from_config(cfg.get("pretrain", {}).get("target_view"), "pretrain.target_view")
    canon = canonicaliser(cfg)
    check_stage(cfg, "pretrain")
    build_jepa(cfg)  # a bad model / target / masking setting fails here, before any data are made
    seed_everything(cfg.get("seed", 0))
    ensure_data(cfg)
    device = pick_device(cfg.get("device", "auto"))
    m, p, d = cfg["model"], cfg["pretrain"], cfg["data"]
    data = pretraining_data(cfg, progress)
    model = build_jepa(cfg)
    init_state = {k: v.detach().clone() for k, v in model.target.state_dict().items()}
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    lo, hi = p.get("ema", [0.9995, 0.99999])
    aug_gen = torch.Generator().manual_seed(cfg.get("seed", 0) + 7919)
    view_gen = torch.Generator().manual_seed(cfg.get("seed", 0) + 104729)
    generators = {"masks": gen, **({"augment": aug_gen} if aug is not None else {}),
                  **({"target_view": view_gen} if tview is not None else {})}

    def loss_fn(net, pts):
        if canon is not None:
            pts = canon(pts)
        if aug is not None:
            pts = aug(pts, aug_gen)  # both the context and the target see the same augmented cloud
        view = tview.draw(pts.shape[0], view_gen, pts.dtype) if tview is not None else None
        return net(pts, gen, target_view=view)

    def after(step, total):
        model.update_target(ema_momentum(step, total, lo, hi))

    groups = [{"params": [q for q in model.parameters() if q.requires_grad], "lr": p["lr"]}]
    fit(model, loss_fn, data, p, p["out"], groups, cfg.get("seed", 0), device, resume, after, desc="pretrain",
        progress=progress, generators=generators)
    if world()[0] == 0:
        torch.save({"encoder": model.context.state_dict(), "model_cfg": m}, os.path.join(p["out"], "encoder.pt"))
        if cfg.get("probe", {}).get("shapes", 0):
            report = probe_encoders(cfg, model.context.state_dict(), device)
            report["targets"] = target_stats(model, init_state, cfg, device)
            with open(os.path.join(p["out"], "probe.json"), "w") as f:
                json.dump(report, f, indent=1)
            ts = report["targets"]
            print(f"[probe] targets: per-feature SD {ts['target_sd']:.4f} (between clouds "
                  f"{ts['target_sd_between_clouds']:.4f}), layer-normed output SD {ts['ln_output_sd']:.4f}; "
                  f"target encoder moved {ts['target_drift']:.3f} of its init norm")
            for init, r in report["encoders"].items():
                print(f"[probe] {init:>6}: category kNN {r['knn_acc']:.3f} linear {r['linear_acc']:.3f}, "
                      f"elongation R^2 {r['property_r2']:.3f} (chance {report['chance']:.3f})")
    return os.path.join(p["out"], "encoder.pt")


def pretraining_data(cfg, progress=True):
    """The unlabeled pretraining set: ``data.pretrain_shapes`` procedural
    shapes (lazily generated into ``data.pretrain_cache``, resumable) plus
    every model of a ShapeNet-style ``data.pretrain_root`` when present
    (scaled into a sphere of radius ``data.shapenet_radius``, 1.0 as ShapeNet
    ships)."""
    d, seed = cfg["data"], cfg.get("seed", 0)
    parts = []
    n = int(d.get("pretrain_shapes", 0))
    if n:
        shapes = ProceduralShapes(n, d["points"], seed, cache=d.get("pretrain_cache"))
        if shapes.cache:
            shapes.fill(progress=progress)
        parts.append(shapes)
    root = d.get("pretrain_root")
    if root and os.path.isdir(root) and os.listdir(root):
        parts.append(ShapeNetPointClouds([root], d["points"], seed, radius=d.get("shapenet_radius", 1.0)))
    if not parts:
        raise ValueError("no pretraining data: set data.pretrain_shapes > 0 or data.pretrain_root to a "
                         "ShapeNet-style folder")
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


@torch.no_grad()
def encoder_features(encoder, clouds, device, batch_size=64):
    """[n, 2 dim] frozen features: mean and max over the encoder's tokens."""
    encoder.eval().to(device)
    out = []
    for i in range(0, len(clouds), batch_size):
        _, tok = encoder(clouds[i:i + batch_size].to(device))
        out.append(torch.cat([tok.mean(1), tok.amax(1)], -1).float().cpu())
    return torch.cat(out).numpy()


def probe_encoders(cfg, jepa_state, device):
    """Frozen-feature probes (``pcgrasp.eval.probe``) of the JEPA encoder and of
    a random initialisation (seeded like fine-tuning's scratch models) on
    ``probe.shapes`` procedural shapes disjoint from the pretraining ones:
    category kNN / linear accuracy and R^2 of the cloud's elongation. The
    clouds are in the ``pretrain.canonical`` frame (``probe_clouds``)."""
    seed = cfg.get("seed", 0)
    n = int(cfg["probe"]["shapes"])
    ds, clouds = probe_clouds(cfg, n)
    prop = np.array([elongation(c.numpy()) for c in clouds])
    encoders = {}
    for init in ("jepa", "random"):
        torch.manual_seed(seed)
        enc = PointEncoder(**encoder_kwargs(cfg["model"]))
        if init == "jepa":
            enc.load_state_dict(jepa_state)
        encoders[init] = probe_report(encoder_features(enc, clouds, device), ds.labels, prop, seed)
    return {"shapes": n, "chance": float(1.0 / len(ds.categories)), "encoders": encoders}


def _relative_drift(state, init_state):
    """||theta - theta_0|| / ||theta_0|| over the floating-point tensors."""
    num = den = 0.0
    for k, v0 in init_state.items():
        if v0.is_floating_point():
            num += float(((state[k].detach().cpu().double() - v0.cpu().double()) ** 2).sum())
            den += float((v0.cpu().double() ** 2).sum())
    return math.sqrt(num / max(den, 1e-300))


@torch.no_grad()
def target_stats(model, init_state, cfg, device, n=128):
    """How much the JEPA targets vary, on ``n`` held-out procedural shapes
    (those the probe uses): ``target_sd`` (per-feature SD of the targets the
    loss regresses, over every token of every cloud, averaged over features),
    ``target_sd_between_clouds`` (the same of each cloud's mean target),
    ``ln_output_sd`` (the same SD for the layer-normed last output, the
    original target, whatever ``target_norm`` is) and ``target_drift`` /
    ``context_drift`` (how far the target / context encoder moved from the
    initialisation: ||theta - theta_0|| / ||theta_0||)."""
    n = min(n, int(cfg.get("probe", {}).get("shapes", n)) or n)
    clouds = probe_clouds(cfg, n)[1].to(device)
    model.eval().to(device)
    tgt = torch.cat([model.targets(clouds[i:i + 64]) for i in range(0, n, 64)]).float().cpu()
    ln = torch.cat([torch.nn.functional.layer_norm(model.target(clouds[i:i + 64])[1], (model.target.dim,))
                    for i in range(0, n, 64)]).float().cpu()
    model.train()
    return {"clouds": n,
            "target_sd": float(tgt.reshape(-1, tgt.shape[-1]).std(0, unbiased=False).mean()),
            "target_sd_between_clouds": float(tgt.mean(1).std(0, unbiased=False).mean()),
            "ln_output_sd": float(ln.reshape(-1, ln.shape[-1]).std(0, unbiased=False).mean()),
            "target_drift": _relative_drift(model.target.state_dict(), init_state),
            "context_drift": _relative_drift(model.context.state_dict(), init_state)}


def build_grasp_model(cfg, init=None, head=None):
    m, t = cfg["model"], cfg["train"]
    init, head = init or t.get("init", "jepa"), head or t.get("head", "wta")
    enc = PointEncoder(**encoder_kwargs(m))
    if init == "jepa":
        state = read_checkpoint(t["pretrained"], ("encoder",), "Point-JEPA pretraining checkpoint (train.pretrained)")
        enc.load_state_dict(state["encoder"])
    elif init != "scratch":
        raise ValueError(f"train.init must be 'jepa' or 'scratch', got {init!r}")
    if head not in ("wta", "mse"):
        raise ValueError(f"train.head must be 'wta' or 'mse', got {head!r}")
    return GraspModel(enc, head=head, k=m.get("k", 5), hidden=m.get("hidden", 256))


def grasp_loss(net, batch):
    pts, pose, joints = batch
    return net(pts, pose, joints)


@torch.no_grad()
def evaluate_model(model, dataset, device, batch_size=256):
    model.eval().to(device)
    preds, logits, targets = [], [], []
    for pts, pose, joints in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        p, lg = model(pts.to(device), pose.to(device))
        preds.append(p.float().cpu())
        logits.append(lg.float().cpu())
        targets.append(joints)
    if not preds:
        return {}
    return grasp_joint_metrics(torch.cat(preds), torch.cat(logits), torch.cat(targets))


def run_name(t):
    return f"{t['init']}_{t['head']}_b{int(round(t['budget'] * 100)):03d}_{t['pack']}_s{t.get('seed', 0)}"


def finetune(cfg, resume=False, run_dir=None, progress=True, train_objects=None):
    """Grasp fine-tuning from JEPA or scratch; returns (run_dir, metrics): the
    test split's metrics, plus the same for the val and (when the split has a
    held-out category) heldout splits under ``val/`` and ``heldout/`` keys.

    ``train.steps`` (optional) fixes the number of optimiser steps instead of
    ``train.epochs`` (epochs = ceil(steps / batches per epoch)), so every
    budget gets the same compute; ``train.eval_each_epoch: false`` skips the
    per-epoch validation log."""
    check_stage(cfg, "train")
    t = dict(cfg["train"])
    b = t.get("budget", 1.0)
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 1:
        raise ValueError(f"train.budget must be a fraction in (0, 1], got {b!r}")
    t.setdefault("seed", cfg.get("seed", 0))
    seed_everything(t["seed"])
    ensure_data(cfg)
    device = pick_device(cfg.get("device", "auto"))
    d = cfg["data"]
    man = load_manifest(d["splits"], t["pack"], t["budget"])
    train_ds = GraspDataset(d["root"], set(train_objects or man["train"]), d["points"], seed=cfg.get("seed", 0))
    splits = {name: GraspDataset(d["root"], set(man[name]), d["points"], seed=cfg.get("seed", 0))
              for name in ("val", "test", "heldout") if man.get(name)}
    if t.get("steps"):
        if not (isinstance(t["steps"], int) and t["steps"] > 0):
            raise ValueError(f"train.steps must be a positive integer, got {t['steps']!r}")
        per_epoch = max(1, len(train_ds) // t["batch_size"])
        t["epochs"] = math.ceil(t["steps"] / per_epoch)
    seed_everything(t["seed"])  # model init independent of data loading
    model = build_grasp_model(cfg, t["init"], t["head"])
    groups = [{"params": model.backbone_parameters(), "lr": t["lr_backbone"]},
              {"params": model.head_parameters(), "lr": t["lr_head"]}]
    run_dir = run_dir or os.path.join(t["out"], run_name(t))
    eval_fn = (lambda: evaluate_model(model, splits["val"], device)) if t.get("eval_each_epoch", True) and \
        "val" in splits else None
    fit(model, grasp_loss, train_ds, t, run_dir, groups, t["seed"], device, resume,
        eval_fn=eval_fn, desc=run_name(t), progress=progress)
    metrics = evaluate_model(model, splits["test"], device) if "test" in splits else {}
    for name in ("val", "heldout"):
        if name in splits:
            metrics.update({f"{name}/{k}": v for k, v in evaluate_model(model, splits[name], device).items()})
    rank, _ = world()
    if rank == 0:
        torch.save({"model": model.state_dict(), "cfg": cfg, "train": t}, os.path.join(run_dir, "model.pt"))
        tmp = os.path.join(run_dir, "test_metrics.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"train_objects": len(set(train_ds.ids)), "train_grasps": len(train_ds), **metrics}, f, indent=1)
        os.replace(tmp, os.path.join(run_dir, "test_metrics.json"))
    return run_dir, metrics


def evaluate_checkpoint(path, split="test", device="auto"):
    state = read_checkpoint(path, ("cfg", "train", "model"), "`pcgrasp train` model.pt")
    cfg, t = state["cfg"], state["train"]
    model = build_grasp_model({**cfg, "train": {**t, "init": "scratch"}}, "scratch", t["head"])
    model.load_state_dict(state["model"])
    d = cfg["data"]
    man = load_manifest(d["splits"], t["pack"], t["budget"])
    ds = GraspDataset(d["root"], set(man[split]), d["points"], seed=cfg.get("seed", 0))
    return evaluate_model(model, ds, pick_device(device))
