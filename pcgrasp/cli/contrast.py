"""GraspContrast pretraining commands:

    pcgrasp contrast-pretrain --config contrast_demo [fne=false] [augment=false] [loss.gamma=0.02 ...]
    pcgrasp contrast-evaluate --config contrast_demo [--backbone runs/.../backbone.pt]
    pcgrasp contrast-report --config contrast_demo     # log.csv -> table.md + curves.png
    pcgrasp contrast-report --runs RUN1 RUN2 --out DIR # last epochs side by side -> DIR/ablations.md

The synthetic scenes are generated under ``data.root`` when missing; point
``data.root`` at a real GraspNet-1B root to pretrain on it. ``fne=false`` and
``augment=false`` are the paper's two ablations. Under torchrun the
pretraining runs data-parallel (DDP).
"""
import json
import os

from .common import existing_file, load_cfg, with_config


def register(sub):
    """Adds ``pcgrasp contrast-pretrain|contrast-evaluate|contrast-report``."""
    p = with_config(sub.add_parser("contrast-pretrain", help="GraspContrast two-view pretraining -> backbone.pt"),
                    "contrast_demo", resume=True)
    p.set_defaults(func=cmd_pretrain)
    e = with_config(sub.add_parser("contrast-evaluate", help="feature-match recall of a backbone on held-out pairs"),
                    "contrast_demo")
    e.add_argument("--backbone", default=None, type=existing_file, help="backbone.pt (default: <train.out>/backbone.pt)")
    e.add_argument("--split", default=None, help="scene split of the pairs (default: data.val_split)")
    e.set_defaults(func=cmd_evaluate)
    r = with_config(sub.add_parser("contrast-report", help="table.md + curves.png of a pretraining run's log"),
                    "contrast_demo")
    r.add_argument("--out", default=None, help="folder for table.md / curves.png (default: <train.out>)")
    r.add_argument("--runs", nargs="+", default=None,
                   help="instead: run folders to compare (ablations) -> <out>/ablations.md")
    r.set_defaults(func=cmd_report)


def cmd_pretrain(a):
    from ..train import contrast

    cfg = load_cfg(a)
    try:
        contrast.check_config(cfg)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    print(contrast.pretrain(cfg, resume=a.resume, progress=not a.quiet))
    return 0


def cmd_evaluate(a):
    from ..train import contrast

    cfg = load_cfg(a)
    print(json.dumps(contrast.evaluate_backbone(cfg, a.backbone, a.split), indent=1))
    return 0


def cmd_report(a):
    from ..train import contrast

    cfg = load_cfg(a)
    out = a.out or cfg["train"]["out"]
    os.makedirs(out, exist_ok=True)
    if a.runs:
        table = contrast.compare_runs(a.runs)
        with open(os.path.join(out, "ablations.md"), "w") as f:
            f.write(table + "\n")
        print(table)
        return 0
    print(contrast.report(os.path.join(cfg["train"]["out"], "log.csv"), out, cfg))
    return 0
