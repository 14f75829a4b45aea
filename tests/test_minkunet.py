"""MinkUNet14D / ResUNet14: GSNet / MinkowskiEngine parameter names and shapes, strict loading,
the whole network against the naive reference, and parity with MinkowskiEngine (live when it
imports, else from the committed fixtures in tests/fixtures/minkowski/)."""
import glob
import os

import numpy as np
import pytest
import torch

import pcgrasp.nn as snn
from pcgrasp.models import MinkUNet14D, ResUNet14
from pcgrasp.models.minkunet import ME_MINKUNET14D_PLANES
import _sparse_reference as ref

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "minkowski")


def expected_shapes(cin, cout, planes):
    """GSNet's MinkUNet14D parameters, listed by hand from its network_initialization."""
    shapes = {}

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{p}"] = (c,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()

    def block(name, cin, c):
        shapes[f"{name}.0.conv1.kernel"] = (27, cin, c)
        bn(f"{name}.0.norm1", c)
        shapes[f"{name}.0.conv2.kernel"] = (27, c, c)
        bn(f"{name}.0.norm2", c)
        if cin != c:
            shapes[f"{name}.0.downsample.0.kernel"] = (cin, c)
            bn(f"{name}.0.downsample.1", c)

    shapes["conv0p1s1.kernel"] = (125, cin, 32)
    bn("bn0", 32)
    c = 32
    for i, name in enumerate(["conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2"]):
        shapes[f"{name}.kernel"] = (8, c, c)
        bn(f"bn{i + 1}", c)
        block(f"block{i + 1}", c, planes[i])
        c = planes[i]
    skips = [planes[2], planes[1], planes[0], 32]
    for j, name in enumerate(["convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2"]):
        shapes[f"{name}.kernel"] = (8, c, planes[4 + j])
        bn(f"bntr{4 + j}", planes[4 + j])
        block(f"block{5 + j}", planes[4 + j] + skips[j], planes[4 + j])
        c = planes[4 + j]
    shapes["final.kernel"] = (c, cout)
    shapes["final.bias"] = (1, cout)
    return shapes


@pytest.mark.parametrize("planes", [None, ME_MINKUNET14D_PLANES, (4, 6, 8, 10, 6, 6, 4, 4)])
def test_parameter_names_and_shapes(planes):
    m = MinkUNet14D(3, 17) if planes is None else MinkUNet14D(3, 17, planes)
    want = expected_shapes(3, 17, planes or (32, 64, 128, 256, 192, 192, 192, 192))
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == want


def test_resunet14_configuration():
    m = ResUNet14()
    assert m.final.kernel.shape == (192, 512) and m.conv0p1s1.kernel.shape == (125, 3, 32)
    # its state_dict is a MinkUNet14D state_dict (GraspContrast -> GSNet detector)
    MinkUNet14D(3, 512).load_state_dict(m.state_dict(), strict=True)


def test_strict_loading_and_errors():
    a, b = MinkUNet14D(3, 8, (4, 6, 8, 10, 6, 6, 4, 4)), MinkUNet14D(3, 8, (4, 6, 8, 10, 6, 6, 4, 4))
    sd = {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in a.state_dict().items()}
    b.load_state_dict(sd, strict=True)
    for k, v in b.state_dict().items():
        assert torch.equal(v, sd[k])
    bad = dict(sd)
    bad["block1.0.conv1.weight"] = bad.pop("block1.0.conv1.kernel")
    with pytest.raises(RuntimeError, match="block1.0.conv1.kernel"):
        b.load_state_dict(bad, strict=True)
    with pytest.raises(ValueError, match="planes"):
        MinkUNet14D(3, 8, (4, 6))


def random_scene(rng, n=300, batches=2, C=3):
    c = np.concatenate([rng.integers(0, batches, (n, 1)), rng.integers(-7, 7, (n, 3))], 1)
    c = np.unique(c, axis=0)
    c = c[rng.permutation(len(c))]
    return torch.as_tensor(c, dtype=torch.int32), torch.as_tensor(rng.normal(size=(len(c), C)))


def randomise_bn(m):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, snn.SparseBatchNorm):
                mod.bn.weight.uniform_(0.5, 1.5)
                mod.bn.bias.normal_(0, 0.1)
                mod.bn.running_mean.normal_(0, 0.1)
                mod.bn.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("train", [True, False])
def test_matches_naive_reference(rng, train):
    planes = (4, 6, 8, 10, 6, 6, 4, 4)
    m = MinkUNet14D(3, 5, planes).double()
    randomise_bn(m)
    m.train(train)
    c, F = random_scene(rng)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    out = m(snn.SparseTensor(F, c))
    want = ref.minkunet14d([tuple(r) for r in c.tolist()], F, sd, train)
    assert out.C is not None and torch.equal(out.C, c)
    torch.testing.assert_close(out.F, want, rtol=1e-9, atol=1e-9)


def test_backward_runs_and_reaches_every_parameter(rng):
    m = MinkUNet14D(3, 5, (4, 6, 8, 10, 6, 6, 4, 4))
    c, F = random_scene(rng, n=200)
    m(snn.SparseTensor(F.float(), c)).F.square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


# ---- parity with MinkowskiEngine -------------------------------------------------------------

import _minkowski_cases as cases  # noqa: E402

try:
    import MinkowskiEngine  # noqa: F401
    HAVE_ME = True
except Exception:  # not installed (CI): the fixtures carry ME's results
    HAVE_ME = False

FIXTURE_FILES = sorted(glob.glob(os.path.join(FIXTURES, "*.npz")))


def _compare(got, want):
    assert set(got) == set(want)
    for key, value in got.items():
        if "out_coords" in key:
            assert torch.equal(value, want[key]), key
        else:
            torch.testing.assert_close(value, want[key], rtol=1e-9, atol=1e-10, msg=key)


# the fixtures are committed: a missing one fails test_fixtures_cover_every_case
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: os.path.basename(p)[:-4])
def test_fixture_parity(path):
    with np.load(path) as z:
        fx = {k: z[k] for k in z.files}
    want = {k: torch.from_numpy(v) for k, v in fx.items() if k not in ("coords", "feats", "param_seed")}
    _compare(cases.run_pcgrasp(os.path.basename(path)[:-4], fx), want)


def test_fixtures_cover_every_case():
    assert sorted(os.path.basename(p)[:-4] for p in FIXTURE_FILES) == sorted(cases.CASES)


@pytest.mark.skipif(not HAVE_ME, reason="MinkowskiEngine is not installed (tools/install-minkowski.sh)")
@pytest.mark.parametrize("name", cases.CASES)
def test_live_parity_with_minkowski(name):
    fx = cases.make_inputs(name, seed=12345)
    _compare(cases.run_pcgrasp(name, fx), cases.run_me(name, fx))
