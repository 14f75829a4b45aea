"""Synthetic cluttered tabletop scenes written in the GraspNet-1Billion layout
(``pcgrasp generate-scenes``), so ``pcgrasp.data.graspnet`` reads them and a
real GraspNet-1B copy alike::

    root/synthetic.json                           generator settings + object list (ours)
    root/models/<obj:03d>/{nontextured.ply, textured.obj}
    root/scenes/scene_<s:04d>/object_id_list.txt
    root/scenes/scene_<s:04d>/<camera>/{camK.npy, camera_poses.npy, cam0_wrt_table.npy}
    root/scenes/scene_<s:04d>/<camera>/depth/<ann:04d>.png   uint16 millimetres
    root/scenes/scene_<s:04d>/<camera>/label/<ann:04d>.png   uint8, 0 = table/background, obj_id + 1
    root/scenes/scene_<s:04d>/<camera>/meta/<ann:04d>.mat    cls_indexes, poses, intrinsic_matrix, factor_depth
    root/scenes/scene_<s:04d>/<camera>/rgb/<ann:04d>.png     grey, shaded from the camera
    root/scenes/scene_<s:04d>/<camera>/annotations/<ann:04d>.xml  graspnetAPI's object pose list

How a scene is made (all from ``np.random.default_rng([seed, scene_id])``, so a
scene does not depend on which other scenes, in which order or on how many
workers are generated):

- Objects: 3-10 (``objects_per_scene``) distinct objects of the scene's split
  (GraspNet-1B numbering: scenes 0-129 seen objects, 130-159 similar ones,
  160-189 novel categories; see ``objects.object_pool``).
- Each rests on the table (frame: z up, table top z = 0, workspace centre at the
  origin) in one of its trimesh stable poses (drawn by their probability),
  turned by a random yaw, at a random position within ``workspace`` metres of
  the centre; poses that would interpenetrate an object already placed are
  redrawn (trimesh's collision manager, FCL), an object that finds no free
  spot in 100 tries is left out.
- Views: ``n_views`` cameras along a hemisphere arc around the workspace
  centre (azimuth over 180 degrees from a random start, elevation rising from
  35 to 70 degrees, distance 0.55-0.7 m), each looking at the centre. The table
  is a 1 m x 1 m slab, so oblique views see past its edge (depth 0 there).
- Depth, label, normals from the same rays (``render.DepthRenderer``);
  optional noise (``render.add_depth_noise``); depth stored in mm.

A scene's camera folder is built under a temporary name and renamed when
complete: finished scenes are skipped on a rerun, an interrupted one is redone.
"""
import json
import os
import shutil

import numpy as np

from .objects import object_pool
from .render import DepthRenderer, add_depth_noise, camera_intrinsics, look_at, shade

FACTOR_DEPTH = 1000.0  # depth PNGs in millimetres, as GraspNet-1B
TABLE_SIZE = (1.0, 1.0, 0.02)
SCENE_SPLITS = (("seen", 0, 130), ("similar", 130, 160), ("novel", 160, 190))
NUM_SCENES = 190


def object_split_of_scene(scene_id):
    """Which objects a scene holds: "seen" (0-129), "similar" (130-159) or
    "novel" (160-189), as GraspNet-1B's train/test_seen, test_similar and
    test_novel scenes."""
    for split, lo, hi in SCENE_SPLITS:
        if lo <= scene_id < hi:
            return split
    raise ValueError(f"scene id must be in [0, {NUM_SCENES}), got {scene_id!r}")


def parse_scene_ids(spec):
    """"0-9,100,130-131" -> [0, ..., 9, 100, 130, 131] (sorted, unique); also
    accepts an int or a list of ints."""
    if isinstance(spec, (int, np.integer)):
        ids = [int(spec)]
    elif isinstance(spec, str):
        ids = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = part.split("-")
                    if int(b) < int(a):
                        raise ValueError
                    ids += range(int(a), int(b) + 1)
                else:
                    ids.append(int(part))
            except ValueError:
                raise ValueError(f"scenes: cannot parse {part!r} in {spec!r} (use e.g. 0-99,130)") from None
    else:
        ids = [int(s) for s in spec]
    if not ids:
        raise ValueError(f"scenes: no scene ids in {spec!r}")
    for s in ids:
        object_split_of_scene(s)
    return sorted(set(ids))


def table_mesh():
    """The table: a 1 m x 1 m x 2 cm slab whose top face is z = 0."""
    from trimesh import creation

    t = creation.box(extents=TABLE_SIZE)
    t.apply_translation([0, 0, -TABLE_SIZE[2] / 2])
    return t


def hemisphere_views(n_views, rng, target=(0.0, 0.0, 0.0)):
    """n_views camera -> table poses on an arc of the upper hemisphere, each
    looking at ``target``: azimuth over 180 degrees from a random start,
    elevation 35 -> 70 degrees, distance 0.55-0.7 m."""
    if not (isinstance(n_views, (int, np.integer)) and n_views >= 1):
        raise ValueError(f"n_views must be an integer >= 1, got {n_views!r}")
    t = np.linspace(0.0, 1.0, n_views)
    az = rng.uniform(0, 2 * np.pi) + np.pi * t
    el = np.radians(35 + 35 * t)
    dist = rng.uniform(0.55, 0.7)
    target = np.asarray(target, dtype=np.float64)
    eyes = target + dist * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
    return np.stack([look_at(e, target) for e in eyes])


_STABLE = {}


def stable_poses(mesh):
    """trimesh's stable resting poses of a mesh and their probabilities
    (cached per process, keyed by the mesh's vertices and faces)."""
    import hashlib

    import trimesh

    key = hashlib.sha1(np.ascontiguousarray(mesh.vertices).tobytes() +
                       np.ascontiguousarray(mesh.faces).tobytes()).hexdigest()
    if key not in _STABLE:
        T, p = trimesh.poses.compute_stable_poses(mesh)
        if len(T) == 0:  # degenerate hull: rest it as it is
            T, p = np.eye(4)[None], np.ones(1)
        _STABLE[key] = (np.asarray(T), np.asarray(p) / np.sum(p))
    return _STABLE[key]


def place_objects(meshes, rng, workspace=0.15, tries=100):
    """Rests each mesh on the table (z = 0) in a stable pose with random yaw
    and position in [-workspace, workspace]^2, without interpenetration.
    Returns (kept indices into meshes, their 4x4 model -> table poses)."""
    import trimesh

    # One collision manager per object: its mesh's BVH is built once, each try only moves it,
    # and a placed object keeps its manager (in_collision_single(m, T) on one shared manager
    # built the BVH on every try and again on acceptance: ~70 % of placement time).
    placed, kept, poses = [], [], []
    for i, m in enumerate(meshes):
        T_rest, prob = stable_poses(m)
        candidate = None
        for _ in range(tries):
            T = T_rest[rng.choice(len(T_rest), p=prob)].copy()
            yaw = trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), [0, 0, 1])
            T = yaw @ T
            v = m.vertices @ T[:3, :3].T + T[:3, 3]
            lo, hi = v.min(0), v.max(0)
            T[:3, 3] += [rng.uniform(-workspace, workspace) - (lo[0] + hi[0]) / 2,
                         rng.uniform(-workspace, workspace) - (lo[1] + hi[1]) / 2, -lo[2]]
            if candidate is None:
                candidate = trimesh.collision.CollisionManager()
                candidate.add_object(str(i), m, transform=T)
            else:
                candidate.set_transform(str(i), T)
            if not any(candidate.in_collision_other(other) for other in placed):
                placed.append(candidate)
                kept.append(i)
                poses.append(T)
                break
    return kept, poses


def write_annotation_xml(path, obj_ids, poses, names):
    """graspnetAPI's ``annotations/<ann>.xml``: per object its id, name, model
    path, position and unit quaternion (w, x, y, z) of the model -> camera
    pose, with 4 decimals as graspnetAPI's xmlWriter writes them."""
    from xml.etree import ElementTree as ET

    from trimesh.transformations import quaternion_from_matrix

    top = ET.Element("scene")
    for oid, T, name in zip(obj_ids, poses, names):
        obj = ET.SubElement(top, "obj")
        ET.SubElement(obj, "obj_id").text = str(oid)
        ET.SubElement(obj, "obj_name").text = name
        ET.SubElement(obj, "obj_path").text = f"models/{oid:03d}/nontextured.ply"
        ET.SubElement(obj, "pos_in_world").text = "{:.4f} {:.4f} {:.4f}".format(*T[:3, 3])
        ET.SubElement(obj, "ori_in_world").text = "{:.4f} {:.4f} {:.4f} {:.4f}".format(*quaternion_from_matrix(T))
    ET.indent(top, space="    ")
    ET.ElementTree(top).write(path, encoding="unicode")


def _write_png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


_MODELS = {}


def _model(root, obj_id):
    """models/<id>/nontextured.ply (cached per process by path, size and mtime)."""
    import trimesh

    path = os.path.join(root, "models", f"{obj_id:03d}", "nontextured.ply")
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _MODELS:
        _MODELS[key] = trimesh.load(path, process=False)
    return _MODELS[key]


def generate_scene(root, scene_id, settings, objects_by_split, names=None):
    """Writes one scene's camera folder (and object_id_list.txt). Meshes are
    read back from root/models, so the rendered geometry is exactly the stored
    one. Returns the number of frames written (0 when already there)."""
    camera = settings["camera"]
    scene_dir = os.path.join(root, "scenes", f"scene_{scene_id:04d}")
    final = os.path.join(scene_dir, camera)
    if os.path.isdir(final):
        return 0
    rng = np.random.default_rng([settings["seed"], scene_id])
    candidates = objects_by_split[object_split_of_scene(scene_id)]
    lo, hi = settings["objects_per_scene"]
    n = min(int(rng.integers(lo, hi + 1)), len(candidates))
    chosen = [int(c) for c in rng.choice(candidates, size=n, replace=False)]
    meshes = [_model(root, o) for o in chosen]
    kept, poses = place_objects(meshes, rng, workspace=settings["workspace"])
    obj_ids = [chosen[k] for k in kept]
    meshes = [meshes[k] for k in kept]
    placed = [m.copy().apply_transform(T) for m, T in zip(meshes, poses)]
    views = hemisphere_views(settings["views"], rng)
    W, H = settings["width"], settings["height"]
    K = camera_intrinsics(W, H)
    renderer = DepthRenderer([table_mesh()] + placed)
    label_of_hit = np.array([0] + [o + 1 for o in obj_ids], dtype=np.uint8)

    os.makedirs(scene_dir, exist_ok=True)
    tmp = os.path.join(scene_dir, f".{camera}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted run
    for sub in ("depth", "label", "meta", "rgb", "annotations"):
        os.makedirs(os.path.join(tmp, sub))
    ids_txt = os.path.join(scene_dir, "object_id_list.txt")
    with open(ids_txt + ".tmp", "w") as f:
        f.write("".join(f"{o}\n" for o in obj_ids))
    os.replace(ids_txt + ".tmp", ids_txt)
    np.save(os.path.join(tmp, "camK.npy"), K)
    np.save(os.path.join(tmp, "camera_poses.npy"), np.linalg.inv(views[0]) @ views)
    np.save(os.path.join(tmp, "cam0_wrt_table.npy"), views[0])
    import scipy.io

    obj_poses = np.stack(poses) if poses else np.zeros((0, 4, 4))
    for ann, T in enumerate(views):
        depth, hit, normals = renderer.render(T, K, W, H)
        if settings["noise_sigma"] > 0 or settings["grazing_deg"] < 90:
            depth = add_depth_noise(depth, normals, T, K, rng, sigma=settings["noise_sigma"],
                                    grazing_deg=settings["grazing_deg"])
        name = f"{ann:04d}"
        _write_png(os.path.join(tmp, "depth", name + ".png"), np.round(depth * FACTOR_DEPTH).astype(np.uint16))
        _write_png(os.path.join(tmp, "label", name + ".png"), np.where(hit >= 0, label_of_hit[hit], 0).astype(np.uint8))
        _write_png(os.path.join(tmp, "rgb", name + ".png"), shade(depth, normals, T, K))
        cam_poses = np.linalg.inv(T) @ obj_poses  # model -> this camera
        scipy.io.savemat(os.path.join(tmp, "meta", name + ".mat"), {
            "cls_indexes": np.array([o + 1 for o in obj_ids], dtype=np.float64).reshape(1, -1),
            "poses": np.ascontiguousarray(cam_poses[:, :3, :].transpose(1, 2, 0)),
            "intrinsic_matrix": K,
            "factor_depth": np.array([[FACTOR_DEPTH]]),
        })
        write_annotation_xml(os.path.join(tmp, "annotations", name + ".xml"), obj_ids, cam_poses,
                             [(names or {}).get(o, f"{o:03d}") for o in obj_ids])
    os.replace(tmp, final)
    return len(views)


MODEL_MAX_EDGE = 0.004  # metres between the written models' vertices at most


def scan_like(mesh, max_edge=MODEL_MAX_EDGE):
    """The same surface with its triangles split until no edge is longer than
    ``max_edge``: vertices cover the surface as a scanned model's do, which
    graspnetAPI's evaluator relies on (it takes an object's points from the
    PLY's vertices; a box's 8 corners would leave its faces empty)."""
    import trimesh

    v, f = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge, max_iter=20)
    return trimesh.Trimesh(v, f, process=False)


def _write_models(root, pool):
    """models/<id>/nontextured.ply (+ textured.obj, the same geometry without
    a texture), each written once, with vertices at most ``MODEL_MAX_EDGE``
    apart (``scan_like``)."""
    for o in pool:
        d = os.path.join(root, "models", f"{o.obj_id:03d}")
        if os.path.exists(os.path.join(d, "nontextured.ply")) and os.path.exists(os.path.join(d, "textured.obj")):
            continue
        os.makedirs(d, exist_ok=True)
        mesh = scan_like(o.mesh)
        for name in ("textured.obj", "nontextured.ply"):  # the .ply last: it marks the model as complete
            tmp = os.path.join(d, "tmp_" + name)
            mesh.export(tmp)
            os.replace(tmp, os.path.join(d, name))


CONTENT_KEYS = ("seed", "per_category", "user_meshes", "user_scale", "objects_per_scene", "workspace", "views",
                "width", "height", "noise_sigma", "grazing_deg", "camera")


def _worker_scene(args):
    return args[1], generate_scene(*args)


def generate_scenes(root, scenes="0-189", views=256, width=1280, height=720, seed=0, per_category=2,
                    objects_per_scene=(3, 10), workspace=0.15, noise_sigma=0.0, grazing_deg=90.0,
                    user_meshes=None, user_scale=1.0, camera="realsense", workers=1, progress=True):
    """Writes (or completes) a synthetic GraspNet-1B-layout dataset under
    ``root``; returns a summary dict (also in root/synthetic.json).

    scenes: ids in [0, 190) as "0-99,130" or a list. views: annotations per
    scene (GraspNet-1B: 256). width, height: image size (D435 intrinsics scaled).
    noise_sigma (m) and grazing_deg: depth noise (defaults: none). per_category:
    objects per category and split in the pool; user_meshes: a folder of extra
    (seen) meshes, user_scale its unit. workers: processes rendering scenes.

    Rerunning with the same content settings skips finished scenes; different
    content settings for an existing root are refused."""
    from tqdm import tqdm

    ids = parse_scene_ids(scenes)
    lo, hi = objects_per_scene
    if not (1 <= lo <= hi):
        raise ValueError(f"objects_per_scene must be (lo, hi) with 1 <= lo <= hi, got {objects_per_scene!r}")
    if camera != "realsense":
        raise ValueError(f"camera: only 'realsense' (the D435 intrinsics) is generated, got {camera!r}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not (isinstance(views, (int, np.integer)) and views >= 1):
        raise ValueError(f"views must be an integer >= 1, got {views!r}")
    camera_intrinsics(width, height)  # validates the size
    if not workspace > 0:
        raise ValueError(f"workspace must be > 0, got {workspace!r}")
    if not (np.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be finite and >= 0, got {noise_sigma!r}")
    if not 0 < grazing_deg <= 90:
        raise ValueError(f"grazing_deg must be in (0, 90], got {grazing_deg!r}")
    settings = {"seed": int(seed), "per_category": int(per_category),
                "user_meshes": os.path.abspath(user_meshes) if user_meshes else None, "user_scale": float(user_scale),
                "objects_per_scene": [int(lo), int(hi)], "workspace": float(workspace), "views": int(views),
                "width": int(width), "height": int(height), "noise_sigma": float(noise_sigma),
                "grazing_deg": float(grazing_deg), "camera": camera}
    os.makedirs(root, exist_ok=True)
    manifest = os.path.join(root, "synthetic.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            old = json.load(f)
        diff = [k for k in CONTENT_KEYS if old.get("settings", {}).get(k) != settings[k]]
        if diff:
            raise ValueError(f"{root} was generated with other settings ({', '.join(diff)}); "
                             "use a new output folder or the same settings")
    elif any(os.path.isdir(os.path.join(root, d)) and os.listdir(os.path.join(root, d)) for d in ("models", "scenes")):
        raise ValueError(f"{root} holds models/ or scenes/ without {os.path.basename(manifest)}: not a dataset "
                         "this generator wrote (a real GraspNet-1B copy?); use a new output folder")
    pool = object_pool(seed=seed, per_category=per_category, user_meshes=user_meshes, user_scale=user_scale)
    if len(pool) > 254:
        raise ValueError(f"the object pool has {len(pool)} objects; label PNGs (uint8, id + 1) hold at most 254")
    info = {"generator": "pcgrasp generate-scenes", "settings": settings,
            "objects": [{"id": o.obj_id, "category": o.category, "split": o.split} for o in pool]}
    # the manifest first: a run interrupted while writing models is resumed
    # only with these settings
    with open(manifest + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.replace(manifest + ".tmp", manifest)
    _write_models(root, pool)
    objects_by_split = {s: [o.obj_id for o in pool if o.split == s] for s in ("seen", "similar", "novel")}

    todo = [s for s in ids if not os.path.isdir(os.path.join(root, "scenes", f"scene_{s:04d}", camera))]
    names = {o.obj_id: o.category for o in pool}
    jobs = [(root, s, settings, objects_by_split, names) for s in todo]
    frames = 0
    bar = tqdm(total=len(ids), initial=len(ids) - len(todo), desc="scenes", unit="scene", disable=not progress)
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            frames += _worker_scene(job)[1]
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            for fut in as_completed([ex.submit(_worker_scene, j) for j in jobs]):
                frames += fut.result()[1]
                bar.update()
    bar.close()
    return {"root": root, "scenes": len(ids), "generated_scenes": len(todo), "skipped_scenes": len(ids) - len(todo),
            "frames_written": frames, "objects": len(pool)}
