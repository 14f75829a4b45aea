"""The GSNet-style grasp detector on top of the training engine: fine-tuning
from scratch or from a GraspContrast ``backbone.pt`` with a frame budget,
inference (decode -> model-free collision filter -> grasp NMS -> graspnetAPI
dumps) and AP per test split, and the label-efficiency sweep (the
GraspContrast paper's Tables I/II).

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

Inference per test frame (GSNet's ``test.py``): ``data.num_points`` points
sampled as in training (seeded per frame), the model in eval mode (argmax
view), ``pred_decode`` ([num_seed, 17] per cloud) -> GSNet's model-free
collision detector against the frame's whole workspace cloud voxel-downsampled
at ``eval.collision_voxel`` (0.01 m, centroid per voxel), ``eval.collision_thresh``
(0.01) and an approach distance of 0.05 m -> ``eval.grasp_nms`` (3 cm, 30
degrees) -> ``<dump>/scene_<s:04d>/<camera>/<ann:04d>.npy`` ([N, 17],
graspnetAPI's layout) -> ``eval.evaluate_scenes`` (AP, AP0.8, AP0.4 per split).
"""
import contextlib
import copy
import json
import math
import os

import numpy as np
import torch

from ..data.graspnet import GraspNetScenes, sample_indices
from ..data.synthetic.scenes import parse_scene_ids
from ..models.gsnet import get_loss
from ..metrics import mean_sd
from .engine import fit, pick_device, rank_zero_first, seed_everything, world

BUDGETS = (1, 16, 256)
INITS = ("scratch", "graspcontrast", "graspcontrast_nofne")
SPLIT_RANGES = {"test_seen": range(100, 130), "test_similar": range(130, 160), "test_novel": range(160, 190)}
METRICS = ("AP", "AP0.8", "AP0.4")


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
    ``pretrain``): the detector's scenes and backbone widths (seed_feat_dim,
    planes, voxel size), FNE on or off."""
    from ..models.minkunet import GSNET_PLANES

    p, d, m = copy.deepcopy(cfg.get("pretrain") or {}), cfg["data"], cfg["model"]
    for sec in ("loss", "train"):
        if not isinstance(p.get(sec), dict):
            raise ValueError(f"config needs pretrain.{sec} (the GraspContrast pretraining settings)")
    out = os.path.join(p["train"].get("out", os.path.join(cfg["train"]["out"], "pretrain")), "fne" if fne else "nofne")
    return {"seed": cfg.get("seed", 0), "device": cfg.get("device", "auto"), "fne": bool(fne),
            "augment": p.get("augment", True),
            "data": {"train_split": "train", "val_split": "test_seen", "val_pairs": 2, "num_points": d["num_points"],
                     **p.get("data", {}), "root": d["root"], "camera": d.get("camera", "realsense")},
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
        tmp = os.path.join(run_dir, "model.pt.tmp")
        torch.save({"model": model.state_dict(), "model_cfg": cfg["model"]}, tmp)
        os.replace(tmp, os.path.join(run_dir, "model.pt"))
    return run_dir


def load_detector(path, device="cpu"):
    """A ``GraspNet`` with the weights of a run's model.pt (or its folder), in eval mode."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist (pcgrasp train-detector writes it)")
    state = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "model_cfg" not in state:
        raise ValueError(f"{path} is not a train-detector model.pt (needs 'model' and 'model_cfg')")
    model = build_model(state["model_cfg"])
    model.load_state_dict(state["model"], strict=True)
    return model.to(device).eval()


# ---------------------------------------------------------------- inference
def voxel_downsample(points, voxel_size):
    """The centroid of the points in every occupied voxel of ``voxel_size``
    (as Open3D's ``voxel_down_sample``, which GSNet's collision detector uses),
    ordered by voxel."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {P.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size!r}")
    if len(P) == 0:
        return P
    _, inv, counts = np.unique(np.floor(P / voxel_size).astype(np.int64), axis=0, return_inverse=True,
                               return_counts=True)
    inv = inv.reshape(-1)
    out = np.zeros((len(counts), 3))
    np.add.at(out, inv, P)
    return out / counts[:, None]


def collision_free(grasps, cloud, voxel_size=0.01, collision_thresh=0.01, approach_dist=0.05, device=None):
    """[N] bool: the grasps (an [N, 17] GraspGroup array) GSNet's test-time
    ``ModelFreeCollisionDetector`` keeps against the scene ``cloud`` [P, 3]
    (same frame) voxel-downsampled at ``voxel_size``; ``collision_thresh`` 0
    counts any point (``geometry.collision.model_free_collision``)."""
    from ..geometry import check_grasp_array, model_free_collision

    g = check_grasp_array(grasps)
    if len(g) == 0:
        return np.zeros(0, bool)
    scene = voxel_downsample(cloud, voxel_size)
    hit = model_free_collision(scene, g[:, 13:16], g[:, 4:13].reshape(-1, 3, 3), g[:, 1], g[:, 3],
                               heights=0.02, approach_dist=approach_dist, voxel_size=voxel_size,
                               collision_thresh=collision_thresh, device=device)
    return ~hit


def postprocess(grasps, cloud, collision_voxel=0.01, collision_thresh=0.01, nms=True, device=None):
    """Decoded grasps [N, 17] -> those without collision in ``cloud`` (when
    ``collision_thresh`` is not None), then grasp NMS (best first)."""
    from ..eval.grasp_ap import grasp_nms
    from ..geometry import check_grasp_array

    g = check_grasp_array(grasps)
    if collision_thresh is not None:
        g = g[collision_free(g, cloud, collision_voxel, collision_thresh, device=device)]
    if nms and len(g):
        g = g[grasp_nms(g)]
    return g


def _anns(cfg, n):
    a = cfg["eval"].get("anns")
    if a is None:
        return list(range(n))
    if isinstance(a, int):
        return list(range(min(a, n)))
    bad = [x for x in a if x >= n]
    if bad:
        raise ValueError(f"eval.anns {bad} are not annotations of the scenes (0-{n - 1})")
    return list(a)


@torch.no_grad()
def dump_grasps(model, cfg, scene_ids, dump_dir, device, progress=False, seed=0):
    """Runs the detector on the frames of ``scene_ids`` (``eval.anns``) and
    writes graspnetAPI dumps; returns the annotation ids."""
    from tqdm import tqdm

    from ..models.gsnet import pred_decode

    d, e = cfg["data"], cfg["eval"]
    camera = d.get("camera", "realsense")
    ds = GraspNetScenes(d["root"], "all", camera, num_points=None, scene_ids=scene_ids)
    anns = _anns(cfg, min(len(ds.camera_poses(s)) for s in ds.scene_ids))
    frames = [(s, a) for s in ds.scene_ids for a in anns]
    model.eval()
    bs = e.get("batch_size", 1)
    for i in tqdm(range(0, len(frames), bs), desc="detect", disable=not progress, leave=False):
        chunk = frames[i:i + bs]
        raw = [ds.frame(s, a) for s, a in chunk]   # every workspace point: the collision filter's scene
        # the network's input: num_points of them, sampled as GraspNetScenes.frame(num_points=...) does
        pts = []
        for (s, a), f in zip(chunk, raw):
            if len(f["points"]) == 0:
                raise ValueError(f"scene {s} ann {a}: no valid depth pixel to sample from")
            rng = np.random.default_rng([seed, s, a])
            pts.append(f["points"][sample_indices(len(f["points"]), d["num_points"], rng)])
        ep = {"point_clouds": torch.as_tensor(np.stack(pts), dtype=torch.float32, device=device)}
        preds = pred_decode(model(ep))
        for (s, a), f, g in zip(chunk, raw, preds):
            g = postprocess(g.cpu().numpy().astype(np.float64), f["points"], e.get("collision_voxel", 0.01),
                            e.get("collision_thresh", 0.01), device=e.get("collision_device"))
            path = os.path.join(dump_dir, f"scene_{s:04d}", camera, f"{a:04d}.npy")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path[:-4] + ".tmp.npy"
            np.save(tmp, g.astype(np.float32))
            os.replace(tmp, path)
    return anns


def evaluate_detector(cfg, checkpoint, scenes=None, dump_dir=None, progress=False, log=print):
    """AP, AP0.8, AP0.4 per test split (and per scene) of a trained detector
    on ``scenes`` (default ``data.test_scenes``): dumps the grasps under
    ``dump_dir`` (default ``<run>/dump``) and scores them with
    ``eval.evaluate_scenes``. Writes ``<run>/metrics.json`` when evaluating
    the default scenes."""
    from ..eval.grasp_ap import evaluate_scenes

    check_config(cfg)
    set_threads(cfg)
    run_dir = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    device = pick_device(cfg.get("device", "auto"))
    model = load_detector(checkpoint, device)
    ids = parse_scene_ids(scenes if scenes is not None else cfg["data"]["test_scenes"])
    dump_dir = dump_dir or os.path.join(run_dir, "dump")
    anns = dump_grasps(model, cfg, ids, dump_dir, device, progress, seed=cfg["eval"].get("seed", 0))
    r = evaluate_scenes(cfg["data"]["root"], dump_dir, ids, cfg["data"].get("camera", "realsense"), anns=anns,
                        progress=progress, device=cfg["eval"].get("collision_device"))
    out = {"splits": {k: v for k, v in r["splits"].items() if k in SPLIT_RANGES or len(r["splits"]) == 1},
           "scenes": {str(s): {k: v[k] for k in METRICS} for s, v in r["scenes"].items()},
           "anns": anns, "grasps_per_frame": _grasps_per_frame(dump_dir, ids, cfg, anns)}
    if scenes is None:
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(out, f, indent=1)
    return out


def _grasps_per_frame(dump_dir, ids, cfg, anns):
    camera = cfg["data"].get("camera", "realsense")
    n = [len(np.load(os.path.join(dump_dir, f"scene_{s:04d}", camera, f"{a:04d}.npy"))) for s in ids for a in anns]
    return float(np.mean(n)) if n else 0.0


# ---------------------------------------------------------------- sweep
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
    out = s.get("out", os.path.join(cfg["train"]["out"], "sweep"))
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
