"""The detector pipeline (pcgrasp.train.detector): frame budgets, the inference
post-processing (GSNet's model-free collision filter, grasp NMS) against
brute-force NumPy oracles on hand cases, the sweep tables against NumPy, and
(pipeline) a tiny end-to-end run: the loss falls, the detector finds grasps
with non-zero AP on its own training scene, resume is bit-exact, the
GraspContrast backbone loads, and 2 gloo DDP processes average the
single-process gradients."""
import csv
import json
import os
import re

import numpy as np
import pytest
import torch

from conftest import deviation, free_port, learning_seed
from pcgrasp.train import detector as D

SMALL_PLANES = [8, 8, 16, 16, 16, 16, 16, 16]


# ---------------------------------------------------------------- oracles
def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def grasp_row(score, t, R, width=0.06, depth=0.02):
    return np.concatenate([[score, width, 0.02, depth], np.asarray(R).reshape(9), t, [-1.0]])


def gsnet_collision_oracle(cloud, grasps, voxel_size, thresh, approach_dist=0.05, finger_width=0.01,
                           finger_length=0.06):
    """GSNet's ModelFreeCollisionDetector.detect, point by point (cloud already downsampled)."""
    out = []
    for g in grasps:
        w, h, d = g[1], g[2], g[3]
        R, t = g[4:13].reshape(3, 3), g[13:16]
        n = 0
        for p in cloud:
            x, y, z = R.T @ (p - t)
            if not -h / 2 < z < h / 2:
                continue
            inside_y = -(w / 2 + finger_width) < y < w / 2 + finger_width
            left = d - finger_length < x < d and -(w / 2 + finger_width) < y < -w / 2
            right = d - finger_length < x < d and w / 2 < y < w / 2 + finger_width
            bottom = inside_y and d - finger_length - finger_width < x <= d - finger_length
            back = d - finger_length - finger_width
            shift = inside_y and back - approach_dist < x <= back
            n += left or right or bottom or shift
        vol = (2 * h * finger_length * finger_width + h * (w + 2 * finger_width) * finger_width
               + h * (w + 2 * finger_width) * approach_dist) / voxel_size ** 3
        out.append(n / (vol + 1e-6) > thresh)
    return np.array(out, bool)


def voxel_oracle(points, size):
    cells = {}
    for p in points:
        cells.setdefault(tuple(np.floor(p / size).astype(int)), []).append(p)
    return np.array([np.mean(cells[k], 0) for k in sorted(cells)])


def nms_oracle(g, dt=0.03, dr=np.radians(30)):
    order = sorted(range(len(g)), key=lambda i: -g[i, 0])
    kept = []
    for i in order:
        ok = True
        for k in kept:
            if np.linalg.norm(g[i, 13:16] - g[k, 13:16]) < dt:
                Rk, Ri = g[k, 4:13].reshape(3, 3), g[i, 4:13].reshape(3, 3)
                if np.arccos(np.clip((np.trace(Rk.T @ Ri) - 1) / 2, -1, 1)) < dr:
                    ok = False
        if ok:
            kept.append(i)
    return kept


# ---------------------------------------------------------------- unit tests
def test_frame_budgets_map_onto_the_views():
    assert [D.frames_per_scene(k, 256) for k in D.BUDGETS] == [1, 16, 256]
    assert [D.frames_per_scene(k, 16) for k in D.BUDGETS] == [1, 4, 16]
    assert [D.frames_per_scene(k, 8) for k in D.BUDGETS] == [1, 3, 8]
    assert [D.frames_per_scene(k, 1) for k in D.BUDGETS] == [1, 1, 1]
    assert D.frames_per_scene(16, 8, {1: 1, "16": 2, 256: 8}) == 2
    for bad, match in [((0, 8), "frames"), ((300, 8), "frames"), ((True, 8), "frames"), ((16, 0), "views")]:
        with pytest.raises(ValueError, match=match):
            D.frames_per_scene(*bad)
    with pytest.raises(ValueError, match="frames_map"):
        D.frames_per_scene(4, 8, {1: 1})
    with pytest.raises(ValueError, match=r"frames_map\[16\]"):
        D.frames_per_scene(16, 8, {16: 9})


def test_cycled_frames_repeat_the_budget_and_advance_the_random_stream():
    class Frames:
        epoch = None

        def __len__(self):
            return 3

        def set_epoch(self, e):
            self.epoch = e

        def __getitem__(self, i):
            return (i, self.epoch)

    c = D.CycledFrames(Frames(), 8)
    assert len(c) == 8 and c.cycles == 3
    c.set_epoch(2)
    assert [c[i] for i in range(8)] == [(i % 3, 2 * 3 + i // 3) for i in range(8)]
    with pytest.raises(IndexError):
        c[8]
    with pytest.raises(ValueError, match="empty"):
        D.CycledFrames([], 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_voxel_downsample_is_the_centroid_per_voxel(dtype):
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(-0.05, 0.05, (300, 3)), np.zeros((5, 3)),  # duplicates at a corner
                        np.round(rng.uniform(-0.05, 0.05, (40, 3)), 2)]).astype(dtype)  # on voxel faces
    got = D.voxel_downsample(p, 0.01)
    np.testing.assert_allclose(got, voxel_oracle(p.astype(np.float64), 0.01), rtol=0, atol=1e-12)
    assert D.voxel_downsample(np.zeros((0, 3)), 0.01).shape == (0, 3)
    with pytest.raises(ValueError, match="points"):
        D.voxel_downsample(np.zeros((4, 2)), 0.01)
    with pytest.raises(ValueError, match="voxel_size"):
        D.voxel_downsample(p, 0.0)


def test_collision_filter_hand_cases_and_random_against_gsnet_geometry():
    R = rot_z(0.3)  # approach x, closing y, in the camera frame rotated about z
    t = np.array([0.1, -0.05, 0.6])
    to_cam = lambda q: (R @ np.asarray(q, float).T).T + t  # noqa: E731 grasp frame -> camera
    free = grasp_row(0.9, t, R)
    # grasp frame points: between the fingers (never a collision), in the left finger, behind the bottom
    between = to_cam([[0.0, 0.0, 0.0], [0.01, 0.01, 0.0]])
    finger = to_cam([[0.0, -0.035, 0.0], [-0.015, -0.035, 0.0], [-0.03, -0.035, 0.0]])  # 3 voxels
    behind = to_cam([[-0.06, 0.0, 0.0]])
    g = np.stack([free])
    assert D.collision_free(g, between, 0.01, 0.0).tolist() == [True]
    assert D.collision_free(g, finger[:1], 0.01, 0.0).tolist() == [False]        # any point at threshold 0
    assert D.collision_free(g, finger[:1], 0.01, 0.01).tolist() == [True]        # 1 / 164 voxels <= 0.01
    assert D.collision_free(g, finger, 0.01, 0.01).tolist() == [False]           # 3 / 164 > 0.01
    assert D.collision_free(g, behind, 0.01, 0.0).tolist() == [False]            # the approach region
    assert D.collision_free(np.zeros((0, 17)), finger, 0.01, 0.0).shape == (0,)
    # random grasps and clouds against the point-by-point oracle (after the same downsampling)
    rng = np.random.default_rng(1)
    cloud = rng.uniform(-0.15, 0.15, (150, 3)) + [0, 0, 0.6]
    rows = []
    for _ in range(40):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        rows.append(grasp_row(rng.random(), rng.uniform(-0.05, 0.05, 3) + [0, 0, 0.6], q, rng.uniform(0.01, 0.1),
                              rng.choice([0.01, 0.02, 0.03, 0.04])))
    g = np.stack(rows)
    kept = []
    for thresh in (0.0, 0.01, 0.015):
        ref = ~gsnet_collision_oracle(D.voxel_downsample(cloud, 0.01), g, 0.01, thresh)
        np.testing.assert_array_equal(D.collision_free(g, cloud, 0.01, thresh), ref)
        kept.append(ref.sum())
    assert 0 < kept[0] < kept[1] < kept[2] < len(g), kept   # the cases are not all alike


def test_postprocess_filters_then_keeps_the_nms_survivors_best_first():
    R = np.eye(3)
    base = np.array([0.0, 0.0, 0.6])
    g = np.stack([
        grasp_row(0.5, base, R),                       # suppressed by the next (closer than 3 cm, same rotation)
        grasp_row(0.8, base + [0.01, 0, 0], R),
        grasp_row(0.7, base + [0.01, 0, 0], rot_z(np.radians(45))),   # same place, 45 degrees: kept
        grasp_row(0.6, base + [0.05, 0, 0], R),        # 4 cm away: kept
        grasp_row(0.95, base + [0.3, 0, 0], R),        # collides with the cloud below
    ])
    cloud = (base + [0.3, 0, 0]) + np.array([[0.0, -0.035, 0.0], [-0.01, -0.035, 0.0], [-0.03, -0.035, 0.0]])
    out = D.postprocess(g, cloud, 0.01, 0.01)
    np.testing.assert_array_equal(out, g[[1, 2, 3]])
    keep = D.collision_free(g, cloud, 0.01, 0.01)
    np.testing.assert_array_equal(out, g[keep][nms_oracle(g[keep])])
    np.testing.assert_array_equal(D.postprocess(g, cloud, collision_thresh=None), g[nms_oracle(g)])
    # random: the same as the oracle NMS of the collision-free rows
    rng = np.random.default_rng(2)
    rows = [grasp_row(rng.random(), rng.uniform(-0.04, 0.04, 3) + base, rot_z(rng.uniform(0, np.pi)))
            for _ in range(60)]
    g = np.stack(rows)
    cloud = rng.uniform(-0.06, 0.06, (200, 3)) + base
    keep = D.collision_free(g, cloud, 0.01, 0.01)
    np.testing.assert_array_equal(D.postprocess(g, cloud), g[keep][nms_oracle(g[keep])])
    with pytest.raises(ValueError, match="17"):
        D.postprocess(np.zeros((3, 16)), cloud)


def _rows(rng, inits, budgets, seeds):
    return [{"init": i, "frames": b, "seed": s,
             "splits": {sp: {k: float(rng.uniform(0, 60)) for k in D.METRICS} for sp in D.SPLIT_RANGES}}
            for b in budgets for i in inits for s in seeds]


def test_sweep_tables_are_mean_and_sd_over_seeds():
    rng = np.random.default_rng(3)
    rows = _rows(rng, D.INITS, D.BUDGETS, [0, 1, 2])
    text = D.sweep_tables(rows, list(D.BUDGETS), list(D.INITS))
    assert "Table I" in text and "Table II" in text

    def parse(line):
        return [tuple(map(float, c.split(" ± "))) for c in line.strip("|").split("|") if "±" in c]

    sections = text.split("### ")
    t1 = [ln for ln in sections[1].splitlines() if ln.startswith("| 16/256")][0]
    t2 = [ln for ln in sections[2].splitlines() if ln.startswith("| 256/256")][0]
    full = [ln for ln in sections[3].splitlines() if ln.startswith("| 1/256 | GraspContrast w/o FNE |")][0]

    def ref(init, b, split, key="AP"):
        v = np.array([r["splits"][split][key] for r in rows if r["init"] == init and r["frames"] == b])
        return v.mean(), v.std(ddof=1)

    want1 = [ref(i, 16, s) for s in D.SPLIT_RANGES for i in ("scratch", "graspcontrast")]
    want2 = [ref(i, 256, s) for s in D.SPLIT_RANGES for i in ("graspcontrast", "graspcontrast_nofne")]
    want3 = [ref("graspcontrast_nofne", 1, s, k) for s in D.SPLIT_RANGES for k in D.METRICS]
    for got, want in ((parse(t1), want1), (parse(t2), want2), (parse(full), want3)):
        np.testing.assert_allclose(got, np.round(want, 2), atol=0.0051)
    assert "| 1/256 | GraspContrast w/o FNE | 3 |" in text
    # one seed: SD 0; a missing init: no Table II; a missing split column is left out
    one = _rows(rng, ["scratch", "graspcontrast"], [1], [0])
    for r in one:
        del r["splits"]["test_novel"]
    text = D.sweep_tables(one, [1], ["scratch", "graspcontrast"])
    assert "Table II" not in text and "novel" not in text
    assert re.search(r"\| 1/256 \| \d+\.\d\d ± 0\.00 \|", text)


def test_sweep_plot_writes_a_png(tmp_path):
    rows = _rows(np.random.default_rng(4), D.INITS, D.BUDGETS, [0, 1])
    D.sweep_plot(rows, list(D.BUDGETS), list(D.INITS), str(tmp_path / "p.png"))
    assert open(tmp_path / "p.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def tiny_cfg(root, out, **train):
    return {"seed": 0, "device": "cpu", "threads": 1,
            "data": {"root": root, "camera": "realsense", "train_scenes": "0", "test_scenes": "100",
                     "num_points": 1200, "augment": False,
                     "labels": {"points": 24, "view_step": 15, "engine": "serial"}},
            "model": {"seed_feat_dim": 16, "planes": SMALL_PLANES, "num_seed": 128, "voxel_size": 0.005},
            "train": {"epochs": 2, "batch_size": 2, "lr": 3e-3, "lr_decay": 0.95, "out": str(out), **train},
            "eval": {"anns": None, "batch_size": 2, "collision_voxel": 0.01, "collision_thresh": 0.01, "seed": 0},
            "pretrain": {"augment": False,
                         "data": {"num_points": 1200, "min_overlap": 0.2, "overlap_points": 2048,
                                  "max_pairs_per_scene": 3, "val_split": "test_seen", "val_pairs": 0},
                         "loss": {"tau": 0.07, "gamma": 0.02, "epsilon": 0.0075, "keypoints": 32},
                         "train": {"epochs": 1, "batch_size": 1, "lr": 1e-3, "out": str(out) + "_pretrain"}}}


def test_config_errors_name_the_key(tmp_path):
    good = tiny_cfg("r", tmp_path)
    D.check_config(good)
    for sec, key, bad, match in [("data", "num_points", 0, "data.num_points"),
                                 ("train", "epochs", 1.5, "train.epochs"), ("train", "lr", -1, "train.lr"),
                                 ("data", "test_scenes", "0-3", "data.test_scenes"),
                                 ("data", "train_scenes", "x", "scenes"), ("eval", "anns", "all", "eval.anns")]:
        cfg = json.loads(json.dumps(good))
        cfg[sec][key] = bad
        with pytest.raises(ValueError, match=match):
            D.check_config(cfg)
    with pytest.raises(ValueError, match="'eval' section"):
        D.check_config({k: v for k, v in good.items() if k != "eval"})
    with pytest.raises(ValueError, match="unknown keys"):
        D.build_model({"seed_feat_dim": 8, "width": 3})
    with pytest.raises(ValueError, match="threads"):
        D.set_threads({"threads": 0})
    with pytest.raises(ValueError, match="init"):
        D.train_detector(good, init="imagenet")
    with pytest.raises(ValueError, match="seed"):
        D.train_detector(good, seed=-1)


# ---------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def labelled_root(tmp_path_factory):
    """Two tiny scenes (train 0, test_seen 100), 2 views, the training scene labelled coarsely."""
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    from pcgrasp.data.synthetic.scenes import generate_scenes

    torch.set_num_threads(1)
    root = str(tmp_path_factory.mktemp("det_scenes"))
    generate_scenes(root, scenes="0,100", views=2, width=160, height=90, objects_per_scene=(3, 3), seed=3,
                    progress=False)
    D.ensure_data(tiny_cfg(root, "unused"), progress=False, log=lambda *a: None)
    return root


def _log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.pipeline
def test_tiny_run_learns_finds_grasps_and_resumes_exactly(labelled_root, tmp_path, learning_margin):
    cfg = tiny_cfg(labelled_root, tmp_path / "runs", epochs=40, lr=5e-3)
    run = D.train_detector(cfg, "scratch", 256, seed=learning_seed(), progress=False)
    log = _log(run)
    assert len(log) == 40
    learning_margin("last / first epoch loss", float(log[-1]["loss"]) / float(log[0]["loss"]), 0.5, above=False)
    np.testing.assert_allclose([float(r["lr"]) for r in log], [5e-3 * 0.95 ** (e + 1) for e in range(40)])
    settings = json.load(open(os.path.join(run, "settings.json")))
    assert settings["frames_per_scene"] == 2 and settings["epoch_frames"] == 2
    # inference on its own training scene: graspnetAPI dumps, and some grasps succeed
    r = D.evaluate_detector(cfg, run, scenes="0", dump_dir=str(tmp_path / "dump"), progress=False)
    g = np.load(tmp_path / "dump" / "scene_0000" / "realsense" / "0000.npy")
    assert g.ndim == 2 and g.shape[1] == 17 and len(g) > 0
    Rs = g[:, 4:13].reshape(-1, 3, 3).astype(np.float64)
    np.testing.assert_allclose(Rs @ Rs.transpose(0, 2, 1), np.broadcast_to(np.eye(3), Rs.shape), atol=1e-5)
    assert np.all(np.diff(g[:, 0]) <= 0) and np.all((g[:, 1] >= 0) & (g[:, 1] <= 0.1))
    # AP on its own training scene is NOT a learning check at this size: measured 0.0 / 1.50 / 0.0 / 1.97 over
    # seeds 0-3 on the AMD development machine (2026-12-05), and 0.0 on an Intel Xeon at seed 0, so "AP > 0"
    # was a knife edge tuned to one CPU's rounding. The loss ratio above (0.12-0.21 over seeds and settings,
    # threshold 0.5) is the learning check; here only that the AP pipeline ran and gave a valid number.
    ap = r["splits"]["all"]["AP"]
    learning_margin("AP on its training scene (reported, not a learning check)", ap, -1e-9)
    assert 0 <= ap <= 100
    # a finished run is skipped; budget 1/256 -> 1 distinct frame cycled to the full budget's 2 per epoch
    assert D.train_detector(cfg, "scratch", 256, seed=learning_seed(), progress=False, log=lambda *a: None) == run
    # resume: stop after 1 epoch, resume, and get the uninterrupted run's weights bit for bit
    ref = D.train_detector(tiny_cfg(labelled_root, tmp_path / "ref"), "scratch", 1, seed=1, progress=False)
    cut_cfg = tiny_cfg(labelled_root, tmp_path / "cut", stop_after_epochs=1)
    cut = D.train_detector(cut_cfg, "scratch", 1, seed=1, progress=False)
    assert len(_log(cut)) == 1
    cut_cfg["train"].pop("stop_after_epochs")
    D.train_detector(cut_cfg, "scratch", 1, seed=1, resume=True, progress=False)
    a = torch.load(os.path.join(cut, "model.pt"), weights_only=False)["model"]
    b = torch.load(os.path.join(ref, "model.pt"), weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.load(open(os.path.join(ref, "settings.json")))["distinct_frames"] == 1
    assert _log(cut) == _log(ref)


@pytest.mark.pipeline
def test_graspcontrast_init_loads_the_pretrained_backbone(labelled_root, tmp_path):
    cfg = tiny_cfg(labelled_root, tmp_path / "runs", epochs=1)
    path = D.ensure_backbone(cfg, "graspcontrast", progress=False, log=lambda *a: None)
    assert path == D.backbone_path(cfg, "graspcontrast") and os.path.exists(path)
    assert json.load(open(os.path.join(os.path.dirname(path), "backbone.json")))["fne"] is True
    pre = torch.load(path, weights_only=True)
    # 0 epochs of fine-tuning would be the backbone itself: after loading, the model's backbone is it
    model = D.build_model(cfg["model"])
    from pcgrasp.models.gsnet import load_backbone_checkpoint

    load_backbone_checkpoint(model, path)
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in pre.items())
    run = D.train_detector(cfg, "graspcontrast", 16, seed=0, progress=False, log=lambda *a: None)
    assert json.load(open(os.path.join(run, "settings.json")))["backbone"] == path
    bad = tiny_cfg(labelled_root, tmp_path / "bad")
    bad["model"]["seed_feat_dim"] = 8
    with pytest.raises(ValueError, match="shape"):
        D.train_detector(bad, "graspcontrast", 16, seed=0, backbone=path, progress=False, log=lambda *a: None)


def _ddp_worker(rank, root, out, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pcgrasp.labels.detection import collate_detection
    from pcgrasp.train.engine import world

    world(torch.device("cpu"))
    cfg = tiny_cfg(root, out, epochs=2, batch_size=1)
    ds, _ = D.train_frames(cfg, 256)
    model = _bn_eval_model(cfg)
    net = DDP(model)                        # kept alive: its reducer all-reduces in backward
    torch.manual_seed(100 + rank)           # the view sampling of this rank's frame
    D.detection_loss(net, _double(collate_detection([ds[rank]]))).backward()
    torch.save({n: p.grad for n, p in model.named_parameters()}, os.path.join(out, f"grad{rank}.pt"))
    D.train_detector(cfg, "scratch", 256, seed=0, progress=False, log=lambda *a: None)  # the pipeline under DDP
    torch.distributed.destroy_process_group()


def _double(batch):
    """A batch with its float32 tensors in float64 (nested lists kept)."""
    if torch.is_tensor(batch):
        return batch.double() if batch.dtype == torch.float32 else batch
    if isinstance(batch, dict):
        return {k: _double(v) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_double(v) for v in batch]
    return batch


def _bn_eval_model(cfg):
    torch.manual_seed(0)
    model = D.build_model(cfg["model"]).double().train()
    for m in model.modules():   # eval BN: per-frame statistics do not depend on the other frames of a batch
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


@pytest.mark.pipeline
def test_ddp_two_gloo_processes_average_the_single_process_gradients(labelled_root, tmp_path, learning_margin):
    from pcgrasp.labels.detection import collate_detection

    port = free_port()
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    torch.multiprocessing.spawn(_ddp_worker, args=(labelled_root, out, port), nprocs=2, join=True)
    cfg = tiny_cfg(labelled_root, out, epochs=2, batch_size=1)
    ds, _ = D.train_frames(cfg, 256)
    model = _bn_eval_model(cfg)
    losses = []
    for r in range(2):
        torch.manual_seed(100 + r)
        losses.append(D.detection_loss(model, _double(collate_detection([ds[r]]))))
    (0.5 * (losses[0] + losses[1])).backward()
    g0, g1 = torch.load(os.path.join(out, "grad0.pt")), torch.load(os.path.join(out, "grad1.pt"))
    params = dict(model.named_parameters())
    assert g0.keys() == g1.keys() == params.keys()
    learning_margin("gradients: max deviation / tolerance (rtol 1e-8, atol 1e-10)",
                    max(deviation(g[n], p.grad, 1e-8, 1e-10) for n, p in params.items() for g in (g0, g1)), 1,
                    above=False)
    # the DDP fine-tuning ran: 2 frames, 1 per rank and step -> 1 step per epoch; rank 0 wrote the model
    run = os.path.join(out, D.run_name("scratch", 256, 0))
    assert [int(r["step"]) for r in _log(run)] == [1, 2]
    D.load_detector(run)
