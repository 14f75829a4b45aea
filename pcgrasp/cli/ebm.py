"""Energy-based grasp planner commands (Dex-Net-layout depth crops):

    pcgrasp ebm generate --out data/dexnet --images 200
    pcgrasp ebm train --config ebm_demo [train.tau=100 ...]
    pcgrasp ebm sweep --config ebm_demo          # tau in {1, 10, 100, 1000}: table.md + PNG
    pcgrasp ebm refine --config ebm_demo [--checkpoint model.pt]

The synthetic default is generated under ``data.root`` when missing; point
``data.root`` at a real Dex-Net 2.0 folder to train on it.
"""
import json

from .common import existing_file, float_at_least, int_at_least, load_cfg, with_config


def register(sub):
    """Adds ``pcgrasp ebm <generate|train|sweep|refine>``."""
    ebm = sub.add_parser("ebm", help="energy-based grasp planner (Dex-Net-layout depth crops)")
    cmds = ebm.add_subparsers(dest="ebm_cmd", required=True)
    g = cmds.add_parser("generate", help="write the synthetic Dex-Net 2.0-layout dataset")
    g.add_argument("--out", default="data/dexnet")
    g.add_argument("--images", type=int_at_least(1), default=200)
    g.add_argument("--grasps-per-image", type=int_at_least(1), default=40)
    g.add_argument("--noise-sigma", type=float_at_least(0), default=0.0, help="depth noise (m), 0 = none")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--quiet", action="store_true")
    with_config(cmds.add_parser("train", help="train one energy model (train.tau)"), "ebm_demo", resume=True)
    with_config(cmds.add_parser("sweep", help="train over sweep.taus; table + PNG"), "ebm_demo")
    r = with_config(cmds.add_parser("refine", help="refine random grasps by energy descent"), "ebm_demo")
    r.add_argument("--checkpoint", default=None, type=existing_file,
                   help="model.pt (default: the sweep's best alignment)")
    ebm.set_defaults(func=run)


def run(a):
    if a.ebm_cmd == "generate":
        from ..data.synthetic.dexnet import generate_dexnet

        print(json.dumps(generate_dexnet(a.out, a.images, a.seed, grasps_per_image=a.grasps_per_image,
                                         noise_sigma=a.noise_sigma, progress=not a.quiet), indent=1))
        return 0
    from ..train import ebm

    cfg = load_cfg(a)
    if a.ebm_cmd == "train":
        run_dir, m = ebm.train(cfg, resume=a.resume, progress=not a.quiet)
        print(run_dir)
        print(json.dumps(m, indent=1))
    elif a.ebm_cmd == "sweep":
        print(ebm.sweep(cfg, progress=not a.quiet)[1])
    elif a.ebm_cmd == "refine":
        ebm.refine(cfg, checkpoint=a.checkpoint, progress=not a.quiet)
    return 0
