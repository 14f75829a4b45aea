"""Synthetic generator, loaders and split invariants."""
import json
import os

import numpy as np
import pytest
import torch

from pcgrasp.data import GraspDataset, ShapeNetPointClouds, generate_dataset, load_recordings, make_splits

pytestmark = pytest.mark.pipeline  # data generation: no C++ for the sanitizer run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    root = tmp_path_factory.mktemp("syn")
    generate_dataset(str(root / "grasps"), objects_per_category=10, scenes_per_object=2, grasps_per_scene=12,
                     pretrain_root=str(root / "pretrain"), pretrain_per_category=2, seed=3)
    return root


def test_layout_and_loader(synthetic):
    ids, meshes, rows = load_recordings(str(synthetic / "grasps"))
    assert len(ids) == 60 and all(os.path.exists(m) for m in meshes)
    some = os.path.join(synthetic, "grasps", ids[0], "scene_00", "recording.npz")
    z = np.load(some)
    assert z["grasps"].shape[1] == 19 and len(z["scores"]) == len(z["grasps"])
    kept = sum(int((np.load(os.path.join(synthetic, "grasps", i, s, "recording.npz"))["scores"] >= 1.5).sum())
               for i in ids for s in ("scene_00", "scene_01"))
    assert len(rows) == kept  # grasps with score < 1.5 dropped
    ds = GraspDataset(str(synthetic / "grasps"), set(ids[:5]), points=256)
    pts, pose, joints = ds[0]
    assert pts.shape == (256, 3) and pose.shape == (7,) and joints.shape == (12,)
    q = ds.poses[:, 3:]
    assert torch.allclose(q.norm(dim=1), torch.ones(len(q)), atol=1e-5)  # unit quaternions
    assert len(ShapeNetPointClouds(str(synthetic / "pretrain"), points=128)) == 12


def test_joints_are_multimodal_for_the_same_object_and_pose(synthetic):
    # draw the joints of one object and pose many times: two clusters far apart
    # (a pose where both modes are likely: the mode probability depends on the geometry)
    from pcgrasp.data import sample_surface
    from pcgrasp.data.synthetic import joints_for_pose, make_mesh, sample_pose
    from pcgrasp.data.synthetic.grasps import grasp_truth

    rng = np.random.default_rng(0)
    pts = sample_surface(make_mesh("cylinder", rng), 2048, seed=0)
    pose, R = sample_pose(pts, rng)
    while not 0.3 < grasp_truth(pts, pose, R)[0] < 0.7:
        pose, R = sample_pose(pts, rng)
    js = np.stack([joints_for_pose(pts, "cylinder", pose, R, rng) for _ in range(40)])
    ring = js[:, 6:9].mean(1)
    assert ring.max() - ring.min() > 0.4  # ring-finger flexion in two modes
    mean = js.mean(0)
    # the average of the modes is far from every sample: averaging is wrong
    assert np.sqrt(((js - mean) ** 2).mean(1)).min() > np.radians(5)


def test_split_invariants(synthetic):
    ids, _, _ = load_recordings(str(synthetic / "grasps"))
    out = synthetic / "splits"
    ms = make_splits(ids, str(out), split_seed=0)
    synsets = {i.split("/")[0] for i in ids}
    vals = {tuple(m["val"]) for m in ms.values()}
    tests = {tuple(m["test"]) for m in ms.values()}
    assert len(vals) == 1 and len(tests) == 1  # fixed across budgets and packs
    for (pack, b), m in ms.items():
        tr, va, te = set(m["train"]), set(m["val"]), set(m["test"])
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert {i.split("/")[0] for i in tr} == synsets  # every synset in every budget
        assert os.path.exists(out / f"{pack}_{int(round(b * 100)):03d}.json")
    for pack in ("A", "B"):
        budgets = sorted(b for p, b in ms if p == pack)
        for small, big in zip(budgets, budgets[1:]):
            assert set(ms[(pack, small)]["train"]) <= set(ms[(pack, big)]["train"])  # nested
    assert ms[("A", 0.25)]["train"] != ms[("B", 0.25)]["train"]  # packs differ
    assert set(ms[("A", 1.0)]["train"]) == set(ms[("B", 1.0)]["train"])
    held = make_splits(ids, None, split_seed=0, heldout_category=sorted(synsets)[0])
    m = held[("A", 1.0)]
    assert m["heldout"] and all(i.startswith(sorted(synsets)[0]) for i in m["heldout"])
    assert not any(i.startswith(sorted(synsets)[0]) for i in m["train"] + m["val"] + m["test"])
    json.dumps(m)
