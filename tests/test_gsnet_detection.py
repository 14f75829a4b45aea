"""DetectionFrames / collate_detection on a tiny generated + labelled scene (built once per
session): the batch layout of the detector contract, the sampled points' labels against the
label files read back independently, GSNet's augmentation applied consistently to points and
poses, frame budgets, epochs, missing labels, and one training step of the detector on it."""
import os
import shutil

import numpy as np
import pytest
import torch

from pcgrasp.data.graspnet import GraspNetScenes
from pcgrasp.data.synthetic.scenes import generate_scenes
from pcgrasp.labels.detection import DetectionFrames, collate_detection
from pcgrasp.labels.grasp_labels import write_object_labels
from pcgrasp.labels.scene_labels import (collision_label_path, graspness_path, write_scene_collision_labels,
                                         write_scene_graspness)
from test_gsnet import one_thread  # noqa: F401  (autouse: one torch thread)

pytestmark = pytest.mark.pipeline
VIEWS = [0, 60, 120, 180, 240, 290]
NP = 600


@pytest.fixture(scope="session")
def labelled_root(tmp_path_factory):
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    root = str(tmp_path_factory.mktemp("detection") / "gn")
    generate_scenes(root, scenes="0", seed=3, views=2, width=96, height=54, objects_per_scene=(2, 2), progress=False)
    for o in GraspNetScenes(root, split="all", num_points=None, scene_ids=[0]).object_ids(0):
        write_object_labels(root, o, num_points=8, views=VIEWS)
    write_scene_collision_labels(root, 0)
    write_scene_graspness(root, 0)
    return root


def test_batch_layout(labelled_root):
    ds = DetectionFrames(labelled_root, num_points=NP, min_object_points=1)
    assert len(ds) == 2
    b = collate_detection([ds[0], ds[1]])
    assert b["point_clouds"].shape == (2, NP, 3) and b["point_clouds"].dtype == torch.float32
    assert b["objectness_label"].shape == (2, NP) and b["objectness_label"].dtype == torch.int64
    assert set(b["objectness_label"].unique().tolist()) <= {0, 1}
    assert b["graspness_label"].shape == (2, NP) and b["graspness_label"].dtype == torch.float32
    assert b["camera_pose"].shape == (2, 4, 4) and b["camera_pose"].dtype == torch.float64
    assert b["scene_id"].tolist() == [0, 0] and b["ann_id"].tolist() == [0, 1]
    for i in range(2):
        n = len(b["object_poses_list"][i])
        assert n >= 1 and b["object_poses_list"][i].shape == (n, 3, 4)
        for k in ("grasp_points_list", "grasp_widths_list", "grasp_scores_list", "grasp_views_list"):
            assert len(b[k][i]) == n
        for p, w, s, v in zip(b["grasp_points_list"][i], b["grasp_widths_list"][i], b["grasp_scores_list"][i],
                              b["grasp_views_list"][i]):
            assert p.shape[1] == 3 and w.shape == s.shape == (len(p), len(VIEWS), 12, 4)
            assert v.tolist() == VIEWS and (s >= 0).all()
    with pytest.raises(ValueError, match="frames"):
        collate_detection([])


def test_sampled_labels_equal_the_label_files(labelled_root):
    """Each sampled point's graspness / objectness is that of the same pixel in the files, and
    each object's scores are mu where 0 < mu and no self / scene collision, else 0."""
    ds = DetectionFrames(labelled_root, num_points=NP, min_object_points=1)
    scenes = GraspNetScenes(labelled_root, split="all", num_points=None, scene_ids=[0])
    ids = scenes.object_ids(0)
    for i in range(len(ds)):
        item = ds[i]
        full = scenes.frame(0, i)
        g = np.load(graspness_path(labelled_root, 0, "realsense", i))[:, 0]
        key = {tuple(p): j for j, p in enumerate(full["points"].tolist())}
        rows = np.array([key[tuple(p)] for p in item["point_clouds"].tolist()])
        np.testing.assert_array_equal(item["graspness_label"], g[rows])
        np.testing.assert_array_equal(item["objectness_label"], (full["labels"][rows] > 0).astype(np.int64))
        coll = np.load(collision_label_path(labelled_root, 0))
        pose_of = {int(o): p for o, p in zip(full["object_ids"], full["object_poses"])}
        for pose, pts, sc in zip(item["object_poses_list"], item["grasp_points_list"], item["grasp_scores_list"]):
            o = [o for o in ids if np.allclose(pose_of[o][:3], pose)][0]
            with np.load(os.path.join(labelled_root, "grasp_label", f"{o:03d}_labels.npz")) as f:
                lp, raw, self_coll = f["points"], f["scores"], f["collision"]
            scene_coll = coll[f"arr_{ids.index(o)}"]
            r = np.array([int(np.flatnonzero((lp == p).all(1))[0]) for p in pts])
            assert len(set(r.tolist())) == len(r) == min(max(len(lp) // 4, 300), len(lp))
            want = np.where((raw[r] > 0) & ~self_coll[r] & ~scene_coll[r], raw[r], 0)
            np.testing.assert_array_equal(sc, want)


def test_augmentation_moves_points_and_poses_together(labelled_root):
    plain = DetectionFrames(labelled_root, num_points=NP, min_object_points=1)
    aug = DetectionFrames(labelled_root, num_points=NP, min_object_points=1, augment=True)
    for i in range(2):
        a, b = plain[i], aug[i]
        X, Y = a["point_clouds"].astype(np.float64), b["point_clouds"].astype(np.float64)
        T = np.linalg.lstsq(X, Y, rcond=None)[0].T                  # Y = X T^T
        np.testing.assert_allclose(T @ T.T, np.eye(3), atol=1e-4)
        np.testing.assert_allclose(Y, X @ T.T, atol=1e-5)
        assert abs(T[0, 1]) < 1e-4 and abs(T[0, 2]) < 1e-4         # GSNet: flip x, rotate about x
        np.testing.assert_allclose(b["object_poses_list"], T @ a["object_poses_list"], atol=1e-5)
        for k in ("grasp_points_list", "grasp_scores_list"):
            for u, v in zip(a[k], b[k]):
                np.testing.assert_array_equal(u, v)


def test_frames_per_scene_epochs_and_errors(labelled_root, tmp_path):
    ds = DetectionFrames(labelled_root, num_points=NP, frames_per_scene=1)
    assert ds.frames == [(0, 0)]
    a = ds[0]["point_clouds"]
    np.testing.assert_array_equal(a, ds[0]["point_clouds"])          # reproducible
    ds.set_epoch(1)
    assert not np.array_equal(a, ds[0]["point_clouds"])               # another epoch, another sample
    with pytest.raises(IndexError):
        ds[1]
    bare = DetectionFrames(labelled_root, num_points=NP, min_object_points=NP + 1)[0]   # no object has that many
    assert bare["object_poses_list"].shape == (0, 3, 4) and bare["grasp_points_list"] == []
    assert collate_detection([bare])["object_poses_list"][0].shape == (0, 3, 4)
    with pytest.raises(ValueError, match="num_points"):
        DetectionFrames(labelled_root, num_points=0)
    with pytest.raises(ValueError, match="frames_per_scene"):
        DetectionFrames(labelled_root, frames_per_scene=0)
    root = str(tmp_path / "gn")
    shutil.copytree(labelled_root, root)
    os.remove(graspness_path(root, 0, "realsense", 1))
    with pytest.raises(FileNotFoundError, match="0001.npy.*pcgrasp labels"):
        DetectionFrames(root, num_points=NP)
    assert len(DetectionFrames(root, num_points=NP, frames_per_scene=1)) == 1
    os.remove(collision_label_path(root, 0))
    with pytest.raises(FileNotFoundError, match="collision_labels.npz.*pcgrasp labels"):
        DetectionFrames(root, num_points=NP, frames_per_scene=1)


def test_a_training_step_on_the_dataset(labelled_root):
    from pcgrasp.models.gsnet import get_loss
    from pcgrasp.models import GraspNet

    ds = DetectionFrames(labelled_root, num_points=NP, min_object_points=1)
    batch = collate_detection([ds[0], ds[1]])
    torch.manual_seed(0)
    model = GraspNet(seed_feat_dim=16, num_seed=64, planes=(8,) * 8).train()
    loss, ep = get_loss(model(batch))
    assert torch.isfinite(loss)
    assert (ep["batch_grasp_score"] > 0).any() and (ep["batch_grasp_view_graspness"] > 0).any()
    loss.backward()
