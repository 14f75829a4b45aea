"""The GSNet-style grasp detector on top of the training engine: config
checks, the fine-tuning data (frame budgets), the model, the GraspContrast
``backbone.pt`` hand-off and fine-tuning (``train_detector``). Inference and AP
are in ``detector_eval``, the label-efficiency sweep (the GraspContrast
paper's Tables I/II) and the untrained reference in ``detector_sweep``.

Frame budgets. The paper fine-tunes on 1, 16 or 256 of the 256 frames of each
GraspNet-1B training scene. A dataset with V views per scene maps a budget k
of 256 to ``round(V ** (log k / log 256))`` frames per scene (the same
fractions on a log scale: V = 256 gives 1 / 16 / 256, V = 16 gives 1 / 4 / 16,
V = 8 gives 1 / 3 / 8), unless the config lists them (``data.frames_map``,
e.g. ``{1: 1, 16: 2, 256: 8}``). ``DetectionFrames(frames_per_scene=k)`` keeps
the first k annotations of every training scene. Every budget trains for the
same number of optimiser steps and epochs: an epoch is always as long as the
full budget's (``len(scenes) x V`` frames); smaller budgets cycle through
their frames (``CycledFrames``), so only the number of distinct labelled
frames differs between budgets, not the schedule (Adam, lr x 0.95 per epoch).
"""
import contextlib
import copy
import json
import math
import os

import numpy as np
import torch

from ..data.graspnet import GraspNetScenes
from ..data.synthetic.scenes import parse_scene_ids
from ..models.gsnet import get_loss
from .engine import fit, pick_device, rank_zero_first, read_checkpoint, seed_everything, world

BUDGETS = (1, 16, 256)
INITS = ("scratch", "graspcontrast", "graspcontrast_nofne")


# ---------------------------------------------------------------- config
def frames_per_scene(frames, views, frames_map=None):
    """Frames per training scene for the paper's budget ``frames`` of 256
    (see the module docstring); ``views``: annotations per scene."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 1 <= frames <= 256:
        raise ValueError(f"frames must be an integer budget in [1, 256] (of 256 frames per scene), got {frames!r}")
    if not (isinstance(views, (int, np.integer)) and views >= 1):
        raise ValueError(f"views must be an integer >= 1, got {views!r}")
    if frames_map:
        fm = {int(k): int(v) for k, v in frames_map.items()}
        if int(frames) not in fm:
            raise ValueError(f"frames: {frames} is not a budget of data.frames_map ({sorted(fm)})")
        k = fm[int(frames)]
        if not 1 <= k <= views:
            raise ValueError(f"data.frames_map[{frames}] = {k} must be in [1, {views}] (views per scene)")
        return k
    return int(min(views, max(1, round(views ** (math.log(frames) / math.log(256))))))


def check_config(cfg):
    """Clear errors for a config missing a section or holding a bad value."""
    for sec in ("data", "model", "train", "eval"):
        if not isinstance(cfg.get(sec), dict):
            raise ValueError(f"config needs a '{sec}' section")
    d, t = cfg["data"], cfg["train"]
    for key in ("root", "train_scenes", "test_scenes"):
        if key not in d:
            raise ValueError(f"config needs data.{key}")
    if "out" not in t:
        raise ValueError("config needs train.out")

    def integer(sec, key, lo=1):
        v = cfg[sec].get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{sec}.{key} must be an integer >= {lo}, got {v!r}")

    integer("data", "num_points")
    integer("train", "epochs")
    integer("train", "batch_size")
    lr = t.get("lr", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"train.lr must be a number > 0, got {lr!r}")
    parse_scene_ids(d["train_scenes"])
    test = parse_scene_ids(d["test_scenes"])
    if any(s < 100 for s in test):
        raise ValueError(f"data.test_scenes must be test scenes (100-189), got {d['test_scenes']!r}")
    anns = cfg["eval"].get("anns")
    if anns is not None and not (isinstance(anns, int) and anns >= 1) and not (
            isinstance(anns, list) and anns and all(isinstance(a, int) and a >= 0 for a in anns)):
        raise ValueError(f"eval.anns must be null (all), an integer >= 1 (the first n) or a list of ids, got {anns!r}")


def _views(cfg):
    """Annotations per training scene (read from the first training scene)."""
    scenes = GraspNetScenes(cfg["data"]["root"], "train", cfg["data"].get("camera", "realsense"), num_points=None,
                            scene_ids=parse_scene_ids(cfg["data"]["train_scenes"]))
    return len(scenes.camera_poses(scenes.scene_ids[0]))


def set_threads(cfg):
    """``threads`` (config): torch's CPU threads for this process (null: torch's
    default). One thread is much faster on a small, shared CPU (the sparse
    BatchNorm and convolutions at the demo size spend most of their time in
    OpenMP waits with two)."""
    n = cfg.get("threads")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be null or an integer >= 1, got {n!r}")
        torch.set_num_threads(n)


# ---------------------------------------------------------------- data
def _scenes_present(root, camera, ids):
    return all(os.path.isdir(os.path.join(root, "scenes", f"scene_{s:04d}", camera)) for s in ids)


def ensure_data(cfg, progress=True, log=print):
    """Generates the synthetic scenes (``data.generate``, when some are
    missing) and the labels of the training scenes (``data.labels``: grasp /
    collision labels, graspness; finished files are skipped). A real
    GraspNet-1B root (no ``data.generate``) is used as it is."""
    d = cfg["data"]
    camera = d.get("camera", "realsense")
    train, test = parse_scene_ids(d["train_scenes"]), parse_scene_ids(d["test_scenes"])
    if d.get("generate") is not None and not (os.path.exists(os.path.join(d["root"], "synthetic.json"))
                                              and _scenes_present(d["root"], camera, train + test)):
        from ..data.synthetic.scenes import generate_scenes

        g = dict(d["generate"])
        if "objects_per_scene" in g:
            g["objects_per_scene"] = tuple(g["objects_per_scene"])
        g["scenes"] = ",".join(str(s) for s in train + test)
        log(f"[detector] generating scenes {g['scenes']} under {d['root']}")
        generate_scenes(d["root"], seed=cfg.get("seed", 0), progress=progress, **g)
    lab = d.get("labels")
    if lab is not None:
        from ..labels.scene_labels import graspness_path

        views = len(GraspNetScenes(d["root"], "all", camera, num_points=None, scene_ids=train).camera_poses(train[0]))
        if all(os.path.exists(graspness_path(d["root"], s, camera, a)) for s in train for a in range(views)):
            return
        from ..labels.pipeline import generate_labels

        step = lab.get("view_step", 1)
        log(f"[detector] labels of training scenes {d['train_scenes']} ({lab.get('points', 300)} points per object, "
            f"every {step}. view)")
        s = generate_labels(d["root"], train, camera=camera, num_points=lab.get("points", 300),
                            views=None if step == 1 else list(range(0, 300, step)), engine=lab.get("engine", "serial"),
                            device=lab.get("device"), progress=progress, log=log)
        failed = [(name, st["failed"]) for name, st in s["stages"].items() if st["failed"]]
        if failed or len(s["stages"]) < 3:
            raise RuntimeError(f"labels failed: {failed}")


class CycledFrames(torch.utils.data.Dataset):
    """``dataset`` repeated cyclically to ``length`` items (index i -> i mod
    len(dataset)): every frame budget gets epochs of the same length."""

    def __init__(self, dataset, length):
        if len(dataset) == 0:
            raise ValueError("CycledFrames: the dataset is empty")
        self.dataset, self.length, self.epoch = dataset, int(length), 0
        self.cycles = -(-self.length // len(dataset))

    def set_epoch(self, epoch):
        """Epoch e's pass c over the frames draws the dataset's random stream
        e * cycles + c (when the dataset has ``set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} items")
        n = len(self.dataset)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch * self.cycles + i // n)
        return self.dataset[i % n]


def train_frames(cfg, frames, seed=0):
    """The fine-tuning dataset of budget ``frames`` (of 256): ``DetectionFrames``
    of the training scenes with the mapped frames per scene, cycled to the full
    budget's length."""
    from ..labels.detection import DetectionFrames

    d = cfg["data"]
    views = _views(cfg)
    k = frames_per_scene(frames, views, d.get("frames_map"))
    kw = dict(split="train", camera=d.get("camera", "realsense"), num_points=d["num_points"],
              scene_ids=parse_scene_ids(d["train_scenes"]), seed=seed, augment=d.get("augment", False))
    ds = DetectionFrames(d["root"], frames_per_scene=k, **kw)
    return CycledFrames(ds, len(kw["scene_ids"]) * views), k


# ---------------------------------------------------------------- model
MODEL_KEYS = ("cylinder_radius", "seed_feat_dim", "num_view", "num_angle", "num_depth", "num_seed", "voxel_size",
              "graspness_threshold", "hmin", "hmax", "nsample", "planes")


def build_model(model_cfg):
    from ..models.gsnet import GraspNet

    bad = sorted(set(model_cfg) - set(MODEL_KEYS))
    if bad:
        raise ValueError(f"model: unknown keys {bad} (known: {', '.join(MODEL_KEYS)})")
    return GraspNet(**{k: (tuple(v) if k == "planes" and v is not None else v) for k, v in model_cfg.items()})


def pretrain_config(cfg, fne):
    """The ``contrast-pretrain`` config of this detector config (section
    ``pretrain``): the detector's scenes (or ``pretrain.data.root``: another,
    unlabelled GraspNet-1B-layout root, written from ``pretrain.data.generate``
    when missing) and backbone widths (seed_feat_dim, planes, voxel size), FNE
    on or off."""
    from ..models.minkunet import GSNET_PLANES

    p, d, m = copy.deepcopy(cfg.get("pretrain") or {}), cfg["data"], cfg["model"]
    for sec in ("loss", "train"):
        if not isinstance(p.get(sec), dict):
            raise ValueError(f"config needs pretrain.{sec} (the GraspContrast pretraining settings)")
    out = os.path.join(p["train"].get("out", os.path.join(cfg["train"]["out"], "pretrain")), "fne" if fne else "nofne")
    return {"seed": cfg.get("seed", 0), "device": cfg.get("device", "auto"), "fne": bool(fne),
            "augment": p.get("augment", True),
            "data": {"train_split": "train", "val_split": "test_seen", "val_pairs": 2, "num_points": d["num_points"],
                     "camera": d.get("camera", "realsense"), **p.get("data", {}),
                     "root": p.get("data", {}).get("root") or d["root"]},
            "model": {"out_channels": m.get("seed_feat_dim", 512), "planes": list(m.get("planes") or GSNET_PLANES),
                      "voxel_size": m.get("voxel_size", 0.005), "projection": None},
            "loss": p["loss"], "train": {**p["train"], "out": out}}


def backbone_path(cfg, init):
    """Where the pretraining of ``init`` writes its backbone.pt."""
    if init not in ("graspcontrast", "graspcontrast_nofne"):
        raise ValueError(f"init {init!r} has no pretrained backbone")
    return os.path.join(pretrain_config(cfg, init == "graspcontrast")["train"]["out"], "backbone.pt")


def ensure_backbone(cfg, init, progress=True, log=print):
    """The backbone.pt of ``init`` (GraspContrast with or without FNE),
    pretrained with the contrast pipeline when missing."""
    path = backbone_path(cfg, init)
    if not os.path.exists(path):
        from . import contrast

        c = pretrain_config(cfg, init == "graspcontrast")
        contrast.check_config(c)
        log(f"[detector] GraspContrast pretraining ({'with' if c['fne'] else 'without'} FNE) -> {path}")
        contrast.pretrain(c, progress=progress)
    return path


def detection_loss(net, batch):
    """The engine's loss_fn: the model (label assignment in training mode) and
    GSNet's weighted loss."""
    loss, _ = get_loss(net(batch))
    return loss


def run_name(init, frames, seed):
    return f"{init}_f{int(frames):03d}_s{int(seed)}"


# ---------------------------------------------------------------- training
def train_detector(cfg, init="scratch", frames=256, seed=0, backbone=None, resume=False, progress=True, log=print):
    """Fine-tunes a detector; returns its run folder (``<train.out>/<init>_f<frames>_s<seed>``)
    holding log.csv, tb/, last.pt, model.pt and settings.json. A finished run
    (model.pt present) is not retrained unless ``resume``."""
    from ..labels.detection import collate_detection
    from ..models.gsnet import load_backbone_checkpoint

    check_config(cfg)
    set_threads(cfg)
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    t = cfg["train"]
    run_dir = os.path.join(t["out"], run_name(init, frames, seed))
    if os.path.exists(os.path.join(run_dir, "model.pt")) and not resume:
        log(f"[detector] {run_dir} is finished (model.pt); skipped")
        return run_dir
    if not resume:  # an interrupted run started again from scratch: a fresh log
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(run_dir, "log.csv"))
    device = pick_device(cfg.get("device", "auto"))  # under torchrun: this rank's GPU (LOCAL_RANK)
    with rank_zero_first(device):  # under torchrun rank 0 generates / labels missing data, the others wait
        ensure_data(cfg, progress, log)
    if init != "scratch" and backbone is None:  # a missing backbone is pretrained by all ranks (DDP)
        backbone = ensure_backbone(cfg, init, progress, log)
    seed_everything(seed)
    ds, k = train_frames(cfg, frames, seed)
    seed_everything(seed)  # model init independent of data loading
    model = build_model(cfg["model"])
    if init != "scratch":
        if not os.path.exists(backbone):
            raise FileNotFoundError(f"backbone {backbone} does not exist (pcgrasp contrast-pretrain writes it)")
        load_backbone_checkpoint(model, backbone)
    stage = {"schedule": "exponential", "lr_decay": 0.95, **{k_: v for k_, v in t.items() if k_ != "out"}}
    fit(model, detection_loss, ds, stage, run_dir, [{"params": model.parameters(), "lr": t.get("lr", 1e-3)}], seed,
        device, resume, desc=run_name(init, frames, seed), progress=progress, collate_fn=collate_detection,
        make_optimizer=lambda groups: torch.optim.Adam(groups, weight_decay=t.get("weight_decay", 0)))
    if world()[0] == 0:
        settings = {"init": init, "frames": int(frames), "frames_per_scene": k, "seed": seed,
                    "backbone": backbone, "model": cfg["model"], "data": cfg["data"], "train": t,
                    "epoch_frames": len(ds), "distinct_frames": len(ds.dataset)}
        with open(os.path.join(run_dir, "settings.json"), "w") as f:
            json.dump(settings, f, indent=1)
        save_detector(model, cfg["model"], run_dir)
    return run_dir


def save_detector(model, model_cfg, run_dir):
    """Writes ``<run_dir>/model.pt`` (the weights and ``model_cfg``, what
    ``load_detector`` reads) atomically; returns its path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "model.pt")
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "model_cfg": model_cfg}, tmp)
    os.replace(tmp, path)
    return path


def load_detector(path, device="cpu"):
    """A ``GraspNet`` with the weights of a run's model.pt (or its folder), in eval mode."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist (pcgrasp train-detector writes it)")
    state = read_checkpoint(path, ("model", "model_cfg"), "train-detector model.pt", device)
    model = build_model(state["model_cfg"])
    model.load_state_dict(state["model"], strict=True)
    return model.to(device).eval()
