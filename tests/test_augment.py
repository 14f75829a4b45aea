"""pcgrasp.data.augment: per-cloud rotation / per-axis scale / translation of
object clouds (Point-JEPA pretraining's ``pretrain.augment``)."""
import math

import numpy as np
import pytest
import torch

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
