"""Cluttered-scene commands: the synthetic GraspNet-1B-layout generator.

    pcgrasp generate-scenes                       # demo size: 14 scenes x 16 views, 640x360
    pcgrasp generate-scenes --size full           # GraspNet-1B size: 190 scenes x 256 views, 1280x720
    pcgrasp generate-scenes --out DIR --scenes 0-99 --views 64 --noise --workers 2

Finished scenes are skipped on a rerun; see pcgrasp.data.synthetic.scenes.
"""
import time

from .common import existing_dir, float_at_least, int_at_least

SIZES = {
    "demo": {"scenes": "0-7,100-101,130-131,160-161", "views": 16, "width": 640, "height": 360},
    "full": {"scenes": "0-189", "views": 256, "width": 1280, "height": 720},
}


def _range(text):
    try:
        lo, hi = (int(x) for x in text.split("-")) if "-" in text else (int(text),) * 2
    except ValueError:
        raise SystemExit(f"--objects: expected LO-HI like 3-10, got {text!r}") from None
    return lo, hi


def cmd_generate_scenes(a):
    from ..data.synthetic.scenes import generate_scenes

    size = SIZES[a.size]
    kw = {k: getattr(a, k) if getattr(a, k) is not None else size[k] for k in size}
    sigma, grazing = (a.noise_sigma, a.grazing_deg) if a.noise else (0.0, 90.0)
    t0 = time.time()
    try:
        s = generate_scenes(a.out, seed=a.seed, per_category=a.per_category, objects_per_scene=_range(a.objects),
                            noise_sigma=sigma, grazing_deg=grazing, user_meshes=a.user_meshes,
                            user_scale=a.user_scale, workers=a.workers, progress=not a.quiet, **kw)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None
    dt = time.time() - t0
    rate = f", {s['frames_written'] / dt:.2f} frames/s" if s["frames_written"] else ""
    print(f"[generate-scenes] {s['root']}: {s['generated_scenes']} scenes generated, {s['skipped_scenes']} already "
          f"there, {s['frames_written']} frames of {kw['width']}x{kw['height']} in {dt:.1f} s{rate}; "
          f"{s['objects']} objects under models/")
    return 0


COMMANDS = ("generate-scenes",)


def register(sub):
    """Adds this pipeline's subcommands to the ``pcgrasp`` parser."""
    g = sub.add_parser("generate-scenes", help="write synthetic cluttered scenes in the GraspNet-1B layout")
    g.add_argument("--out", default="data/graspnet_synthetic", help="dataset root to write (or complete)")
    g.add_argument("--size", choices=sorted(SIZES), default="demo",
                   help="defaults for --scenes/--views/--width/--height: demo (14 scenes, 16 views, 640x360) "
                        "or full (190 scenes, 256 views, 1280x720)")
    g.add_argument("--scenes", default=None, help="scene ids, e.g. 0-99,130 (GraspNet-1B numbering 0-189)")
    g.add_argument("--views", type=int_at_least(1), default=None, help="annotations (camera views) per scene")
    g.add_argument("--width", type=int_at_least(1), default=None)
    g.add_argument("--height", type=int_at_least(1), default=None)
    g.add_argument("--objects", default="3-10", help="objects per scene, LO-HI")
    g.add_argument("--per-category", type=int_at_least(1), default=2, help="pool objects per category and split")
    g.add_argument("--user-meshes", default=None, type=existing_dir, help="folder of extra meshes (any trimesh format), used as seen")
    g.add_argument("--user-scale", type=float_at_least(0, strict=True), default=1.0, help="unit of the user meshes (0.001 for mm)")
    g.add_argument("--noise", action="store_true", help="sensor-like depth noise (Gaussian + grazing dropout)")
    g.add_argument("--noise-sigma", type=float_at_least(0), default=0.001, help="with --noise: Gaussian sigma in metres")
    g.add_argument("--grazing-deg", type=float, default=80.0, help="with --noise: drop rays beyond this incidence")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int_at_least(1), default=1, help="processes rendering scenes in parallel")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate_scenes)
