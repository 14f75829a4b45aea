"""The lazily cached procedural pretraining set."""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.pipeline  # pure NumPy / trimesh: nothing for the sanitizer run
pytest.importorskip("trimesh")  # the procedural shapes are trimesh meshes


# ---------------------------------------------------------------- procedural pretraining set
def test_procedural_shapes_are_deterministic_cached_and_resumable(tmp_path):
    from pcgrasp.data.procedural import ProceduralShapes

    fresh = ProceduralShapes(8, points=64, seed=5)
    cached = ProceduralShapes(8, points=64, seed=5, cache=str(tmp_path / "c"))
    assert cached.fill(progress=False) == 8
    assert cached.fill(progress=False) == 0  # nothing left to do
    os.remove(tmp_path / "c" / "0000003.npy")  # an interrupted fill
    assert cached.fill(progress=False) == 1
    tail = ProceduralShapes(4, points=64, seed=5, start=4)  # any subset, any order: the same shapes
    for i in (7, 0, 3):
        np.testing.assert_array_equal(fresh[i].numpy(), cached[i].numpy())
    np.testing.assert_array_equal(fresh[5].numpy(), tail[1].numpy())
    assert list(fresh.labels[:7]) == [0, 1, 2, 3, 4, 5, 0]
    assert not np.array_equal(fresh[0].numpy(), ProceduralShapes(1, points=64, seed=6)[0].numpy())
    with pytest.raises(ValueError, match="cache"):
        ProceduralShapes(8, points=32, seed=5, cache=str(tmp_path / "c"))  # other settings
    with pytest.raises(ValueError, match="n must"):
        ProceduralShapes(0)
    with pytest.raises(IndexError):
        fresh[8]
