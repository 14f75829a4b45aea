import socket
import zlib

import numpy as np
import pytest
import torch

import pcgrasp

# hypothesis profiles (tests/test_properties.py): "ci" by default, reproducible; --hypothesis-profile=thorough
from hypothesis import HealthCheck, settings  # noqa: E402

_quiet = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_quiet)
settings.register_profile("thorough", max_examples=500, **_quiet)
settings.load_profile("ci")

CUDA = torch.cuda.is_available() and pcgrasp.build_info()["cuda_built"]
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
ALL_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a GPU and a CUDA build of pcgrasp")


def free_port():
    """A free TCP port on 127.0.0.1 for a test's gloo process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "cuda" in item.name or "cuda" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cuda)


def ragged_lengths(B, N, rng, with_empty=True):
    """Random valid lengths in [0, N]; with_empty forces one empty and one full cloud."""
    lens = rng.integers(0, N + 1, size=B)
    if with_empty and B >= 2:
        lens[0] = 0
        lens[-1] = N
    return torch.as_tensor(lens, dtype=torch.int64)


def cloud(rng, B, N, D, dtype=torch.float32, kind="uniform"):
    """Random clouds: uniform, clustered (blobs + gaps), planar, with duplicates,
    or on an integer lattice (exact distance ties)."""
    if kind == "uniform":
        x = rng.random((B, N, D))
    elif kind == "clustered":
        centres = rng.random((B, 4, D)) * 10
        which = rng.integers(0, 4, size=(B, N))
        x = np.take_along_axis(centres, which[..., None].repeat(D, -1), 1) + rng.normal(0, 0.05, (B, N, D))
    elif kind == "planar":
        x = rng.random((B, N, D))
        x[..., -1] = 0.5
    elif kind == "duplicates":
        base = rng.random((B, max(1, N // 4), D))
        x = base[:, rng.integers(0, base.shape[1], size=N)]
    elif kind == "lattice":
        x = rng.integers(0, 4, size=(B, N, D)).astype(np.float64)
    else:
        raise ValueError(kind)
    return torch.as_tensor(x).to(dtype)


@pytest.fixture
def rng(request):
    # a stable seed per test, so failures reproduce: crc32, not hash(), which
    # Python salts per process
    return np.random.default_rng(stable_seed(request.node.nodeid))


def stable_seed(nodeid):
    """The rng fixture's seed: the same in every process (unlike hash())."""
    return zlib.crc32(nodeid.encode())
