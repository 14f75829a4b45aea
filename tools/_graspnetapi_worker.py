"""graspnetAPI side of tools/graspnet_parity.py. Runs in the scratch venv made by
tools/graspnetapi-venv.sh (graspnetAPI 1.2.11 on PYTHONPATH); imports only
graspnetAPI, numpy and the standard library.

    python _graspnetapi_worker.py cache  ROOT OBJ_IDS                 dex_models/<id>.pkl caches
    python _graspnetapi_worker.py eval   ROOT DUMP SCENE OUT.npz [--anns 0,1,2] [--camera realsense]

eval: without --anns, GraspNetEval(ROOT, camera, 'custom').eval_scene(SCENE,
DUMP, return_list=True) (needs the scene's 256 annotations and dumps) is timed
and its results are kept; with --anns, graspnetAPI's own per-frame steps
(get_scene_models, voxel_sample_points, create_table_points, get_model_poses,
width clipping, eval_grasp) run for those annotations only, as eval_scene runs
them for each of its 256. Then, untimed, per evaluated grasp: graspnetAPI's
object assignment, empty flag, and dex-net's contacts (close_fingers), contact
normals and friction-cone angles, for the parity report's cause breakdown.
Writes OUT.npz (arrays per frame) and prints one JSON line with the timings.
"""
import contextlib
import json
import os
import pickle
import sys
import time

import numpy as np

FRICTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)


def _precision(scores, top_k=50):
    """graspnetAPI's precision@k table from scores in ranked order (own code, same arithmetic)."""
    s = np.asarray(scores, dtype=np.float64)
    acc = np.zeros((top_k, len(FRICTIONS)))
    for j, f in enumerate(FRICTIONS):
        ok = np.cumsum((s <= f) & (s > 0))
        for k in range(top_k):
            acc[k, j] = (ok[min(k, len(s) - 1)] if len(s) else 0) / (k + 1)
    return acc


def cache(root, obj_ids):
    from graspnetAPI.utils.eval_utils import load_dexnet_model

    os.makedirs(os.path.join(root, "dex_models"), exist_ok=True)
    out = {}
    for o in obj_ids:
        path = os.path.join(root, "dex_models", "%03d.pkl" % o)
        if os.path.exists(path):
            continue
        t0 = time.perf_counter()
        model = load_dexnet_model(os.path.join(root, "models", "%03d" % o, "textured"))
        with open(path + ".tmp", "wb") as f:
            pickle.dump(model, f)
        os.replace(path + ".tmp", path)
        out[o] = time.perf_counter() - t0
    print(json.dumps({"sdf_load_s": out}))


def _diagnose(grasps, model_sampled, dexmodels, poses, table_trans, config):
    """Per grasp of one frame's evaluated list (rows as eval_grasp returned them):
    graspnetAPI's object (nearest voxel-sampled model point to t), empty flag,
    dex-net contacts / normals and the two friction-cone angles (degrees)."""
    from graspnetAPI.utils.eval_utils import collision_detection, compute_closest_points, transform_points

    n = len(grasps)
    out = {"object": np.full(n, -1), "empty": np.zeros(n, bool), "dex_none": np.zeros(n, bool),
           "found": np.zeros((n, 2), bool), "contact": np.full((n, 2, 3), np.nan),
           "normal": np.full((n, 2, 3), np.nan), "alpha_deg": np.full((n, 2), np.nan)}
    if n == 0:
        return out
    trans = [transform_points(m, p) for m, p in zip(model_sampled, poses)]
    seg = np.concatenate([np.full(len(m), i) for i, m in enumerate(trans)])
    obj = seg[compute_closest_points(grasps[:, 13:16], np.concatenate(trans))]
    out["object"] = obj
    per_obj = [grasps[obj == i] for i in range(len(trans))]
    scene = np.concatenate(trans + [table_trans])
    _, empty_list, dex_list = collision_detection(per_obj, trans, dexmodels, poses, scene, outlier=0.05,
                                                  return_dexgrasps=True)
    for i in range(len(trans)):
        rows = np.flatnonzero(obj == i)
        for r, e, g in zip(rows, empty_list[i], dex_list[i]):
            out["empty"][r] = bool(e)
            if g is None:
                out["dex_none"][r] = True
                continue
            found, contacts = g.close_fingers(dexmodels[i], check_approach=False)
            for c in (0, 1):
                ct = contacts[c] if contacts is not None else None
                if ct is None:
                    continue
                out["found"][r, c] = ct.point is not None and ct.normal is not None
                out["contact"][r, c] = np.asarray(ct.point, dtype=np.float64).ravel()
                if ct.normal is not None:
                    out["normal"][r, c] = np.asarray(ct.normal, dtype=np.float64).ravel()
            if out["found"][r].all():
                p, q = out["contact"][r]
                d = q - p
                for c, (a, b) in enumerate(((p, q), (q, p))):
                    nn = out["normal"][r, c]
                    proj = abs(nn @ (b - a)) / np.linalg.norm(nn)
                    out["alpha_deg"][r, c] = np.degrees(np.arccos(np.clip(proj / np.linalg.norm(d), -1, 1)))
    return out


def evaluate(root, dump, scene, out_path, anns=None, camera="realsense"):
    from graspnetAPI.graspnet_eval import GraspNetEval
    from graspnetAPI.utils.config import get_config
    from graspnetAPI.utils.eval_utils import create_table_points, eval_grasp, transform_points, voxel_sample_points
    from graspnetAPI.grasp import GraspGroup

    ge = GraspNetEval(root, camera, "custom")
    timings = {}
    t0 = time.perf_counter()
    model_list, dexmodel_list, obj_list = ge.get_scene_models(scene, ann_id=0)
    model_sampled = [voxel_sample_points(m, 0.008) for m in model_list]
    timings["scene_models_s"] = time.perf_counter() - t0
    table = create_table_points(1.0, 1.0, 0.05, dx=-0.5, dy=-0.5, dz=-0.05, grid_size=0.008)
    frames = {}
    if anns is None:
        anns = list(range(256))
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # its progress line: keep stdout for our JSON
            acc, gl, sl, cl = ge.eval_scene(scene, dump, return_list=True)
        timings["eval_scene_s"] = time.perf_counter() - t0
        print("", file=sys.stderr)
        for a in anns:
            frames[a] = (np.asarray(gl[a]).reshape(-1, 17), np.asarray(sl[a], dtype=np.float64),
                         np.asarray(cl[a], dtype=bool), np.asarray(acc[a]))
    else:
        config = get_config()
        t_frames = []
        for a in anns:
            t0 = time.perf_counter()
            gg = GraspGroup().from_npy(os.path.join(dump, "scene_%04d" % scene, camera, "%04d.npy" % a))
            _, pose_list, camera_pose, align_mat = ge.get_model_poses(scene, a)
            table_trans = transform_points(table, np.linalg.inv(np.matmul(align_mat, camera_pose)))
            arr = gg.grasp_group_array
            arr[arr[:, 1] < 0, 1] = 0
            arr[arr[:, 1] > 0.1, 1] = 0.1
            gg.grasp_group_array = arr
            g_l, s_l, c_l = eval_grasp(gg, model_sampled, dexmodel_list, pose_list, config, table=table_trans,
                                       voxel_size=0.008, TOP_K=50)
            keep = [i for i, x in enumerate(g_l) if len(x)]
            if keep:
                g = np.concatenate([g_l[i] for i in keep])
                s = np.concatenate([s_l[i] for i in keep])
                c = np.concatenate([c_l[i] for i in keep])
                order = np.argsort(-g[:, 0])  # eval_scene's ranking (same call)
                g, s, c = g[order], s[order], c[order]
            else:
                g, s, c = np.zeros((0, 17)), np.zeros(0), np.zeros(0, bool)
            t_frames.append(time.perf_counter() - t0)
            frames[a] = (g, s, c, _precision(s))
        timings["frames_s"] = t_frames
    # untimed diagnostics
    config = get_config()
    t0 = time.perf_counter()
    save = {"obj_ids": np.asarray(obj_list), "anns": np.asarray(anns)}
    for a in anns:
        g, s, c, acc = frames[a]
        _, pose_list, camera_pose, align_mat = ge.get_model_poses(scene, a)
        table_trans = transform_points(table, np.linalg.inv(np.matmul(align_mat, camera_pose)))
        d = _diagnose(g, model_sampled, dexmodel_list, pose_list, table_trans, config)
        save["grasps_%d" % a] = g
        save["score_%d" % a] = s
        save["collision_%d" % a] = c
        save["accuracy_%d" % a] = acc
        save["poses_%d" % a] = np.stack(pose_list) if pose_list else np.zeros((0, 4, 4))
        for k, v in d.items():
            save["%s_%d" % (k, a)] = v
    timings["diagnostics_s"] = time.perf_counter() - t0
    np.savez_compressed(out_path, **save)
    print(json.dumps({"scene": scene, "timings": timings, "numpy": np.__version__}))


def main(argv):
    if argv[0] == "cache":
        cache(argv[1], [int(x) for x in argv[2].split(",") if x])
    elif argv[0] == "eval":
        anns = None
        camera = "realsense"
        rest = argv[5:]
        while rest:
            if rest[0] == "--anns":
                anns = [int(x) for x in rest[1].split(",")]
            elif rest[0] == "--camera":
                camera = rest[1]
            else:
                raise SystemExit("unknown option %r" % rest[0])
            rest = rest[2:]
        evaluate(argv[1], argv[2], int(argv[3]), argv[4], anns=anns, camera=camera)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
