"""The detector's training module (pcgrasp.train.detector): frame budgets,
config errors, and (pipeline) a tiny end-to-end run: the loss falls, the
detector finds grasps with non-zero AP on its own training scene, resume is
bit-exact, the GraspContrast backbone loads, and 2 gloo DDP processes average
the single-process gradients. Inference: tests/test_detector_eval.py; the
sweep: tests/test_detector_sweep.py."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from conftest import deviation, end_process_group, free_port, learning_seed
from pcgrasp.train import detector as D
from pcgrasp.train import detector_eval as E

SMALL_PLANES = [8, 8, 16, 16, 16, 16, 16, 16]


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
    r = E.evaluate_detector(cfg, run, scenes="0", dump_dir=str(tmp_path / "dump"), progress=False)
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
    end_process_group()


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
