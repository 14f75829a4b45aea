"""The Dex-Net 2.0 layout: writer/loader round trip, splits, planar grasp
geometry, and the synthetic generator (deterministic, resumable, balanced,
crops centred on and rotated to the grasps, optional depth noise)."""
import math
import os

import numpy as np
import pytest
import torch

from conftest import needs_trimesh
from pcgrasp.data.dexnet import (CHUNK_SIZE, DexNetDataset, chunk_path, grasp_crops, image_split, list_chunks,
                                 load_chunks, planar_grasp_frames, write_chunk)


def random_chunk(rng, n, first_image=0):
    return {"depth_ims_tf_table": rng.random((n, 32, 32, 1)).astype(np.float32),
            "hand_poses": rng.random((n, 7)).astype(np.float32),
            "robust_ferrari_canny": rng.choice([0.0, 0.002, 0.0021, 0.004], n).astype(np.float32),
            "image_labels": first_image + rng.integers(0, 3, n), "object_labels": rng.integers(0, 3, n)}


def test_round_trip(tmp_path, rng):
    chunks = [random_chunk(rng, 7, 0), random_chunk(rng, 0), random_chunk(rng, 5, 10)]  # an empty chunk too
    for i, c in enumerate(chunks):
        write_chunk(str(tmp_path), i, c)
    assert list_chunks(str(tmp_path)) == [0, 1, 2]
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    with np.load(chunk_path(str(tmp_path), "hand_poses", 0)) as z:  # the real layout's key
        assert list(z.keys()) == ["arr_0"]
    ds = DexNetDataset(str(tmp_path))
    assert len(ds) == 12
    cat = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    np.testing.assert_array_equal(ds.crops.numpy(), cat["depth_ims_tf_table"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.grasps.numpy(), cat["hand_poses"][:, :4])
    # success <=> robust_ferrari_canny > 0.002 (strict, as GQ-CNN thresholds it)
    np.testing.assert_array_equal(ds.labels.numpy(), (cat["robust_ferrari_canny"] > 0.002).astype(np.float32))
    crop, grasp, label = ds[3]
    assert crop.shape == (1, 32, 32) and grasp.shape == (4,) and label.shape == ()
    # image-wise subsets and chunk subsets
    sub = DexNetDataset(str(tmp_path), images=[10, 11])
    assert len(sub) == int(np.isin(cat["image_labels"], [10, 11]).sum())
    assert len(DexNetDataset(str(tmp_path), chunks=[2])) == 5


def test_real_layout_without_id_files(tmp_path, rng):
    c = random_chunk(rng, 4)
    write_chunk(str(tmp_path), 0, {k: c[k] for k in ("depth_ims_tf_table", "hand_poses", "robust_ferrari_canny")})
    ds = DexNetDataset(str(tmp_path))
    assert len(ds) == 4 and ds.image_ids is None
    with pytest.raises(ValueError, match="image_labels"):
        DexNetDataset(str(tmp_path), images=[0])


def test_bad_layouts(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="root"):
        DexNetDataset(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no Dex-Net chunks"):
        DexNetDataset(str(tmp_path))
    c = random_chunk(rng, 4)
    with pytest.raises(ValueError, match="equal lengths"):
        write_chunk(str(tmp_path), 0, {**c, "hand_poses": c["hand_poses"][:3]})
    write_chunk(str(tmp_path), 0, {**c, "depth_ims_tf_table": c["depth_ims_tf_table"][:, :, :16]})
    with pytest.raises(ValueError, match="depth_ims_tf_table"):
        DexNetDataset(str(tmp_path))
    os.remove(chunk_path(str(tmp_path), "hand_poses", 0))
    assert list_chunks(str(tmp_path)) == []  # incomplete chunks do not count


def test_image_split(rng):
    ids = rng.integers(0, 20, 200)
    tr, va = image_split(ids, 0.25, seed=3)
    assert set(tr) | set(va) == set(ids) and not set(tr) & set(va)
    assert len(va) == round(0.25 * len(set(ids)))
    np.testing.assert_array_equal(image_split(ids, 0.25, seed=3)[1], va)  # seeded
    assert len(image_split([5, 5, 5], 0.5, 0)[1]) == 0  # one image stays in training
    assert len(image_split([1, 2], 0.01, 0)[1]) == 1   # a non-zero fraction gives at least one
    with pytest.raises(ValueError, match="val_fraction"):
        image_split(ids, 1.0, 0)


def test_planar_grasp_frames():
    K = np.array([[300.0, 0, 63.5], [0, 300.0, 63.5], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]  # looking straight down from z = 0.6
    T[:3, 3] = [0, 0, 0.6]
    g = np.array([[63.5, 63.5, 0.5, 0.0], [33.5, 93.5, 0.55, math.pi / 2], [10.0, 20.0, 0.6, 0.3]])
    c, R = planar_grasp_frames(g, K, T)
    np.testing.assert_allclose(c[0], [0, 0, 0.1], atol=1e-12)
    np.testing.assert_allclose(c[1], [30 / 300 * 0.55, 30 / 300 * 0.55, 0.05], atol=1e-12)  # row up = +y here
    for Ri, a in zip(R, g[:, 3]):
        np.testing.assert_allclose(Ri @ Ri.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(Ri) == pytest.approx(1.0)
        np.testing.assert_allclose(Ri[:, 0], [0, 0, -1], atol=1e-12)                      # approach: down
        np.testing.assert_allclose(Ri[:, 1], [math.cos(a), -math.sin(a), 0], atol=1e-12)  # closing axis
    # the centre projects back to its pixel at its depth
    p = (c[2] - T[:3, 3]) @ T[:3, :3]
    assert p[2] == pytest.approx(0.6)
    assert K[0, 0] * p[0] / p[2] + K[0, 2] == pytest.approx(20.0)
    assert K[1, 1] * p[1] / p[2] + K[1, 2] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="grasps"):
        planar_grasp_frames(np.zeros((2, 3)), K, T)


# ---------------------------------------------------------------- generator
@pytest.mark.pipeline
@needs_trimesh
def test_generator_deterministic_resumable_balanced(tmp_path):
    from pcgrasp.data.synthetic.dexnet import generate_dexnet, image_datapoints, make_view

    kw = dict(images=3, seed=5, grasps_per_image=12, candidates=120, perturbations=2, images_per_chunk=2,
              progress=False)
    s = generate_dexnet(str(tmp_path / "a"), **kw)
    assert s["chunks"] == 2 and s["written"] == 2 and s["datapoints"] == 36
    a = load_chunks(str(tmp_path / "a"))
    # resumable: a finished chunk is skipped, a missing one is rewritten identically
    os.remove(chunk_path(str(tmp_path / "a"), "depth_ims_tf_table", 1))
    mtime = os.path.getmtime(chunk_path(str(tmp_path / "a"), "hand_poses", 0))
    assert generate_dexnet(str(tmp_path / "a"), **kw)["written"] == 1
    assert os.path.getmtime(chunk_path(str(tmp_path / "a"), "hand_poses", 0)) == mtime
    b = load_chunks(str(tmp_path / "a"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # balanced: per image at most half successes (failures fill up)
    ok = a["robust_ferrari_canny"] > 0.002
    for i in range(3):
        assert ok[a["image_labels"] == i].sum() <= 6
    assert 0 < ok.mean() <= 0.5
    # layout columns; crops centred on and rotated to the grasps of the rendered image
    poses = a["hand_poses"]
    np.testing.assert_array_equal(poses[:, 4:6], 15.5)
    view = make_view(0, 5)
    first = a["image_labels"] == 0
    np.testing.assert_allclose(poses[first, 6], 0.085 * view["K"][0, 0] / poses[first, 2], rtol=1e-5)
    again = grasp_crops(torch.from_numpy(view["depth"]), torch.from_numpy(poses[first, :4]), 32, 64)
    np.testing.assert_allclose(a["depth_ims_tf_table"][first], again.numpy().transpose(0, 2, 3, 1), atol=1e-6)
    # depth noise changes the crops, not the labels
    clean = image_datapoints(0, 5, grasps_per_image=12, candidates=120, perturbations=2)
    noisy = image_datapoints(0, 5, grasps_per_image=12, candidates=120, perturbations=2, noise_sigma=0.002)
    np.testing.assert_array_equal(clean["hand_poses"], noisy["hand_poses"])
    np.testing.assert_array_equal(clean["robust_ferrari_canny"], noisy["robust_ferrari_canny"])
    assert np.abs(clean["depth_ims_tf_table"] - noisy["depth_ims_tf_table"]).max() > 1e-3
    with pytest.raises(ValueError, match="images"):
        generate_dexnet(str(tmp_path / "c"), images=0)
    assert CHUNK_SIZE == 1000
