"""The procedural object pool and the depth renderer.

Oracles: trimesh's proximity queries (points on surfaces), trimesh's
pure-Python ray caster (a different algorithm from Embree), closed-form depth
of a box seen face-on, and back-projection written out here."""
import math

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")  # optional: the GPU image and lean installs lack it

from pcgrasp.data.synthetic import objects, render
from pcgrasp.data.synthetic.objects import NOVEL_CATEGORIES, OBJECT_CATEGORIES, make_object, object_pool
from pcgrasp.data.synthetic.render import (DepthRenderer, add_depth_noise, camera_intrinsics, look_at,
                                           render_depth)


# ---------------------------------------------------------------- objects

@pytest.mark.parametrize("variant", ["seen", "similar"])
def test_every_category_is_a_closed_tabletop_solid(variant):
    rng = np.random.default_rng(1)
    for cat in OBJECT_CATEGORIES + NOVEL_CATEGORIES:
        m = make_object(cat, rng, variant)
        assert isinstance(m, trimesh.Trimesh)
        assert m.is_watertight and m.is_winding_consistent, cat
        assert m.volume > 1e-6, cat  # outward normals: positive volume, > 1 cm^3
        assert 0.04 - 1e-9 <= m.extents.max() <= 0.20 + 1e-9, (cat, m.extents)
        np.testing.assert_allclose(m.bounds.mean(0), 0, atol=1e-9)


def test_objects_are_deterministic_per_seed():
    for cat in ("mug", "l_bracket", "dumbbell"):
        a = make_object(cat, np.random.default_rng(5))
        b = make_object(cat, np.random.default_rng(5))
        c = make_object(cat, np.random.default_rng(6))
        np.testing.assert_array_equal(a.vertices, b.vertices)
        assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


def test_similar_proportions_lie_outside_the_seen_range():
    # a box's extents are its proportion factors times (8, 6, 10) cm
    base = np.array([0.08, 0.06, 0.10])
    rng = np.random.default_rng(2)
    for _ in range(20):
        seen = make_object("box", rng, "seen").extents / base
        similar = make_object("box", rng, "similar").extents / base
        assert ((seen >= 0.85 - 1e-9) & (seen <= 1.2 + 1e-9)).all(), seen
        assert ((similar < 0.85) | (similar > 1.2)).all(), similar


def test_make_object_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="category"):
        make_object("teapot", rng)
    with pytest.raises(ValueError, match="variant"):
        make_object("box", rng, "novel")
    with pytest.raises(TypeError, match="rng"):
        make_object("box", 0)


def test_object_pool_numbering_splits_and_user_meshes(tmp_path):
    user = tmp_path / "mine"
    (user / "sub").mkdir(parents=True)
    trimesh.creation.box(extents=[0.05, 0.05, 0.05]).export(user / "cube.obj")
    big = trimesh.creation.icosphere(radius=30.0)  # millimetres
    big.export(user / "sub" / "ball.ply")
    with pytest.raises(ValueError, match="ball.ply"):  # 6 cm ball written in mm is 60 m: wrong unit
        object_pool(seed=3, per_category=1, user_meshes=str(user))
    (user / "sub" / "ball.ply").unlink()
    trimesh.creation.icosphere(radius=0.03).export(user / "sub" / "ball.ply")
    pool = object_pool(seed=3, per_category=1, user_meshes=str(user))
    assert [o.obj_id for o in pool] == list(range(len(pool)))
    splits = [o.split for o in pool]
    n_seen, n_nov = len(OBJECT_CATEGORIES), len(NOVEL_CATEGORIES)
    assert splits == ["seen"] * (n_seen + 2) + ["similar"] * n_seen + ["novel"] * n_nov
    assert [o.category for o in pool[n_seen:n_seen + 2]] == ["cube", "sub/ball"]
    assert [o.category for o in pool[-n_nov:]] == list(NOVEL_CATEGORIES)
    np.testing.assert_allclose(pool[n_seen].mesh.extents, 0.05)
    again = object_pool(seed=3, per_category=1, user_meshes=str(user))
    for a, b in zip(pool, again):
        np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)


def test_mesh_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        objects.load_mesh_folder(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no mesh files"):
        objects.load_mesh_folder(str(tmp_path))
    with pytest.raises(ValueError, match="scale"):
        objects.load_mesh_folder(str(tmp_path), scale=-1)
    with pytest.raises(ValueError, match="per_category"):
        object_pool(per_category=0)


# ---------------------------------------------------------------- camera

def test_intrinsics_are_the_d435_ones_and_scale_with_the_image():
    K = camera_intrinsics()
    np.testing.assert_allclose(K, [[927.17, 0, 651.32], [0, 927.37, 349.62], [0, 0, 1]])
    for w, h in [(640, 360), (160, 90), (321, 77)]:
        k = camera_intrinsics(w, h)
        # the image's outer pixel edges (-0.5 and size - 0.5) see the same rays
        for size_full, size, f, c, fs, cs in [(1280, w, K[0, 0], K[0, 2], k[0, 0], k[0, 2]),
                                                (720, h, K[1, 1], K[1, 2], k[1, 1], k[1, 2])]:
            for edge_full, edge in [(-0.5, -0.5), (size_full - 0.5, size - 0.5)]:
                assert math.isclose((edge_full - c) / f, (edge - cs) / fs, rel_tol=1e-12, abs_tol=1e-12)
    for bad in [(0, 10), (10, -1), (10.5, 10), (True, 4)]:
        with pytest.raises(ValueError, match="width|height"):
            camera_intrinsics(*bad)


def test_look_at_is_an_opencv_camera_pointing_at_the_target(rng):
    for _ in range(20):
        eye = rng.normal(size=3)
        target = rng.normal(size=3) * 0.1
        T = look_at(eye, target)
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) > 0
        np.testing.assert_allclose(T[:3, 3], eye)
        # the target is on the optical axis, in front of the camera
        p = np.linalg.solve(T, np.append(target, 1))[:3]
        np.testing.assert_allclose(p[:2], 0, atol=1e-12)
        assert p[2] > 0
        # the world's up points up in the image (negative y), x is horizontal
        assert R[:, 1] @ np.array([0, 0, 1.0]) <= 1e-12
        assert abs(R[2, 0]) < 1e-12
    with pytest.raises(ValueError, match="up"):
        look_at([0, 0, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="differ"):
        look_at([1, 1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="eye"):
        look_at([1, np.nan, 1], [0, 0, 0])


# ---------------------------------------------------------------- rendering

def _table():
    t = trimesh.creation.box(extents=[1.0, 1.0, 0.02])
    t.apply_translation([0, 0, -0.01])
    return t


def _scene(rng, cats=("mug", "bottle", "box")):
    meshes = [_table()]
    for i, c in enumerate(cats):
        m = make_object(c, rng)
        m.apply_translation([0.12 * (i - 1), 0.02 * i, -m.bounds[0, 2]])
        meshes.append(m)
    return meshes


def backproject_world(depth, K, T):
    """Independent back-projection: pixel (u, v) with depth z -> world."""
    H, W = depth.shape
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    pc = np.stack([x, y, z], 1)
    return pc @ T[:3, :3].T + T[:3, 3], v, u


def test_rendered_points_lie_on_the_mesh_they_are_labelled_with(rng):
    meshes = _scene(rng)
    W, H = 160, 90
    K = camera_intrinsics(W, H)
    T = look_at([0.45, -0.2, 0.5], [0, 0, 0.04])
    depth, hit, normals = render_depth(meshes, T, K, W, H)
    assert depth.dtype == np.float32 and hit.dtype == np.int32 and normals.dtype == np.float32
    assert depth.shape == hit.shape == (H, W) and normals.shape == (H, W, 3)
    np.testing.assert_array_equal(depth > 0, hit >= 0)
    assert set(np.unique(hit)) == {-1, 0, 1, 2, 3}  # table, three objects and background all seen
    pw, v, u = backproject_world(depth, K, T)
    labels = hit[v, u]
    for i, m in enumerate(meshes):
        sel = labels == i
        _, dist, tri = trimesh.proximity.closest_point(m, pw[sel])
        # float32 depth at ~0.7 m: ~0.1 um; anything close to 1 mm would be a bug
        assert dist.max() < 1e-5, (i, dist.max())
        # the normal is that of the face the point lies on (for points off the edges)
        far_from_edges = dist < 1e-6
        n = normals[v[sel], u[sel]].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
        cos = np.einsum("ij,ij->i", n[far_from_edges], m.face_normals[tri[far_from_edges]])
        assert np.mean(cos > 0.999) > 0.95
    np.testing.assert_array_equal(normals[hit < 0], 0)


def test_depth_matches_trimesh_pure_python_caster(rng):
    from trimesh.ray import ray_triangle

    meshes = _scene(rng, cats=("bowl", "l_bracket"))
    W, H = 48, 27
    K = camera_intrinsics(W, H)
    T = look_at([0.3, 0.35, 0.4], [0, 0, 0.03])
    depth, hit, _ = render_depth(meshes, T, K, W, H)
    # oracle: first hit along each pixel's ray with the pure-Python caster
    v, u = np.mgrid[0:H, 0:W]
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=float)], -1)
    d_world = d_cam.reshape(-1, 3) @ T[:3, :3].T
    o = np.tile(T[:3, 3], (len(d_world), 1))
    whole = trimesh.util.concatenate(meshes)
    owner = np.concatenate([np.full(len(m.faces), i) for i, m in enumerate(meshes)])
    locs, ray_idx, tri_idx = ray_triangle.RayMeshIntersector(whole).intersects_location(o, d_world)
    ref_depth = np.full(len(d_world), np.inf)
    ref_hit = np.full(len(d_world), -1)
    zc = (locs - T[:3, 3]) @ T[:3, 2]  # depth = along the optical axis
    for r, z, t in zip(ray_idx, zc, tri_idx):
        if z < ref_depth[r]:
            ref_depth[r], ref_hit[r] = z, owner[t]
    ref_depth[np.isinf(ref_depth)] = 0
    np.testing.assert_array_equal(hit.reshape(-1) >= 0, ref_hit >= 0)
    np.testing.assert_allclose(depth.reshape(-1), ref_depth, atol=2e-6)
    same = np.abs(depth.reshape(-1) - ref_depth) < 1e-6
    np.testing.assert_array_equal(hit.reshape(-1)[same], ref_hit[same])


def test_depth_of_a_box_seen_face_on_is_exact():
    box = trimesh.creation.box(extents=[0.2, 0.1, 0.05])  # top face at z = 0.025
    W, H = 64, 36
    K = camera_intrinsics(W, H)
    T = look_at([0.0, 0.0, 0.7], [0, 0, 0], up=(0, 1, 0))
    depth, hit, normals = render_depth([box], T, K, W, H)
    assert (hit == 0).sum() > 50
    np.testing.assert_allclose(depth[hit == 0], 0.7 - 0.025, rtol=0, atol=1e-7)
    np.testing.assert_allclose(normals[hit == 0], np.tile([0, 0, 1.0], ((hit == 0).sum(), 1)), atol=1e-7)
    # pixels whose back-projection at that depth falls inside the top face are hit, the others are not
    v, u = np.mgrid[0:H, 0:W]
    z = 0.675
    xc, yc = (u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z
    pw = np.stack([xc, yc, np.full_like(xc, z)], -1) @ T[:3, :3].T + T[:3, 3]
    inside = (np.abs(pw[..., 0]) < 0.1 - 1e-4) & (np.abs(pw[..., 1]) < 0.05 - 1e-4)
    outside = (np.abs(pw[..., 0]) > 0.1 + 1e-2) | (np.abs(pw[..., 1]) > 0.05 + 1e-2)
    assert (hit[inside] == 0).all() and (hit[outside] == -1).all()


def test_renderer_reuse_and_fallback_agree(rng, monkeypatch):
    meshes = _scene(rng, cats=("cylinder",))
    W, H = 40, 24
    K = camera_intrinsics(W, H)
    r = DepthRenderer(meshes)
    views = [look_at([0.5 * math.cos(a), 0.5 * math.sin(a), 0.4], [0, 0, 0]) for a in (0.3, 2.0)]
    a = [r.render(T, K, W, H) for T in views]
    monkeypatch.setattr(trimesh.ray, "has_embree", False)
    monkeypatch.setattr(render, "_WARNED", [])
    with pytest.warns(RuntimeWarning, match="embreex"):
        slow = DepthRenderer(meshes)
    for T, (d, h, n) in zip(views, a):
        d2, h2, n2 = slow.render(T, K, W, H)
        np.testing.assert_array_equal(h, h2)
        np.testing.assert_allclose(d, d2, atol=1e-6)


def test_render_rejects_bad_arguments():
    box = trimesh.creation.box()
    K = camera_intrinsics(8, 6)
    T = look_at([0, 0, 3], [0, 0, 0], up=(0, 1, 0))
    with pytest.raises(ValueError, match="meshes"):
        render_depth([], T, K, 8, 6)
    with pytest.raises(ValueError, match="meshes"):
        render_depth(box, T, K, 8, 6)
    with pytest.raises(ValueError, match=r"meshes\[1\]"):
        render_depth([box, "table"], T, K, 8, 6)
    with pytest.raises(ValueError, match="camera_pose"):
        render_depth([box], np.eye(3), K, 8, 6)
    skew = T.copy()
    skew[:3, :3] *= 2
    with pytest.raises(ValueError, match="camera_pose"):
        render_depth([box], skew, K, 8, 6)
    with pytest.raises(ValueError, match="K"):
        render_depth([box], T, -K, 8, 6)
    with pytest.raises(ValueError, match="width"):
        render_depth([box], T, K, 0, 6)


# ---------------------------------------------------------------- noise

def _tilted_plane_view(tilt_deg, W=80, H=45):
    """A large plane tilted by tilt_deg about the x axis, seen from straight
    above: every ray meets it at about tilt_deg (exactly on the optical axis)."""
    plane = trimesh.creation.box(extents=[4.0, 4.0, 0.01])
    plane.apply_transform(trimesh.transformations.rotation_matrix(math.radians(tilt_deg), [1, 0, 0]))
    plane.apply_translation([0, 0, -0.005 / math.cos(math.radians(tilt_deg))])
    K = camera_intrinsics(W, H)
    T = look_at([0, 0, 0.6], [0, 0, 0], up=(0, 1, 0))
    d, h, n = render_depth([plane], T, K, W, H)
    return d, n, T, K


def test_depth_noise_statistics_and_grazing_dropout():
    d, n, T, K = _tilted_plane_view(30.0)
    assert (d > 0).all()
    rng = np.random.default_rng(0)
    clean = add_depth_noise(d, n, T, K, rng, sigma=0.0, grazing_deg=89.0)
    np.testing.assert_array_equal(clean, d)
    noisy = add_depth_noise(d, n, T, K, np.random.default_rng(1), sigma=0.002, grazing_deg=89.0)
    err = (noisy - d).astype(np.float64)
    assert abs(err.std() - 0.002) < 0.0002 and abs(err.mean()) < 0.0002
    again = add_depth_noise(d, n, T, K, np.random.default_rng(1), sigma=0.002, grazing_deg=89.0)
    np.testing.assert_array_equal(noisy, again)
    # incidence angle per pixel, computed here: the rays' angle to the plane normal
    v, u = np.mgrid[0:d.shape[0], 0:d.shape[1]]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(u.shape)], -1) @ T[:3, :3].T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    normal = trimesh.transformations.rotation_matrix(math.radians(30.0), [1, 0, 0])[:3, :3] @ [0, 0, 1.0]
    angle = np.degrees(np.arccos(np.abs(rays @ normal)))
    thr = float(np.median(angle))
    dropped = add_depth_noise(d, n, T, K, rng, sigma=0.0, grazing_deg=thr) == 0
    clear = np.abs(angle - thr) > 1e-3
    np.testing.assert_array_equal(dropped[clear], (angle > thr)[clear])
    assert 0.3 < dropped.mean() < 0.7


def test_depth_noise_keeps_background_and_checks_arguments():
    d, n, T, K = _tilted_plane_view(10.0, W=20, H=12)
    d[:3] = 0
    n[:3] = 0
    out = add_depth_noise(d, n, T, K, np.random.default_rng(0), sigma=0.01)
    assert (out[:3] == 0).all() and (out[3:] > 0).all()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="normals"):
        add_depth_noise(d, n[:, :5], T, K, rng)
    with pytest.raises(ValueError, match="depth"):
        add_depth_noise(d[0], n, T, K, rng)
    with pytest.raises(ValueError, match="sigma"):
        add_depth_noise(d, n, T, K, rng, sigma=-1.0)
    with pytest.raises(ValueError, match="grazing_deg"):
        add_depth_noise(d, n, T, K, rng, grazing_deg=0)
    with pytest.raises(TypeError, match="rng"):
        add_depth_noise(d, n, T, K, 3)
    bad = d.copy()
    bad[5, 5] = np.nan
    with pytest.raises(ValueError, match="depth"):
        add_depth_noise(bad, n, T, K, rng)
