"""`pcgrasp labels` end to end on a tiny synthetic scene: serial, the CLI's
summary and rerun, and a local Ray instance on 2 CPUs writing the same files
(skipped when Ray, an optional extra, is not installed)."""
import filecmp
import os
import shutil

import numpy as np
import pytest

from pcgrasp.cli import main
from pcgrasp.data.synthetic.scenes import generate_scenes
from pcgrasp.labels.pipeline import generate_labels, ray_available

pytestmark = pytest.mark.pipeline
SMALL = dict(views=2, width=96, height=54, objects_per_scene=(2, 2), progress=False)


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    root = str(tmp_path_factory.mktemp("pipe") / "gn")
    generate_scenes(root, scenes="0", seed=5, **SMALL)
    return root


def _label_files(root):
    out = []
    for d in ("grasp_label", "collision_label", "graspness"):
        for dp, _, fs in os.walk(os.path.join(root, d)):
            out += [os.path.relpath(os.path.join(dp, f), root) for f in fs]
    return sorted(out)


def _same_arrays(a, b):
    if a.endswith(".npy"):
        return np.array_equal(np.load(a), np.load(b))
    with np.load(a) as fa, np.load(b) as fb:
        return fa.files == fb.files and all(np.array_equal(fa[k], fb[k]) for k in fa.files)


@pytest.fixture(scope="module")
def serial_root(scenes_root, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("serial") / "gn")
    shutil.copytree(scenes_root, root)
    rc = main(["labels", "--root", root, "--scenes", "0", "--engine", "serial", "--points", "12", "--view-step", "30",
               "--quiet"])
    assert rc == 0
    return root


def test_serial_cli_writes_all_labels_and_reruns_idempotently(serial_root, capsys):
    files = _label_files(serial_root)
    assert len([f for f in files if f.startswith("grasp_label")]) == 2
    assert "collision_label/scene_0000/collision_labels.npz" in files
    assert [f for f in files if f.startswith("graspness")] == [f"graspness/scene_0000/realsense/{a:04d}.npy"
                                                              for a in range(2)]
    assert not [f for f in files if ".tmp" in f]
    s = generate_labels(serial_root, [0], engine="serial", num_points=12, views=range(0, 300, 30), progress=False)
    for st in s["stages"].values():
        assert st["written"] == 0 and st["failed"] == []
    assert s["stages"]["graspness"]["skipped"] == 2
    # a removed frame is redone, the rest skipped
    os.remove(os.path.join(serial_root, "graspness/scene_0000/realsense/0001.npy"))
    s = generate_labels(serial_root, [0], engine="serial", num_points=12, views=range(0, 300, 30), progress=False)
    assert s["stages"]["graspness"]["written"] == 1


def test_bad_arguments(tmp_path, capsys):
    assert main(["labels", "--root", str(tmp_path), "--scenes", "0", "--engine", "serial", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcgrasp labels: error: --root") and "scenes/" in err, err
    with pytest.raises(SystemExit) as e:
        main(["labels", "--root", str(tmp_path), "--scenes", "0", "--view-step", "0", "--quiet"])
    assert e.value.code == 2
    with pytest.raises(ValueError, match="engine"):
        generate_labels(str(tmp_path), [0], engine="spark")


@pytest.mark.skipif(not ray_available(), reason="Ray is an optional extra (pip install 'pcgrasp[scale]')")
def test_local_ray_writes_the_same_files(scenes_root, serial_root, tmp_path):
    import ray

    root = str(tmp_path / "gn")
    shutil.copytree(scenes_root, root)
    try:
        s = generate_labels(root, [0], engine="ray", num_cpus=2, num_points=12, views=range(0, 300, 30),
                            progress=False)
    finally:
        ray.shutdown()
    assert s["engine"] == "ray"
    assert all(st["failed"] == [] for st in s["stages"].values())
    files = _label_files(root)
    assert files == _label_files(serial_root)
    for f in files:
        assert _same_arrays(os.path.join(root, f), os.path.join(serial_root, f)), f
        assert filecmp.cmp(os.path.join(root, f), os.path.join(serial_root, f), shallow=False) or f.endswith(".npz")


def test_evaluate_grasps_ranks_label_grasps_above_random(serial_root, tmp_path, capsys):
    import json

    from pcgrasp.labels.scene_labels import scene_label_grasps

    rng = np.random.default_rng(0)
    good, bad = tmp_path / "labels", tmp_path / "random"
    for a in range(2):
        g = scene_label_grasps(serial_root, 0, a, fric_thresh=0.4)
        assert g.shape[1] == 17 and len(g) > 0
        r = g.copy()
        r[:, 13:16] += rng.normal(scale=0.05, size=(len(r), 3))  # displaced: in the air or in collision
        for d, arr in ((good, g), (bad, r)):
            os.makedirs(d / "scene_0000" / "realsense", exist_ok=True)
            np.save(d / "scene_0000" / "realsense" / f"{a:04d}.npy", arr)
    aps = {}
    for d in (good, bad):
        out = tmp_path / f"{d.name}.json"
        assert main(["evaluate-grasps", "--root", serial_root, "--dump-dir", str(d), "--scenes", "0", "--quiet",
                     "--json", str(out)]) == 0
        aps[d.name] = json.load(open(out))["splits"]["all"]
    assert aps["labels"]["AP0.4"] > aps["random"]["AP0.4"] + 10, aps
    assert "scene 0000" in capsys.readouterr().out
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # a dump folder that is not there: a usage error, before any work
        main(["evaluate-grasps", "--root", serial_root, "--dump-dir", str(tmp_path / "none"), "--scenes", "0",
              "--quiet"])
    assert e.value.code == 2 and "argument --dump-dir: no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate-grasps", "--root", serial_root, "--dump-dir", str(tmp_path / "empty"), "--scenes", "0",
                 "--quiet"]) == 2
    assert "missing grasp file" in capsys.readouterr().err


def test_failed_tasks_are_retried_reported_and_stop_later_stages(scenes_root, tmp_path, capsys):
    root = str(tmp_path / "gn")
    shutil.copytree(scenes_root, root)
    first = sorted(os.listdir(os.path.join(root, "scenes", "scene_0000")))
    ids = [int(x) for x in open(os.path.join(root, "scenes", "scene_0000", "object_id_list.txt")).read().split()]
    os.remove(os.path.join(root, "models", f"{ids[0]:03d}", "nontextured.ply"))
    calls = []
    s = generate_labels(root, [0], engine="serial", num_points=4, views=[0, 150], retries=1, progress=False,
                        log=calls.append)
    st = s["stages"]["grasp labels"]
    assert st["written"] == 1 and len(st["failed"]) == 1 and "missing object model" in st["failed"][0][1]
    assert "collision labels" not in s["stages"] and "graspness" not in s["stages"]
    assert main(["labels", "--root", root, "--scenes", "0", "--engine", "serial", "--points", "4", "--view-step",
                 "150", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "collision labels: not run" in out
    assert sorted(os.listdir(os.path.join(root, "scenes", "scene_0000"))) == first
