"""The synthetic GraspNet-1B-layout scene generator and its CLI.

Oracles: trimesh proximity (rendered points on the stored models), trimesh's
ray-based ``contains`` (no interpenetration, independent of FCL), the layout
read back with PIL / scipy directly, a back-projection written here."""
import json
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

trimesh = pytest.importorskip("trimesh")  # optional: the GPU image and lean installs lack it

from pcgrasp.data.synthetic import scenes
from pcgrasp.data.synthetic.objects import make_object
from pcgrasp.data.synthetic.render import camera_intrinsics
from pcgrasp.data.synthetic.scenes import (generate_scenes, hemisphere_views, parse_scene_ids,
                                           place_objects)

SMALL = dict(views=3, width=96, height=54, objects_per_scene=(3, 4), progress=False)


def test_parse_scene_ids_and_splits():
    assert parse_scene_ids("0-2,5,5, 130") == [0, 1, 2, 5, 130]
    assert parse_scene_ids(7) == [7] and parse_scene_ids([3, 1]) == [1, 3]
    for bad in ("3-1", "a", "", "0-190", [200], "-1"):
        with pytest.raises(ValueError, match="scene"):
            parse_scene_ids(bad)
    assert [scenes.object_split_of_scene(s) for s in (0, 129, 130, 159, 160, 189)] == \
        ["seen", "seen", "similar", "similar", "novel", "novel"]


def test_hemisphere_views_look_at_the_centre(rng):
    V = hemisphere_views(9, rng)
    assert V.shape == (9, 4, 4)
    eyes = V[:, :3, 3]
    dist = np.linalg.norm(eyes, axis=1)
    np.testing.assert_allclose(dist, dist[0])
    assert 0.55 <= dist[0] <= 0.7
    elev = np.degrees(np.arcsin(eyes[:, 2] / dist))
    np.testing.assert_allclose(elev, np.linspace(35, 70, 9), atol=1e-9)
    az = np.unwrap(np.arctan2(eyes[:, 1], eyes[:, 0]))
    np.testing.assert_allclose(az - az[0], np.linspace(0, np.pi, 9), atol=1e-9)
    for T in V:  # the origin is on each optical axis
        p = np.linalg.solve(T, [0, 0, 0, 1.0])
        np.testing.assert_allclose(p[:2], 0, atol=1e-12)
    with pytest.raises(ValueError, match="n_views"):
        hemisphere_views(0, rng)


def _place_rebuilding_each_try(meshes, rng, workspace, tries=100):
    """The placement rule with trimesh's one-shot test, in_collision_single (which builds the
    mesh's BVH on every call): the oracle for place_objects' reuse of one BVH per candidate.
    Returns (kept, poses, rejected tries)."""
    manager = trimesh.collision.CollisionManager()
    kept, poses, rejected = [], [], 0
    for i, m in enumerate(meshes):
        T_rest, prob = scenes.stable_poses(m)
        for _ in range(tries):
            T = T_rest[rng.choice(len(T_rest), p=prob)].copy()
            T = trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), [0, 0, 1]) @ T
            v = m.vertices @ T[:3, :3].T + T[:3, 3]
            lo, hi = v.min(0), v.max(0)
            T[:3, 3] += [rng.uniform(-workspace, workspace) - (lo[0] + hi[0]) / 2,
                         rng.uniform(-workspace, workspace) - (lo[1] + hi[1]) / 2, -lo[2]]
            if kept and manager.in_collision_single(m, transform=T):
                rejected += 1
                continue
            manager.add_object(str(i), m, transform=T)
            kept.append(i)
            poses.append(T)
            break
    return kept, poses, rejected


def test_placement_equals_the_one_shot_collision_test():
    cats = ["box", "mug", "bowl", "cylinder", "l_bracket", "ellipsoid", "cone", "bottle"]
    rejected = 0
    for seed in range(3):
        meshes = [make_object(c, np.random.default_rng(100 * seed + j)) for j, c in enumerate(cats)]
        kept, poses = place_objects(meshes, np.random.default_rng(seed), workspace=0.05, tries=20)
        want_kept, want_poses, r = _place_rebuilding_each_try(meshes, np.random.default_rng(seed), 0.05, 20)
        rejected += r
        assert kept == want_kept
        assert all(np.array_equal(a, b) for a, b in zip(poses, want_poses))
    assert rejected > 10  # a crowded table: the collision test decided many tries


def test_placed_objects_rest_on_the_table_without_interpenetrating(rng):
    cats = ["box", "mug", "bowl", "cylinder", "l_bracket", "ellipsoid", "cone", "bottle"]
    meshes = [make_object(c, rng) for c in cats]
    kept, poses = place_objects(meshes, rng, workspace=0.12)
    assert len(kept) >= 5
    placed = [meshes[k].copy().apply_transform(T) for k, T in zip(kept, poses)]
    for m, T in zip(placed, poses):
        assert abs(m.bounds[0, 2]) < 1e-9  # resting on z = 0
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
        c = m.bounds.mean(0)
        assert (np.abs(c[:2]) <= 0.12 + 1e-9).all()
        # stable: the centre of mass projects inside the footprint (the contact region's hull)
        base = m.vertices[m.vertices[:, 2] < 1e-6][:, :2]
        if len(base) >= 3:
            from scipy.spatial import Delaunay
            assert Delaunay(base).find_simplex(m.center_mass[:2]) >= 0
    for i, a in enumerate(placed):
        pts = a.sample(300, seed=i)
        for j, b in enumerate(placed):
            if i != j:
                assert not b.contains(pts).any(), (i, j)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "gn")
    summary = generate_scenes(root, scenes="0,160", seed=7, **SMALL)
    return root, summary


def _read(root, s, ann, kind):
    d = os.path.join(root, "scenes", f"scene_{s:04d}", "realsense")
    if kind == "meta":
        return scipy.io.loadmat(os.path.join(d, "meta", f"{ann:04d}.mat"))
    return np.array(Image.open(os.path.join(d, kind, f"{ann:04d}.png")))


@pytest.mark.pipeline
def test_layout_files_and_dtypes(small_dataset):
    root, summary = small_dataset
    assert summary["generated_scenes"] == 2 and summary["frames_written"] == 6
    info = json.load(open(os.path.join(root, "synthetic.json")))
    assert len(info["objects"]) == summary["objects"]
    for o in info["objects"]:
        d = os.path.join(root, "models", f"{o['id']:03d}")
        assert os.path.exists(os.path.join(d, "nontextured.ply")) and os.path.exists(os.path.join(d, "textured.obj"))
    split_of = {o["id"]: o["split"] for o in info["objects"]}
    for s, want in ((0, "seen"), (160, "novel")):
        sd = os.path.join(root, "scenes", f"scene_{s:04d}")
        ids = [int(x) for x in open(os.path.join(sd, "object_id_list.txt")).read().split()]
        assert 3 <= len(ids) <= 4 and len(set(ids)) == len(ids)
        assert all(split_of[i] == want for i in ids)
        cam = os.path.join(sd, "realsense")
        K = np.load(os.path.join(cam, "camK.npy"))
        np.testing.assert_allclose(K, camera_intrinsics(96, 54))
        poses = np.load(os.path.join(cam, "camera_poses.npy"))
        assert poses.shape == (3, 4, 4)
        np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
        assert np.load(os.path.join(cam, "cam0_wrt_table.npy")).shape == (4, 4)
        assert sorted(os.listdir(os.path.join(cam, "annotations"))) == ["0000.xml", "0001.xml", "0002.xml"]
        for ann in range(3):
            depth, label, rgb = (_read(root, s, ann, k) for k in ("depth", "label", "rgb"))
            assert depth.dtype == np.uint16 and depth.shape == (54, 96)
            assert label.dtype == np.uint8 and label.shape == (54, 96)
            assert rgb.dtype == np.uint8 and rgb.shape == (54, 96, 3)
            assert set(np.unique(label)) <= {0} | {i + 1 for i in ids}
            meta = _read(root, s, ann, "meta")
            assert meta["cls_indexes"].reshape(-1).astype(int).tolist() == [i + 1 for i in ids]
            assert meta["poses"].shape == (3, 4, len(ids))
            np.testing.assert_allclose(meta["intrinsic_matrix"], K)
            assert float(meta["factor_depth"].reshape(-1)[0]) == 1000.0


@pytest.mark.pipeline
def test_depth_points_lie_on_the_labelled_models_and_poses_agree(small_dataset):
    root, _ = small_dataset
    table = scenes.table_mesh()
    for s in (0, 160):
        cam = os.path.join(root, "scenes", f"scene_{s:04d}", "realsense")
        K = np.load(os.path.join(cam, "camK.npy"))
        cam0 = np.load(os.path.join(cam, "cam0_wrt_table.npy"))
        rel = np.load(os.path.join(cam, "camera_poses.npy"))
        table_poses = None
        for ann in range(3):
            depth = _read(root, s, ann, "depth").astype(np.float64) / 1000
            label = _read(root, s, ann, "label")
            meta = _read(root, s, ann, "meta")
            T = cam0 @ rel[ann]
            v, u = np.nonzero(depth > 0)
            z = depth[v, u]
            pc = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], 1)
            lab = label[v, u]
            ids = meta["cls_indexes"].reshape(-1).astype(int) - 1
            P = meta["poses"].transpose(2, 0, 1)
            # object poses: the same table pose seen from every camera
            tp = np.stack([T @ np.vstack([p, [0, 0, 0, 1]]) for p in P])
            if table_poses is None:
                table_poses = tp
            np.testing.assert_allclose(tp, table_poses, atol=1e-9)
            assert (lab > 0).sum() > 20
            for i, oid in enumerate(ids):
                sel = lab == oid + 1
                if not sel.any():
                    continue
                model = trimesh.load(os.path.join(root, "models", f"{oid:03d}", "nontextured.ply"), process=False)
                Pc = np.vstack([P[i], [0, 0, 0, 1]])
                model.apply_transform(Pc)  # model -> this camera
                _, dist, _ = trimesh.proximity.closest_point(model, pc[sel])
                assert dist.max() < 1e-3, (s, ann, oid, dist.max())  # mm depth quantisation: < 0.6 mm
            sel = lab == 0
            world = pc[sel] @ T[:3, :3].T + T[:3, 3]
            _, dist, _ = trimesh.proximity.closest_point(table, world)
            assert dist.max() < 1e-3


def quat_to_matrix(q):
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


@pytest.mark.pipeline
def test_annotation_xml_matches_meta_poses(small_dataset):
    import xml.etree.ElementTree as ET

    root, _ = small_dataset
    info = json.load(open(os.path.join(root, "synthetic.json")))
    for s in (0, 160):
        for ann in range(3):
            meta = _read(root, s, ann, "meta")
            ids = meta["cls_indexes"].reshape(-1).astype(int) - 1
            P = meta["poses"].transpose(2, 0, 1)
            top = ET.parse(os.path.join(root, "scenes", f"scene_{s:04d}", "realsense", "annotations",
                                        f"{ann:04d}.xml")).getroot()
            assert top.tag == "scene" and len(top) == len(ids)
            for obj, oid, pose in zip(top, ids, P):
                # graspnetAPI's xmlReader reads the children by position
                assert [c.tag for c in obj] == ["obj_id", "obj_name", "obj_path", "pos_in_world", "ori_in_world"]
                assert int(obj[0].text) == oid and obj[1].text == info["objects"][oid]["category"]
                assert obj[2].text == f"models/{oid:03d}/nontextured.ply"
                np.testing.assert_allclose([float(t) for t in obj[3].text.split()], pose[:, 3], atol=6e-5)
                q = [float(t) for t in obj[4].text.split()]
                np.testing.assert_allclose(quat_to_matrix(q), pose[:, :3], atol=5e-4)


@pytest.mark.pipeline
def test_deterministic_resumable_and_parallel(small_dataset, tmp_path):
    root, _ = small_dataset
    other = str(tmp_path / "again")
    s = generate_scenes(other, scenes=[160], seed=7, workers=2, **SMALL)
    assert s["generated_scenes"] == 1
    s = generate_scenes(other, scenes="0,160", seed=7, workers=2, **SMALL)
    assert s["generated_scenes"] == 1 and s["skipped_scenes"] == 1
    for sid in (0, 160):
        for ann in range(3):
            for kind in ("depth", "label", "rgb"):
                np.testing.assert_array_equal(_read(root, sid, ann, kind), _read(other, sid, ann, kind))
            np.testing.assert_array_equal(_read(root, sid, ann, "meta")["poses"],
                                          _read(other, sid, ann, "meta")["poses"])
    # rerun: nothing to do, nothing rewritten
    f = os.path.join(other, "scenes", "scene_0000", "realsense", "depth", "0001.png")
    mtime = os.stat(f).st_mtime_ns
    s = generate_scenes(other, scenes="0,160", seed=7, **SMALL)
    assert s["generated_scenes"] == 0 and os.stat(f).st_mtime_ns == mtime
    # an interrupted scene (temporary folder left, final one missing) is redone
    cam = os.path.join(other, "scenes", "scene_0160", "realsense")
    os.rename(cam, os.path.join(other, "scenes", "scene_0160", ".realsense.tmp"))
    s = generate_scenes(other, scenes="0,160", seed=7, **SMALL)
    assert s["generated_scenes"] == 1
    assert not os.path.exists(os.path.join(other, "scenes", "scene_0160", ".realsense.tmp"))
    np.testing.assert_array_equal(_read(root, 160, 2, "depth"), _read(other, 160, 2, "depth"))
    with pytest.raises(ValueError, match="seed"):
        generate_scenes(other, scenes="0", seed=8, **SMALL)
    # another seed gives another scene
    third = str(tmp_path / "seed8")
    generate_scenes(third, scenes="0", seed=8, **SMALL)
    assert not np.array_equal(_read(root, 0, 0, "depth"), _read(third, 0, 0, "depth"))


@pytest.mark.pipeline
def test_noise_changes_depth_but_not_labels(small_dataset, tmp_path):
    root, _ = small_dataset
    noisy = str(tmp_path / "noisy")
    generate_scenes(noisy, scenes="0", seed=7, noise_sigma=0.002, grazing_deg=70.0, **SMALL)
    a, b = _read(root, 0, 1, "depth").astype(int), _read(noisy, 0, 1, "depth").astype(int)
    np.testing.assert_array_equal(_read(root, 0, 1, "label"), _read(noisy, 0, 1, "label"))
    both = (a > 0) & (b > 0)
    assert (b[a == 0] == 0).all() and (b == 0).sum() > (a == 0).sum()
    err = (b - a)[both]
    assert 1.0 < err.std() < 3.0  # 2 mm sigma, in mm with rounding


def test_generator_rejects_bad_arguments(tmp_path):
    root = str(tmp_path / "x")
    for kw, match in [(dict(scenes="0-300"), "scene"), (dict(objects_per_scene=(5, 2)), "objects_per_scene"),
                      (dict(camera="kinect"), "camera"), (dict(workers=0), "workers"), (dict(views=0), "views"),
                      (dict(width=0), "width"), (dict(workspace=0), "workspace"),
                      (dict(noise_sigma=-0.1), "noise_sigma"), (dict(grazing_deg=95), "grazing_deg")]:
        args = dict(scenes="0", progress=False)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            generate_scenes(root, **args)
    with pytest.raises(FileNotFoundError, match="no_meshes_here"):
        generate_scenes(root, scenes="0", user_meshes=str(tmp_path / "no_meshes_here"), progress=False)
    # a real GraspNet-1B copy (here the real-layout fixture) is never written into
    import shutil

    real = tmp_path / "real"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "graspnet_real"), real)
    with pytest.raises(ValueError, match="not a dataset"):
        generate_scenes(str(real), scenes="100", progress=False)
    assert not (real / "synthetic.json").exists()


@pytest.mark.pipeline
def test_cli_generate_scenes(tmp_path, capsys):
    from pcgrasp.cli import main

    out = str(tmp_path / "cli")
    assert main(["generate-scenes", "--out", out, "--scenes", "130", "--views", "2", "--width", "64", "--height",
                 "36", "--objects", "3-3", "--noise", "--quiet"]) == 0
    msg = capsys.readouterr().out
    assert "1 scenes generated" in msg and "frames/s" in msg
    cam = os.path.join(out, "scenes", "scene_0130", "realsense")
    assert sorted(os.listdir(os.path.join(cam, "depth"))) == ["0000.png", "0001.png"]
    ids = open(os.path.join(out, "scenes", "scene_0130", "object_id_list.txt")).read().split()
    info = json.load(open(os.path.join(out, "synthetic.json")))
    assert len(ids) == 3 and all(info["objects"][int(i)]["split"] == "similar" for i in ids)
    assert info["settings"]["noise_sigma"] == 0.001 and info["settings"]["grazing_deg"] == 80.0
    capsys.readouterr()
    assert main(["generate-scenes", "--out", out, "--scenes", "999", "--quiet"]) == 2
    assert "scene id" in capsys.readouterr().err
    assert main(["generate-scenes", "--out", out, "--objects", "x-y", "--quiet"]) == 2
    assert "pcgrasp generate-scenes: error: --objects" in capsys.readouterr().err
