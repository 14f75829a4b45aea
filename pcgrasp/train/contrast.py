"""GraspContrast pretraining on top of the training engine: frame pairs of
GraspNet-1B-layout scenes (the synthetic default generated when missing), the
shared-weight sparse backbone, the FNE contrastive loss, and feature-match
recall on held-out pairs every epoch. Writes ``backbone.pt``: a plain
MinkUNet14D / ResUNet14 state_dict (ME / GSNet key names such as
``conv0p1s1.kernel``, ``bn0.bn.weight``, ``block1.0.conv1.kernel``,
``final.kernel``, ``final.bias``) that loads with ``strict=True``.

One step, per scene pair b of the batch: both views, freshly augmented (N
points each), through the backbone -> M keypoints on view 1 by farthest point
sampling (random start) ->
each keypoint's match in view 2 by ``ops.correspondences`` in the world frame
(p_w = T_i p with T_i = camera_pose_i @ inv(augmentation_i), given as
transforms, never applied to copies) within epsilon -> ``valid`` = has a
match -> ``losses.graspcontrast_loss`` (``ops.point_info_nce`` with the
keypoints' world positions for false-negative elimination at gamma_D)."""
import json
import os

import numpy as np
import torch

from .. import ops
from ..data.graspnet import SPLITS, FramePairs, GraspNetScenes, augmentation
from ..losses import graspcontrast_loss
from ..metrics import feature_match_recall
from ..models import GraspContrast
from ..models.minkunet import GSNET_PLANES
from .engine import barrier, fit, pick_device, rank_zero_first, read_checkpoint, seed_everything, world


# ---------------------------------------------------------------- data
class PairTensors(torch.utils.data.Dataset):
    """``FramePairs`` as fixed-shape tensors the default collate stacks into a
    batch of scene pairs: (points1 [N, 3], points2 [N, 3], transform1 [4, 4],
    transform2 [4, 4]), float32; transforms map each view (augmented when the
    pairs are) to the table (world) frame. Needs ``num_points`` set on the pairs."""

    def __init__(self, pairs):
        if pairs.num_points is None:
            raise ValueError("PairTensors needs FramePairs with a fixed num_points (batches are stacked)")
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        p = self.pairs[i]
        f = lambda k: torch.as_tensor(np.asarray(p[k], dtype=np.float32))  # noqa: E731
        return f("points1"), f("points2"), f("transform1"), f("transform2")


def ensure_data(cfg, progress=True):
    d = cfg["data"]
    if not os.path.isdir(os.path.join(d["root"], "scenes")):
        from ..data.synthetic.scenes import generate_scenes

        g = dict(d.get("generate", {}))
        if "objects_per_scene" in g:
            g["objects_per_scene"] = tuple(g["objects_per_scene"])
        generate_scenes(d["root"], seed=cfg.get("seed", 0), progress=progress, **g)


def frame_pairs(cfg, split, augment, progress=False):
    d, lo = cfg["data"], cfg["loss"]
    scenes = GraspNetScenes(d["root"], split=split, camera=d.get("camera", "realsense"), num_points=None,
                            voxel_size=cfg["model"].get("voxel_size", 0.005))
    return FramePairs(scenes, min_overlap=d.get("min_overlap", 0.3), epsilon=lo["epsilon"],
                      num_points=d["num_points"], augment=augment, overlap_points=d.get("overlap_points", 2048),
                      max_pairs_per_scene=d.get("max_pairs_per_scene"), seed=cfg.get("seed", 0) + (split != "train"),
                      progress=progress)


def build_model(cfg):
    m = cfg["model"]
    return GraspContrast(out_channels=m.get("out_channels", 512), planes=tuple(m.get("planes") or GSNET_PLANES),
                         in_channels=m.get("in_channels", 3),
                         voxel_size=m.get("voxel_size", 0.005), projection=m.get("projection"),
                         normalize=m.get("normalize", True))


# ---------------------------------------------------------------- keypoints and loss
def _world(points, T):
    return points @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]


def keypoint_pairs(points1, points2, T1, T2, num_keypoints, epsilon, start="first"):
    """M keypoints on view 1 by FPS (``start``: "first" or "random", drawn
    from torch's global CPU RNG) and their matches in view 2 (world frame).

    Returns (kp [B, M] int64 indices into points1, match [B, M] int64 indices
    into points2 (0 where invalid), valid [B, M] bool, xyz [B, M, 3] the
    keypoints' world positions)."""
    kp = ops.farthest_point_sample(points1, num_keypoints, start=start)
    has_kp = kp >= 0
    kp = kp.clamp_min(0)
    kp_xyz = torch.gather(points1, 1, kp[..., None].expand(-1, -1, 3))
    idx, _ = ops.correspondences(kp_xyz, points2, epsilon, src_transform=T1, dst_transform=T2)
    valid = has_kp & (idx >= 0)
    return kp, idx.clamp_min(0), valid, _world(kp_xyz, T1)


def _gather(f, idx):
    return torch.gather(f, 1, idx[..., None].expand(-1, -1, f.shape[-1]))


def augment_views(points, T):
    """A fresh GraspContrast augmentation per cloud (``graspnet.augmentation``:
    YZ flip, rotation about the table normal), drawn from torch's global RNG
    (saved in every checkpoint, so a resumed run draws the same ones).
    points [B, N, 3] in camera frames, T [B, 4, 4] camera -> world. Returns
    (A p, T inv(A)): the augmented clouds and their transforms to the world."""
    Tn = T.double().cpu().numpy()  # one copy (a sync on CUDA), not one per cloud
    A = np.stack([augmentation(np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)))), Tb[:3, :3].T @ [0.0, 0.0, 1.0])
                  for Tb in Tn])  # [B, 4, 4] small host matrices
    At = torch.as_tensor(A, dtype=points.dtype, device=points.device)
    pts = points @ At[:, :3, :3].transpose(1, 2) + At[:, None, :3, 3]
    return pts, torch.as_tensor(Tn @ np.linalg.inv(A), dtype=T.dtype, device=T.device)


def contrast_loss(cfg):
    """The engine's loss_fn for a batch (points1, points2, T1, T2) of
    unaugmented pairs; with ``augment`` each view gets a fresh augmentation
    every step (not a fixed one per pair)."""
    lo = cfg["loss"]
    gamma = lo["gamma"] if cfg.get("fne", True) else None

    def loss_fn(net, batch):
        p1, p2, T1, T2 = batch
        if cfg.get("augment", True):
            (p1, T1), (p2, T2) = augment_views(p1, T1), augment_views(p2, T2)
        f1, f2 = net(p1, p2)
        # a random FPS start: other keypoints every epoch (FPS is blind to the rotation)
        kp, match, valid, xyz = keypoint_pairs(p1, p2, T1, T2, lo["keypoints"], lo["epsilon"], start="random")
        return graspcontrast_loss(_gather(f1, kp).float(), _gather(f2, match).float(), xyz, valid, lo["tau"], gamma)
    return loss_fn


@torch.no_grad()
def evaluate(model, dataset, cfg, device):
    """Mean over held-out pairs of ``metrics.feature_match_recall`` (view 1's
    FPS keypoints against all of view 2's points) and of the loss."""
    lo = cfg["loss"]
    gamma = lo["gamma"] if cfg.get("fne", True) else None
    was = model.training
    model.eval()
    rows = []
    for i in range(len(dataset)):
        p1, p2, T1, T2 = (t[None].to(device) for t in dataset[i])
        f1, f2 = model(p1, p2)
        kp, match, valid, xyz = keypoint_pairs(p1, p2, T1, T2, lo["keypoints"], lo["epsilon"])
        r = feature_match_recall(_gather(f1, kp)[0], xyz[0], valid[0], f2[0], _world(p2, T2)[0], lo["epsilon"])
        r["loss"] = float(graspcontrast_loss(_gather(f1, kp).float(), _gather(f2, match).float(), xyz, valid,
                                             lo["tau"], gamma))
        r["valid_keypoints"] = float(valid.double().mean())
        rows.append(r)
    model.train(was)
    if not rows:
        return {}
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def held_out(cfg, split=None):
    """The held-out pairs of ``data.val_split`` (or ``split``; first
    ``data.val_pairs``), with one fixed augmentation per pair (when ``augment``)."""
    d = cfg["data"]
    pairs = frame_pairs(cfg, split or d.get("val_split", "test"), cfg.get("augment", True))
    pairs.pairs = pairs.pairs[:d.get("val_pairs", 8)]
    return PairTensors(pairs)


# ---------------------------------------------------------------- the stage
def check_config(cfg):
    """Clear errors for a config missing a section or holding an out-of-range value."""
    for sec in ("data", "model", "loss", "train"):
        if not isinstance(cfg.get(sec), dict):
            raise ValueError(f"config needs a '{sec}' section")
    d = cfg["data"]

    def number(sec, key, ok, what):
        v = cfg[sec].get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
            raise ValueError(f"{sec}.{key} must be {what}, got {v!r}")

    number("loss", "tau", lambda v: v > 0, "a number > 0")
    number("loss", "epsilon", lambda v: v > 0, "a number > 0 (metres)")
    number("loss", "gamma", lambda v: v >= 0, "a number >= 0 (metres)")
    number("loss", "keypoints", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    number("data", "num_points", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    number("train", "epochs", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    number("train", "batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    for key in ("fne", "augment"):
        if not isinstance(cfg.get(key, True), bool):
            raise ValueError(f"{key} must be true or false, got {cfg[key]!r}")
    if not isinstance(cfg["train"].get("sync_bn", True), bool):
        raise ValueError(f"train.sync_bn must be true or false, got {cfg['train']['sync_bn']!r}")
    if "root" not in d or "out" not in cfg["train"]:
        raise ValueError("config needs data.root and train.out")


def pretrain(cfg, resume=False, progress=True):
    """GraspContrast pretraining; returns the path of ``<train.out>/backbone.pt``."""
    check_config(cfg)
    t, seed = cfg["train"], cfg.get("seed", 0)
    seed_everything(seed)
    device = pick_device(cfg.get("device", "auto"))  # under torchrun: this rank's GPU (LOCAL_RANK)
    with rank_zero_first(device):  # under torchrun rank 0 generates missing scenes, the others wait
        ensure_data(cfg, progress)
    # training views are augmented per step in the loss (fresh draws every epoch)
    train_ds = PairTensors(frame_pairs(cfg, cfg["data"].get("train_split", "train"), False, progress))
    if len(train_ds) == 0:
        raise ValueError(f"no frame pair of split {cfg['data'].get('train_split', 'train')!r} overlaps more than "
                         f"data.min_overlap={cfg['data'].get('min_overlap', 0.3)}")
    val_ds = held_out(cfg)
    seed_everything(seed)  # model init independent of data loading
    model = build_model(cfg)
    stage = {"schedule": "exponential", "lr_decay": 0.95, **t}
    fit(model, contrast_loss(cfg), train_ds, stage, t["out"], [{"params": model.parameters(), "lr": t.get("lr", 1e-3)}],
        seed, device, resume, eval_fn=(lambda: evaluate(model, val_ds, cfg, device)) if len(val_ds) else None,
        desc="contrast", progress=progress,
        make_optimizer=lambda groups: torch.optim.Adam(groups, weight_decay=t.get("weight_decay", 0)))
    path = os.path.join(t["out"], "backbone.pt")
    if world()[0] == 0:
        tmp = path + ".tmp"
        torch.save(model.backbone_state_dict(), tmp)
        os.replace(tmp, path)
        m = model.backbone
        with open(os.path.join(t["out"], "backbone.json"), "w") as f:
            json.dump({"class": "MinkUNet14D", "in_channels": model.in_channels,
                       "out_channels": m.final.kernel.shape[-1], "planes": list(m.planes),
                       "voxel_size": model.voxel_size, "train_pairs": len(train_ds), "val_pairs": len(val_ds),
                       "fne": cfg.get("fne", True), "augment": cfg.get("augment", True), "loss": cfg["loss"]}, f,
                      indent=1)
    barrier()  # under torchrun: every rank returns once backbone.pt is there
    return path


def load_backbone(path, device="cpu"):
    """A ``MinkUNet14D`` with the weights of a ``backbone.pt`` (strict)."""
    from ..models import MinkUNet14D

    with open(os.path.join(os.path.dirname(path), "backbone.json")) as f:
        meta = json.load(f)
    net = MinkUNet14D(meta["in_channels"], meta["out_channels"], tuple(meta["planes"]))
    net.load_state_dict(read_checkpoint(path, (), "backbone state dict", device, weights_only=True), strict=True)
    return net


def evaluate_backbone(cfg, path=None, split=None):
    """Held-out metrics (pairs of ``data.val_split``, or ``split``) of a
    ``backbone.pt`` (default: the run's), with the config's loss settings;
    also those of a randomly initialised backbone of the same shape (seeded)
    as the reference a pretraining should beat."""
    check_config(cfg)
    name = split or cfg["data"].get("val_split", "test")
    if name not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
    path = path or os.path.join(cfg["train"]["out"], "backbone.pt")
    if not os.path.isfile(path):  # before any scenes are made
        raise FileNotFoundError(f"backbone {path} does not exist (contrast-pretrain writes it)")
    state = read_checkpoint(path, (), "backbone state dict", weights_only=True)
    ensure_data(cfg, progress=False)
    device = pick_device(cfg.get("device", "auto"))
    val_ds = held_out(cfg, split)
    seed_everything(cfg.get("seed", 0))
    model = build_model(cfg).to(device)
    random_init = evaluate(model, val_ds, cfg, device)
    model.backbone.load_state_dict(state, strict=True)
    return {"backbone": path, "split": split or cfg["data"].get("val_split", "test"), "pairs": len(val_ds),
            "pretrained": evaluate(model, val_ds, cfg, device),
            "random_init": random_init}


def report(log_csv, out, cfg=None):
    """``table.md`` (one row per epoch) and ``curves.png`` (training loss,
    held-out loss, feature-match recall and hit ratio per epoch) from a run's
    ``log.csv``; returns the table."""
    import csv

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{log_csv} holds no epoch")
    cols = [("epoch", "epoch", "{:.0f}"), ("lr", "lr", "{:.2e}"), ("loss", "train loss", "{:.4f}"),
            ("val/loss", "val loss", "{:.4f}"), ("val/feature_match_recall", "val FMR", "{:.3f}"),
            ("val/hit_ratio", "val hit ratio", "{:.3f}"), ("val/sim_gap", "val pos-neg sim", "{:.3f}")]
    cols = [c for c in cols if c[0] in rows[0]]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---:|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(float(r[k])) if r.get(k) not in (None, "") else "" for k, _, fmt
                                       in cols) + " |")
    table = "\n".join(lines)
    if cfg is not None:
        keep = {k: cfg.get(k) for k in ("seed", "fne", "augment")}
        keep.update({k: cfg[k] for k in ("loss", "model", "train") if k in cfg})
        table += "\n\nSettings: `" + json.dumps(keep) + "`\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [float(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [float(r["loss"]) for r in rows], "o-", label="train")
    if "val/loss" in rows[0]:
        ax[0].plot(ep, [float(r["val/loss"]) for r in rows], "s--", label="held-out")
    ax[0].set(xlabel="epoch", ylabel="GraspContrast loss", title="loss")
    ax[0].legend()
    for k, lab in (("val/feature_match_recall", "feature-match recall (mutual)"), ("val/hit_ratio", "hit ratio")):
        if k in rows[0]:
            ax[1].plot(ep, [float(r[k]) for r in rows], "o-", label=lab)
    ax[1].set(xlabel="epoch", ylabel="fraction of keypoints", title="held-out pairs")
    ax[1].legend(loc="upper left")
    if "val/sim_gap" in rows[0]:
        tw = ax[1].twinx()
        tw.plot(ep, [float(r["val/sim_gap"]) for r in rows], "^:", color="tab:green", label="pos - neg similarity")
        tw.set_ylabel("pos - neg cosine similarity")
        tw.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=110)
    plt.close(fig)
    return table


def compare_runs(run_dirs):
    """A markdown table of the last epoch of several runs (the ablations):
    their ``backbone.json`` switches and final ``log.csv`` row."""
    import csv

    lines = ["| run | fne | augment | epochs | train loss | val loss | val FMR | val hit ratio | val pos-neg sim |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for d in run_dirs:
        with open(os.path.join(d, "log.csv")) as f:
            last = list(csv.DictReader(f))[-1]
        with open(os.path.join(d, "backbone.json")) as f:
            meta = json.load(f)
        cell = lambda k: f"{float(last[k]):.4f}" if last.get(k) not in (None, "") else ""  # noqa: E731
        lines.append(f"| {os.path.basename(os.path.normpath(d))} | {meta['fne']} | {meta['augment']} | "
                     f"{float(last['epoch']):.0f} | {cell('loss')} | {cell('val/loss')} | "
                     f"{cell('val/feature_match_recall')} | {cell('val/hit_ratio')} | {cell('val/sim_gap')} |")
    return "\n".join(lines)
