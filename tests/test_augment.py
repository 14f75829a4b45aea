"""pcgrasp.data.augment: per-cloud rotation / per-axis scale / translation of
object clouds (Point-JEPA pretraining's ``pretrain.augment`` and
``pretrain.target_view``) and the principal-axis frame (``pretrain.canonical``)."""
import math

import numpy as np
import pytest
import torch

from conftest import needs_trimesh
from pcgrasp.cli.common import config_path
from pcgrasp.data.augment import CloudAugmentation, apply_augmentation
from pcgrasp.train.config import load_config


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_matches_a_per_point_loop(dtype):
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(3, 7, 3, generator=g, dtype=torch.float64)
    pts[1, 3] = pts[1, 2]  # a duplicate point
    R, s, t = CloudAugmentation((0.5, 2.0), 0.3, "so3").draw(3, g, torch.float64)
    y = apply_augmentation(pts.to(dtype), R.to(dtype), s.to(dtype), t.to(dtype)).double().numpy()
    P, Rn, sn, tn = pts.numpy(), R.numpy(), s.numpy(), t.numpy()
    for b in range(3):
        for n in range(7):
            rot = [sum(Rn[b, i, k] * P[b, n, k] for k in range(3)) for i in range(3)]
            want = [sn[b, i] * rot[i] + tn[b, i] for i in range(3)]
            np.testing.assert_allclose(y[b, n], want, rtol=1e-5 if dtype == torch.float32 else 1e-12,
                                       atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("rotate", ["none", "z", "so3"])
def test_draws_are_proper_rotations_and_in_range(rotate):
    g = torch.Generator().manual_seed(1)
    R, s, t = CloudAugmentation((0.8, 1.25), 0.02, rotate).draw(500, g)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye.expand(500, 3, 3), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(500, dtype=torch.float64), rtol=0, atol=1e-12)
    assert float(s.min()) >= 0.8 and float(s.max()) <= 1.25 and float(s.max() - s.min()) > 0.3
    assert float(t.abs().max()) <= 0.02 and float(t.abs().max()) > 0.015
    if rotate == "none":
        torch.testing.assert_close(R, eye.expand(500, 3, 3))
    elif rotate == "z":  # z axis fixed, angles spread over the whole circle
        torch.testing.assert_close(R[:, :, 2], eye[2].expand(500, 3))
        a = torch.atan2(R[:, 1, 0], R[:, 0, 0])
        assert np.histogram(a.numpy(), bins=4, range=(-math.pi, math.pi))[0].min() > 80
    else:  # uniform over SO(3): the image of a fixed axis covers the sphere evenly (mean ~ 0, each octant hit)
        v = R[:, :, 0]
        assert float(v.mean(0).norm()) < 0.15
        octant = (v > 0).long() @ torch.tensor([1, 2, 4])
        assert len(set(octant.tolist())) == 8


def test_identity_and_the_generator_decides():
    pts = torch.rand(2, 5, 3)
    same = CloudAugmentation()(pts, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, pts)
    aug = CloudAugmentation((0.9, 1.1), 0.01, "z")
    a = aug(pts, torch.Generator().manual_seed(3))
    b = aug(pts, torch.Generator().manual_seed(3))
    c = aug(pts, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # empty clouds pass through with their shape
    assert aug(torch.zeros(2, 0, 3), torch.Generator()).shape == (2, 0, 3)


@pytest.mark.parametrize("section, key", [
    ({"scale": [1.2, 0.8]}, "scale"), ({"scale": [0, 1]}, "scale"), ({"scale": 1.0}, "scale"),
    ({"scale": [1, float("nan")]}, "scale"), ({"translate": -1}, "translate"), ({"translate": True}, "translate"),
    ({"rotate": "x"}, "rotate"), ({"rotation": "z"}, "rotation"), ([1, 2], "pretrain.augment")])
def test_bad_config_names_the_key(section, key):
    with pytest.raises(ValueError, match=key):
        CloudAugmentation.from_config(section)


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match="points"):
        CloudAugmentation()(torch.zeros(4, 3), torch.Generator())


def test_pretraining_refuses_a_bad_augment_before_any_work(tmp_path):
    from pcgrasp.train.jepa import pretrain

    cfg = load_config(config_path("demo"), [f"data.root={tmp_path}/nothing", "pretrain.augment.rotate=x"])
    with pytest.raises(ValueError, match="pretrain.augment.rotate"):
        pretrain(cfg, progress=False)
    assert not (tmp_path / "nothing").exists()


# ---------------------------------------------------------------- canonical_pose (pretrain.canonical)
def _anisotropic(B, N, seed, dtype):
    """Clouds with distinct variances (4 : 2 : 1) and skew along each axis, then rotated at random."""
    rng = np.random.default_rng(seed)
    x = rng.exponential(size=(B, N, 3)) * np.array([2.0, 1.4, 1.0])
    q = np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(B)])
    return torch.from_numpy(np.einsum("bij,bnj->bni", q, x) + rng.normal(size=(B, 1, 3))).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_canonical_pose_is_a_centred_principal_frame_and_an_isometry(dtype):
    from pcgrasp.data.augment import canonical_pose

    pts = _anisotropic(3, 400, 0, dtype)
    y = canonical_pose(pts)
    assert y.dtype == dtype and y.shape == pts.shape
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for b in range(3):
        a, c = pts[b].double().numpy(), y[b].double().numpy()
        assert np.abs(c.mean(0)).max() < tol * 10
        cov = c.T @ c / len(c)
        assert np.abs(cov - np.diag(np.diag(cov))).max() < tol * 10  # principal axes
        assert np.diag(cov)[0] > np.diag(cov)[1] > np.diag(cov)[2]  # largest variance first
        assert ((c ** 3).sum(0) > 0).all()  # the skew sets each axis's sign
        da = np.linalg.norm(a[:, None] - a[None], axis=-1)
        dc = np.linalg.norm(c[:, None] - c[None], axis=-1)
        assert np.abs(da - dc).max() < tol * 100  # distances kept: a rigid map (or a reflection)


def test_canonical_pose_forgets_rotations_reflections_and_translations():
    from pcgrasp.data.augment import canonical_pose

    pts = _anisotropic(4, 300, 1, torch.float64)
    rng = np.random.default_rng(2)
    for _ in range(3):
        Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]  # det +1 or -1
        moved = torch.from_numpy(pts.numpy() @ Q.T + rng.normal(size=3))
        torch.testing.assert_close(canonical_pose(moved), canonical_pose(pts), rtol=0, atol=1e-9)
    # the point order does not matter either
    perm = torch.from_numpy(rng.permutation(300))
    torch.testing.assert_close(canonical_pose(pts[:, perm]), canonical_pose(pts)[:, perm], rtol=0, atol=1e-9)


def test_canonical_size_sets_the_rms_radius_and_degenerate_clouds_stay_finite():
    from pcgrasp.data.augment import canonical_pose

    pts = _anisotropic(2, 200, 3, torch.float32)
    y = canonical_pose(pts, size=0.05).double()
    np.testing.assert_allclose((y ** 2).sum(-1).mean(1).sqrt().numpy(), 0.05, rtol=1e-5)
    for cloud in (torch.zeros(1, 5, 3), torch.ones(1, 1, 3), torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 0, 0]]])):
        out = canonical_pose(cloud, size=0.05)
        assert torch.isfinite(out).all()
    torch.testing.assert_close(canonical_pose(torch.ones(1, 4, 3), 0.05), torch.zeros(1, 4, 3))  # a point stays one


@pytest.mark.parametrize("args, key", [((torch.zeros(4, 3),), "points"), ((torch.zeros(1, 0, 3),), "points"),
                                       ((torch.zeros(1, 4, 3), 0.0), "size"), ((torch.zeros(1, 4, 3), True), "size"),
                                       ((torch.zeros(1, 4, 3), float("nan")), "size")])
def test_canonical_pose_refuses_bad_input(args, key):
    from pcgrasp.data.augment import canonical_pose

    with pytest.raises(ValueError, match=key):
        canonical_pose(*args)


@needs_trimesh  # the probe's procedural shapes are trimesh meshes
def test_pretrain_canonical_setting_reaches_the_probe_clouds(tmp_path):
    from pcgrasp.data.augment import canonical_pose
    from pcgrasp.train.jepa import CANONICAL_RMS, canonicaliser, pretrain, probe_clouds

    base = [f"data.root={tmp_path}/nothing", "probe.shapes=12"]
    _, raw = probe_clouds(load_config(config_path("demo"), base), 12)
    for setting, size in (("pose", None), ("pose+size", CANONICAL_RMS)):
        cfg = load_config(config_path("demo"), base + [f"pretrain.canonical={setting}"])
        torch.testing.assert_close(probe_clouds(cfg, 12)[1], canonical_pose(raw, size))
        assert canonicaliser(cfg) is not None
    assert canonicaliser(load_config(config_path("demo"), base)) is None
    cfg = load_config(config_path("demo"), base + ["pretrain.canonical=pca"])
    with pytest.raises(ValueError, match="pretrain.canonical"):
        pretrain(cfg, progress=False)
    assert not (tmp_path / "nothing").exists()
