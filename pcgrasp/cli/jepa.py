"""Point-JEPA grasp-joint commands: synthetic data, splits, JEPA pretraining,
grasp fine-tuning, evaluation, the label-efficiency sweep and the demo.

    pcgrasp demo                                  # the main job (synthetic default)
    pcgrasp generate --out data/synthetic
    pcgrasp split --root data/synthetic/grasps --out data/synthetic/splits
    pcgrasp pretrain --config default [key=value ...]
    pcgrasp train --config default --init jepa --budget 0.1 --pack A --seed 0 --head wta
    pcgrasp evaluate --checkpoint runs/train/<run>/model.pt [--split test]
    pcgrasp sweep --config demo

``--config`` takes a YAML path or the name of a packaged config (default, demo).
Trailing ``key.sub=value`` arguments override the config. Under torchrun the
training commands run data-parallel (DDP).
"""
import json
import math
import os
import time

from .common import existing_file, float_at_least, int_at_least, load_cfg as _cfg, with_config


def metrics_table(results):
    keys = ["top_logit_rmse", "best_of_k_rmse", "selection_gap", "coverage@10", "coverage@15", "coverage@20",
            "diversity"]
    head = "| run | " + " | ".join(k.replace("_rmse", " RMSE (deg)").replace("selection_gap", "gap (deg)")
                                   .replace("diversity", "diversity (deg)") for k in keys) + " |"
    lines = [head, "|---|" + "---:|" * len(keys)]
    for name, m in results:
        cells = [f"{math.degrees(m[k]):.2f}" if ("rmse" in k or k in ("selection_gap", "diversity")) else f"{m[k]:.3f}"
                 for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_demo(a):
    from ..train.jepa import finetune, pretrain

    cfg = _cfg(a)
    t0 = time.time()
    print(f"[demo] synthetic data under {os.path.dirname(cfg['data']['root'])} (generated if missing)")
    enc = pretrain(cfg, progress=not a.quiet)
    print(f"[demo] JEPA pretraining done ({time.time() - t0:.0f} s): {enc}")
    results = []
    for init in ("jepa", "scratch"):
        for head in ("wta", "mse"):
            c = json.loads(json.dumps(cfg))
            c["train"].update(init=init, head=head)
            run, m = finetune(c, progress=not a.quiet)
            results.append((f"{init} + {head}", m))
            print(f"[demo] {init:>7} + {head}: top-logit RMSE {math.degrees(m['top_logit_rmse']):.2f} deg "
                  f"({time.time() - t0:.0f} s)")
    table = metrics_table(results)
    print("\nTest-split metrics (angles in degrees):\n")
    print(table)
    out = os.path.dirname(cfg["train"]["out"].rstrip("/")) or "."
    with open(os.path.join(out, "demo_metrics.md"), "w") as f:
        f.write(table + "\n")
    print(f"\n[demo] total {time.time() - t0:.0f} s; table also in {out}/demo_metrics.md")


COMMANDS = ("generate", "split", "pretrain", "train", "evaluate", "sweep", "demo")


def register(sub):
    """Adds this pipeline's subcommands to the ``pcgrasp`` parser."""
    g = sub.add_parser("generate", help="write the synthetic grasp dataset")
    g.add_argument("--out", default="data/synthetic")
    g.add_argument("--objects-per-category", type=int_at_least(1), default=40)
    g.add_argument("--scenes-per-object", type=int_at_least(1), default=4)
    g.add_argument("--grasps-per-scene", type=int_at_least(1), default=24)
    g.add_argument("--pretrain-per-category", type=int_at_least(0), default=0,
                   help="also write N meshes per category as a ShapeNet-style folder (<out>/pretrain); the procedural "
                   "pretraining set (data.pretrain_shapes) needs none")
    g.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("split", help="object-level stratified split manifests")
    s.add_argument("--root", default="data/synthetic/grasps")
    s.add_argument("--out", default="data/synthetic/splits")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--heldout-category", default=None, help="synset id kept out of training")
    with_config(sub.add_parser("pretrain", help="Point-JEPA pretraining"), "default", resume=True)
    t = with_config(sub.add_parser("train", help="grasp fine-tuning"), "default", resume=True)
    t.add_argument("--init", choices=["jepa", "scratch"])
    t.add_argument("--head", choices=["wta", "mse"])
    t.add_argument("--budget", type=float_at_least(0, strict=True))
    t.add_argument("--pack", choices=["A", "B"])
    t.add_argument("--seed", type=int)
    e = sub.add_parser("evaluate", help="metrics of a trained checkpoint")
    e.add_argument("--checkpoint", required=True, type=existing_file)
    e.add_argument("--split", default="test", choices=["train", "val", "test", "heldout"])
    with_config(sub.add_parser("sweep", help="label-efficiency sweep"), "default")
    with_config(sub.add_parser("demo", help="the main job on the synthetic default"), "demo")
    for name in COMMANDS:
        sub.choices[name].set_defaults(func=run)


def run(a):
    if a.cmd == "generate":
        from ..data import generate_dataset

        print(json.dumps(generate_dataset(os.path.join(a.out, "grasps"), a.objects_per_category, a.scenes_per_object,
                                          a.grasps_per_scene, os.path.join(a.out, "pretrain"),
                                          a.pretrain_per_category, a.seed), indent=1))
    elif a.cmd == "split":
        from ..data import make_splits
        from ..data.grasps import load_recordings

        ids, _, _ = load_recordings(a.root)
        ms = make_splits(ids, a.out, split_seed=a.seed, heldout_category=a.heldout_category)
        for (pack, b), m in sorted(ms.items()):
            print(f"pack {pack} budget {b:>5}: train {len(m['train'])} val {len(m['val'])} test {len(m['test'])}"
                  f" heldout {len(m['heldout'])}")
    elif a.cmd == "pretrain":
        from ..train.jepa import pretrain

        print(pretrain(_cfg(a), resume=a.resume, progress=not a.quiet))
    elif a.cmd == "train":
        from ..train.jepa import finetune

        cfg = _cfg(a)
        for k in ("init", "head", "budget", "pack", "seed"):
            if getattr(a, k) is not None:
                cfg["train"][k] = getattr(a, k)
        run_dir, m = finetune(cfg, resume=a.resume, progress=not a.quiet)
        print(run_dir)
        print(json.dumps(m, indent=1))
    elif a.cmd == "evaluate":
        from ..train.jepa import evaluate_checkpoint

        print(json.dumps(evaluate_checkpoint(a.checkpoint, a.split), indent=1))
    elif a.cmd == "sweep":
        from ..train.sweep import run_sweep

        _, table = run_sweep(_cfg(a), progress=not a.quiet)
        print(table)
    elif a.cmd == "demo":
        cmd_demo(a)
    return 0
