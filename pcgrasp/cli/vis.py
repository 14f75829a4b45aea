"""``pcgrasp show``: pictures of what the pipelines write (a PNG by default, ``--serve`` for
the browser viewer):

    pcgrasp show grasps    --root ROOT --scene 100 --ann 0 --dump-dir RUN/dump [--top-k 50] [--min-score 0.1]
    pcgrasp show grasps    --root ROOT --scene 0 --ann 0            # the frame's labelled grasps (pcgrasp labels)
    pcgrasp show labels    --labels ROOT/grasp_label/003_labels.npz [--top-k 100] [--max-friction 0.4]
    pcgrasp show graspness --root ROOT --scene 0 --ann 0
    pcgrasp show ebm       --checkpoint RUN/tau_100/model.pt [--image 0] [--grasps 16] [--steps 50]
    pcgrasp show jepa      --checkpoint runs/train/<run>/model.pt [--split test] [--index 0]

ROOT is a GraspNet-1B-layout root (``pcgrasp generate-scenes`` / ``pcgrasp labels``, or the
detector demo's ``demo_out/detection/scenes``); a dump folder is what ``pcgrasp
evaluate-detector`` writes (``<run>/dump``). ``--out`` names the PNG (default
``show_<kind>.png`` in the working folder); its path is printed. ``--serve`` opens the
viser viewer on ``--host``:``--port`` instead.
"""
import argparse
import math
import os


from .common import int_at_least

_positive_int, _nonneg_int = int_at_least(1), int_at_least(0)


def _finite(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {s!r}")
    return v


def _output(p, kind):
    p.add_argument("--out", default=None, help=f"the PNG to write (default show_{kind}.png)")
    p.add_argument("--serve", action="store_true", help="open the browser viewer (viser) instead of writing a PNG")
    p.add_argument("--host", default="127.0.0.1", help="viewer host (with --serve)")
    p.add_argument("--port", type=_positive_int, default=8080, help="viewer port (with --serve)")


def _scene_args(p):
    p.add_argument("--root", required=True, help="a GraspNet-1B-layout root (holding scenes/)")
    p.add_argument("--scene", required=True, type=_nonneg_int, help="scene id")
    p.add_argument("--ann", type=_nonneg_int, default=0, help="annotation (frame) index (default 0)")
    p.add_argument("--camera", default="realsense")


def register(sub):
    """Adds ``pcgrasp show <grasps|labels|graspness|ebm|jepa>``."""
    show = sub.add_parser("show", help="draw grasps, labels, graspness, EBM or Point-JEPA grasps (PNG or viewer)")
    kinds = show.add_subparsers(dest="kind", required=True)
    g = kinds.add_parser("grasps", help="a scene frame's cloud with predicted (--dump-dir) or labelled grasps")
    _scene_args(g)
    g.add_argument("--dump-dir", default=None, help="evaluate-detector's dump folder (default: the frame's labelled "
                                                    "grasps, from pcgrasp labels)")
    g.add_argument("--top-k", type=_positive_int, default=50, help="draw the k best grasps (default 50)")
    g.add_argument("--min-score", type=_finite, default=None, help="draw only grasps with score >= this")
    _output(g, "grasps")
    lab = kinds.add_parser("labels", help="an object's grasp labels, coloured by friction coefficient")
    lab.add_argument("--labels", required=True, help="grasp_label/<obj>_labels.npz")
    lab.add_argument("--top-k", type=_positive_int, default=100, help="draw the k lowest-friction grasps")
    lab.add_argument("--max-friction", type=_finite, default=None, help="draw only grasps with mu <= this")
    lab.add_argument("--with-collision", action="store_true", help="include grasps that collide with the object")
    _output(lab, "labels")
    gn = kinds.add_parser("graspness", help="a scene frame's graspness as a heat map")
    _scene_args(gn)
    _output(gn, "graspness")
    e = kinds.add_parser("ebm", help="an EBM planner's refined candidate grasps on a synthetic depth view")
    e.add_argument("--checkpoint", required=True, help="an `ebm train` model.pt")
    e.add_argument("--image", type=_nonneg_int, default=0, help="held-out synthetic view index (as `ebm refine`)")
    e.add_argument("--grasps", type=_positive_int, default=16, help="random initial candidates")
    e.add_argument("--steps", type=_nonneg_int, default=50, help="energy-descent steps (0: the random candidates)")
    e.add_argument("--lr", type=_finite, default=0.05)
    e.add_argument("--top-k", type=_positive_int, default=None, help="draw the k lowest-energy candidates")
    e.add_argument("--seed", type=_nonneg_int, default=0)
    _output(e, "ebm")
    j = kinds.add_parser("jepa", help="a Point-JEPA object with its K predicted hand configurations")
    j.add_argument("--checkpoint", required=True, help="a `pcgrasp train` model.pt")
    j.add_argument("--split", default="test", choices=["train", "val", "test", "heldout"])
    j.add_argument("--index", type=_nonneg_int, default=0, help="grasp index within the split")
    j.add_argument("--root", default=None, help="the grasp dataset root (default: the checkpoint's data.root)")
    _output(j, "jepa")
    show.set_defaults(func=run)


def _need_file(path, arg):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{arg} {path}: no such file")


def _scene_checked(a):
    if not os.path.isdir(a.root) or not os.path.isdir(os.path.join(a.root, "scenes")):
        raise FileNotFoundError(f"--root {a.root}: not a GraspNet-1B-layout root (no scenes/ folder)")
    cam = os.path.join(a.root, "scenes", f"scene_{a.scene:04d}", a.camera)
    if not os.path.isdir(cam):
        raise FileNotFoundError(f"--scene {a.scene}: no folder {cam} (camera --camera {a.camera})")
    import numpy as np

    poses = os.path.join(cam, "camera_poses.npy")
    if os.path.exists(poses):
        n = len(np.load(poses))
        if a.ann >= n:
            raise ValueError(f"--ann {a.ann} is out of range: scene {a.scene} has frames 0-{n - 1}")


def build(a):
    """The ``Picture`` of the parsed ``pcgrasp show`` arguments."""
    from .. import vis

    if a.kind == "grasps":
        _scene_checked(a)
        if a.dump_dir is not None and not os.path.isdir(a.dump_dir):
            raise FileNotFoundError(f"--dump-dir {a.dump_dir}: no such folder")
        if a.dump_dir is not None:
            _need_file(vis.dump_path(a.dump_dir, a.scene, a.ann, a.camera), "--dump-dir: the frame's dump")
        return vis.scene_grasps_picture(a.root, a.scene, a.ann, dump_dir=a.dump_dir, camera=a.camera, top_k=a.top_k,
                                        min_score=a.min_score)
    if a.kind == "labels":
        _need_file(a.labels, "--labels")
        return vis.object_labels_picture(a.labels, top_k=a.top_k, max_friction=a.max_friction,
                                         with_collision=a.with_collision)
    if a.kind == "graspness":
        _scene_checked(a)
        from ..labels.scene_labels import graspness_path

        _need_file(graspness_path(a.root, a.scene, a.camera, a.ann), "--root: the frame's graspness")
        return vis.graspness_picture(a.root, a.scene, a.ann, a.camera)
    if a.kind == "ebm":
        _need_file(a.checkpoint, "--checkpoint")
        return _ebm(a)
    if a.kind == "jepa":
        _need_file(a.checkpoint, "--checkpoint")
        return _jepa(a)
    raise ValueError(f"unknown kind {a.kind!r}")


def _ebm(a):
    import numpy as np
    import torch

    from ..data.synthetic.dexnet import make_view
    from ..planning import grasp_energy, refine_grasps
    from ..train.ebm import load_model
    from ..vis import ebm_picture

    if not a.lr > 0:
        raise ValueError(f"--lr must be > 0, got {a.lr}")
    try:
        model, cfg = load_model(a.checkpoint)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a bad --checkpoint
        raise ValueError(f"--checkpoint {a.checkpoint}: not an `ebm train` model.pt ({e})") from None
    d = cfg.get("data", {})
    size, window = d.get("generate", {}).get("image_size", 128), d.get("crop_window", 64)
    first = cfg.get("refine", {}).get("first_image", 100000)
    view = make_view(first + a.image, cfg.get("seed", 0), size)
    depth = torch.from_numpy(view["depth"])
    valid = view["depth"][view["depth"] > 0]
    bounds = [[0, size - 1], [0, size - 1], [float(valid.min()) - 0.01, float(valid.max())], [0, math.pi]]
    rng = np.random.default_rng(a.seed)
    n = a.grasps
    y0 = torch.tensor(np.stack([rng.uniform(*bounds[0], n), rng.uniform(*bounds[1], n), rng.uniform(*bounds[2], n),
                                rng.uniform(0, math.pi, n)], 1), dtype=torch.float32)
    if a.steps:
        traj, energies = refine_grasps(model, depth, y0, a.steps, a.lr, bounds, model.crop_size, window)
        y, e = traj[-1], energies[-1]
    else:
        with torch.no_grad():
            y, e = y0, grasp_energy(model.eval(), depth, y0, model.crop_size, window)
    shown = len(y) if a.top_k is None else min(a.top_k, len(y))
    title = (f"EBM view {a.image} ({view['category']}): {shown} of {len(y)} candidates after {a.steps} descent "
             "steps, lowest energy first")
    return ebm_picture(view["depth"], view["K"], view["camera_pose"], y.numpy(), e.numpy(), top_k=a.top_k,
                       title=title)


def _jepa(a):
    import torch

    from ..data.grasps import GraspDataset
    from ..data.splits import load_manifest
    from ..train.engine import read_checkpoint
    from ..train.jepa import build_grasp_model
    from ..vis import jepa_picture

    state = read_checkpoint(a.checkpoint, ("model", "cfg", "train"), "`pcgrasp train` model.pt (--checkpoint)")
    cfg, t = state["cfg"], state["train"]
    model = build_grasp_model({**cfg, "train": {**t, "init": "scratch"}}, "scratch", t["head"])
    model.load_state_dict(state["model"])
    d = cfg["data"]
    root = a.root or d["root"]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--root {root}: no such grasp dataset folder")
    man = load_manifest(d["splits"], t["pack"], t["budget"])
    if not man.get(a.split):
        raise ValueError(f"--split {a.split}: the checkpoint's split manifest has no {a.split} objects")
    ds = GraspDataset(root, set(man[a.split]), d["points"], seed=cfg.get("seed", 0))
    if a.index >= len(ds):
        raise ValueError(f"--index {a.index} is out of range: split {a.split} has {len(ds)} grasps (0-{len(ds) - 1})")
    pts, pose, joints = ds[a.index]
    model.eval()
    with torch.no_grad():
        pred, logits = model(pts[None], pose[None])
    obj = ds.ids[int(ds.obj[a.index])]
    return jepa_picture(pts.numpy(), pose.numpy(), pred[0].numpy(), logits[0].numpy(), joints.numpy(),
                        title=f"{obj}, grasp {a.index} of {a.split}: {pred.shape[1]} hypotheses (grey: recorded)")


def run(a):
    pic = build(a)
    if a.serve:
        try:
            from ..vis import viewer

            viewer.serve(pic, host=a.host, port=a.port, block=True)
        except ImportError as e:  # viser missing (the viewer says how to install it)
            raise OSError(f"--serve: {e}") from None
        return 0
    from ..vis import render_png

    out = a.out or f"show_{a.kind}.png"
    if os.path.isdir(out):
        raise IsADirectoryError(f"--out {out} is a folder (give the PNG's path)")
    print(render_png(pic, out))
    return 0
