"""The detector's inference post-processing (pcgrasp.train.detector_eval):
voxel downsampling, GSNet's model-free collision filter and grasp NMS against
brute-force NumPy oracles on hand cases and random ones."""
import numpy as np
import pytest

from pcgrasp.train import detector_eval as E


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
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_voxel_downsample_is_the_centroid_per_voxel(dtype):
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(-0.05, 0.05, (300, 3)), np.zeros((5, 3)),  # duplicates at a corner
                        np.round(rng.uniform(-0.05, 0.05, (40, 3)), 2)]).astype(dtype)  # on voxel faces
    got = E.voxel_downsample(p, 0.01)
    np.testing.assert_allclose(got, voxel_oracle(p.astype(np.float64), 0.01), rtol=0, atol=1e-12)
    assert E.voxel_downsample(np.zeros((0, 3)), 0.01).shape == (0, 3)
    with pytest.raises(ValueError, match="points"):
        E.voxel_downsample(np.zeros((4, 2)), 0.01)
    with pytest.raises(ValueError, match="voxel_size"):
        E.voxel_downsample(p, 0.0)


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
    assert E.collision_free(g, between, 0.01, 0.0).tolist() == [True]
    assert E.collision_free(g, finger[:1], 0.01, 0.0).tolist() == [False]        # any point at threshold 0
    assert E.collision_free(g, finger[:1], 0.01, 0.01).tolist() == [True]        # 1 / 164 voxels <= 0.01
    assert E.collision_free(g, finger, 0.01, 0.01).tolist() == [False]           # 3 / 164 > 0.01
    assert E.collision_free(g, behind, 0.01, 0.0).tolist() == [False]            # the approach region
    assert E.collision_free(np.zeros((0, 17)), finger, 0.01, 0.0).shape == (0,)
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
        ref = ~gsnet_collision_oracle(E.voxel_downsample(cloud, 0.01), g, 0.01, thresh)
        np.testing.assert_array_equal(E.collision_free(g, cloud, 0.01, thresh), ref)
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
    out = E.postprocess(g, cloud, 0.01, 0.01)
    np.testing.assert_array_equal(out, g[[1, 2, 3]])
    keep = E.collision_free(g, cloud, 0.01, 0.01)
    np.testing.assert_array_equal(out, g[keep][nms_oracle(g[keep])])
    np.testing.assert_array_equal(E.postprocess(g, cloud, collision_thresh=None), g[nms_oracle(g)])
    # random: the same as the oracle NMS of the collision-free rows
    rng = np.random.default_rng(2)
    rows = [grasp_row(rng.random(), rng.uniform(-0.04, 0.04, 3) + base, rot_z(rng.uniform(0, np.pi)))
            for _ in range(60)]
    g = np.stack(rows)
    cloud = rng.uniform(-0.06, 0.06, (200, 3)) + base
    keep = E.collision_free(g, cloud, 0.01, 0.01)
    np.testing.assert_array_equal(E.postprocess(g, cloud), g[keep][nms_oracle(g[keep])])
    with pytest.raises(ValueError, match="17"):
        E.postprocess(np.zeros((3, 16)), cloud)
