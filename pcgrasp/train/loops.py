"""Pretraining, fine-tuning and evaluation loops.

One ``fit`` loop serves both stages: AdamW with per-group learning rates,
linear warm-up + cosine decay per step, gradient clipping, bf16 autocast on
GPU, tqdm progress, CSV + TensorBoard logs, a checkpoint after every epoch
(``last.pt``) that ``resume=True`` continues exactly, and DDP when launched
by torchrun (WORLD_SIZE > 1; DistributedSampler, rank 0 writes).
"""
import csv
import json
import math
import os
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..data import GraspDataset, ShapeNetPointClouds, generate_dataset, load_manifest, make_splits
from ..data.grasps import load_recordings
from ..metrics import grasp_joint_metrics
from ..models import GraspModel, PointEncoder, PointJEPA, ema_momentum


# ---------------------------------------------------------------- setup
def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name="auto"):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def world():
    """(rank, world_size), initialising the process group under torchrun."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


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


def cosine_with_warmup(total, warmup):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return f


class Logger:
    """CSV + TensorBoard (when installed), rank 0 only."""

    def __init__(self, run_dir, enabled=True):
        self.enabled, self.path, self.tb = enabled, os.path.join(run_dir, "log.csv"), None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def log(self, step, **values):
        if not self.enabled:
            return
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step"] + sorted(values))
            if new:
                w.writeheader()
            w.writerow({"step": step, **values})
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()


# ---------------------------------------------------------------- the loop
def fit(model, batches_fn, dataset, cfg_stage, run_dir, param_groups, seed, device, resume=False,
        after_step=None, eval_fn=None, desc="train", progress=True):
    """Generic training loop. ``batches_fn(model, batch)`` returns the loss."""
    rank, ws = world()
    model.to(device)
    ddp = ws > 1
    net = nn.parallel.DistributedDataParallel(model) if ddp else model
    bs = cfg_stage["batch_size"]
    g = torch.Generator().manual_seed(seed)
    if ddp:
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, ws, rank, shuffle=cfg_stage.get("shuffle", True),
                                                                  seed=seed, drop_last=True)
        loader = torch.utils.data.DataLoader(dataset, batch_size=bs, sampler=sampler, drop_last=True)
    else:
        sampler = None
        loader = torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=cfg_stage.get("shuffle", True),
                                             generator=g, drop_last=len(dataset) > bs)
    epochs = cfg_stage["epochs"]
    total = max(1, epochs * len(loader))
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg_stage.get("weight_decay", 0.05))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, cfg_stage.get("warmup_epochs", 0) * len(loader)))
    start_epoch, step = 0, 0
    ckpt = os.path.join(run_dir, "last.pt")
    if resume and os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_epoch, step = state["epoch"], state["step"]
        g.set_state(state["loader_rng"])
        torch.set_rng_state(state["torch_rng"])
    logger = Logger(run_dir, rank == 0)
    amp = device.type == "cuda"
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    # stop_after_epochs: end this process early (a preemption), resume later
    stop = min(epochs, start_epoch + cfg_stage["stop_after_epochs"]) if cfg_stage.get("stop_after_epochs") else epochs
    for epoch in range(start_epoch, stop):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        it = loader
        if tqdm and progress and rank == 0:
            it = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
        run_loss, n = 0.0, 0
        for batch in it:
            batch = [b.to(device) for b in batch] if isinstance(batch, (list, tuple)) else batch.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = batches_fn(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg_stage.get("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg_stage["clip"])
            opt.step()
            sched.step()
            step += 1
            if after_step:
                after_step(step, total)
            run_loss += loss.item()
            n += 1
        values = {"loss": run_loss / max(1, n), "lr": sched.get_last_lr()[-1], "epoch": epoch + 1}
        if eval_fn and rank == 0:
            values.update({f"val/{k}": v for k, v in eval_fn().items()})
        logger.log(step, **values)
        if rank == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "epoch": epoch + 1, "step": step, "loader_rng": g.get_state(),
                        "torch_rng": torch.get_rng_state()}, ckpt)
    return step


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
