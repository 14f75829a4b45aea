"""Point-JEPA grasp-joint pipeline on top of the training engine: data setup,
JEPA pretraining, grasp fine-tuning (WTA / MSE heads), evaluation."""
import json
import os

import torch

from ..data import GraspDataset, ShapeNetPointClouds, generate_dataset, load_manifest, make_splits
from ..data.grasps import load_recordings
from ..metrics import grasp_joint_metrics
from ..models import GraspModel, PointEncoder, PointJEPA, ema_momentum
from .engine import fit, pick_device, seed_everything, world


def encoder_kwargs(m):
    return dict(dim=m["dim"], depth=m["depth"], heads=m["heads"], centers=m["centers"],
                group_size=m["group_size"], grouping=m.get("grouping", "knn"), radius=m.get("radius", 0.05),
                token_width=m.get("token_width", 128))


def ensure_data(cfg):
    """Generates the synthetic default and its splits when they are missing."""
    d = cfg["data"]
    if not os.path.isdir(d["root"]) or not os.listdir(d["root"]):
        generate_dataset(d["root"], pretrain_root=d.get("pretrain_root"), seed=cfg.get("seed", 0),
                         **d.get("generate", {}))
    if not os.path.isdir(d["splits"]) or not os.listdir(d["splits"]):
        ids, _, _ = load_recordings(d["root"])
        make_splits(ids, d["splits"], split_seed=cfg.get("seed", 0), budgets=sorted(
            set([0.01, 0.1, 0.25, 1.0] + list(cfg.get("sweep", {}).get("budgets", [])))))


# ---------------------------------------------------------------- stages
def pretrain(cfg, resume=False, progress=True):
    """Point-JEPA pretraining; writes <pretrain.out>/encoder.pt (context encoder only)."""
    seed_everything(cfg.get("seed", 0))
    ensure_data(cfg)
    device = pick_device(cfg.get("device", "auto"))
    m, p, d = cfg["model"], cfg["pretrain"], cfg["data"]
    # unlabeled shapes: the pretraining folder plus the grasp objects' meshes
    _, meshes, _ = load_recordings(d["root"])
    roots = [d["pretrain_root"]] if d.get("pretrain_root") and os.path.isdir(d["pretrain_root"]) else []
    data = ShapeNetPointClouds(roots, d["points"], cfg.get("seed", 0), extra_meshes=meshes)
    model = PointJEPA(pred_dim=m["pred_dim"], pred_depth=m["pred_depth"], pred_heads=m["pred_heads"], **encoder_kwargs(m))
    gen = torch.Generator().manual_seed(cfg.get("seed", 0))
    lo, hi = p.get("ema", [0.9995, 0.99999])

    def loss_fn(net, pts):
        return net(pts, gen)

    def after(step, total):
        model.update_target(ema_momentum(step, total, lo, hi))

    groups = [{"params": [q for q in model.parameters() if q.requires_grad], "lr": p["lr"]}]
    fit(model, loss_fn, data, p, p["out"], groups, cfg.get("seed", 0), device, resume, after, desc="pretrain",
        progress=progress)
    if world()[0] == 0:
        torch.save({"encoder": model.context.state_dict(), "model_cfg": m}, os.path.join(p["out"], "encoder.pt"))
    return os.path.join(p["out"], "encoder.pt")


def build_grasp_model(cfg, init=None, head=None):
    m, t = cfg["model"], cfg["train"]
    init, head = init or t.get("init", "jepa"), head or t.get("head", "wta")
    enc = PointEncoder(**encoder_kwargs(m))
    if init == "jepa":
        state = torch.load(t["pretrained"], map_location="cpu", weights_only=False)
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
    """Grasp fine-tuning from JEPA or scratch; returns (run_dir, test metrics)."""
    t = dict(cfg["train"])
    t.setdefault("seed", cfg.get("seed", 0))
    seed_everything(t["seed"])
    ensure_data(cfg)
    device = pick_device(cfg.get("device", "auto"))
    d = cfg["data"]
    man = load_manifest(d["splits"], t["pack"], t["budget"])
    train_ds = GraspDataset(d["root"], set(train_objects or man["train"]), d["points"], seed=cfg.get("seed", 0))
    val_ds = GraspDataset(d["root"], set(man["val"]), d["points"], seed=cfg.get("seed", 0))
    test_ds = GraspDataset(d["root"], set(man["test"]), d["points"], seed=cfg.get("seed", 0))
    seed_everything(t["seed"])  # model init independent of data loading
    model = build_grasp_model(cfg, t["init"], t["head"])
    groups = [{"params": model.backbone_parameters(), "lr": t["lr_backbone"]},
              {"params": model.head_parameters(), "lr": t["lr_head"]}]
    run_dir = run_dir or os.path.join(t["out"], run_name(t))
    fit(model, grasp_loss, train_ds, t, run_dir, groups, t["seed"], device, resume,
        eval_fn=lambda: evaluate_model(model, val_ds, device), desc=run_name(t), progress=progress)
    metrics = evaluate_model(model, test_ds, device)
    rank, _ = world()
    if rank == 0:
        torch.save({"model": model.state_dict(), "cfg": cfg, "train": t}, os.path.join(run_dir, "model.pt"))
        with open(os.path.join(run_dir, "test_metrics.json"), "w") as f:
            json.dump({"train_objects": len(set(train_ds.ids)), "train_grasps": len(train_ds), **metrics}, f, indent=1)
    return run_dir, metrics


def evaluate_checkpoint(path, split="test", device="auto"):
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg, t = state["cfg"], state["train"]
    model = build_grasp_model({**cfg, "train": {**t, "init": "scratch"}}, "scratch", t["head"])
    model.load_state_dict(state["model"])
    d = cfg["data"]
    man = load_manifest(d["splits"], t["pack"], t["budget"])
    ds = GraspDataset(d["root"], set(man[split]), d["points"], seed=cfg.get("seed", 0))
    return evaluate_model(model, ds, pick_device(device))
