"""GSNet-style grasp detector commands:

    pcgrasp train-detector --config detector_demo --init graspcontrast|scratch --frames 1|16|256 --seed 0
    pcgrasp evaluate-detector --config detector_demo --checkpoint RUN_DIR_OR_MODEL_PT [--scenes 100-101]
    pcgrasp detection-sweep --config detector_demo      # Tables I/II (markdown) + AP-vs-budget PNG
    pcgrasp detection-sweep --config detector_demo --report-only   # the tables of the finished runs
    pcgrasp detection-untrained --config detector_demo --seeds 0-2 [--json untrained.json]   # chance reference
    pcgrasp demo detection                              # scenes + labels, pretrain, fine-tune both ways, AP

The synthetic scenes and the training scenes' labels are written under
``data.root`` when missing (finished files are skipped); ``--init
graspcontrast`` pretrains the backbone with the contrast pipeline when its
backbone.pt is missing (or takes ``--backbone``). Trailing ``key.sub=value``
arguments override the config. ``detection-untrained`` scores randomly
initialised detectors (one per seed, under ``<sweep.out>/runs/untrained_s<seed>``)
and writes ``<sweep.out>/untrained.json`` (or ``--json``); seeds already there,
or whose folder holds metrics.json, are skipped. Under torchrun
``train-detector`` runs data-parallel (DDP). ``pcgrasp demo detection`` is the
detector's demo beside ``pcgrasp demo`` (the Point-JEPA one, unchanged).
"""
import argparse
import json
import os
import time

from .common import config_path, existing_file, load_cfg, with_config

FRAMES = (1, 16, 256)


def _fail(e):
    """A refusal: main prints it as one line, exit status 2."""
    raise SystemExit(str(e)) from None


def _checked(a):
    from ..train import detector

    cfg = load_cfg(a)
    try:
        detector.check_config(cfg)
    except ValueError as e:
        _fail(e)
    return cfg


def _ap_line(splits):
    return "  ".join(f"{k}: AP {v['AP']:.2f} AP0.8 {v['AP0.8']:.2f} AP0.4 {v['AP0.4']:.2f}" for k, v in splits.items())


def cmd_train(a):
    from ..train import detector

    cfg = _checked(a)
    if a.seed < 0:
        _fail(f"--seed must be >= 0, got {a.seed}")
    if a.backbone is not None and a.init == "scratch":
        _fail("--backbone is only used with --init graspcontrast")
    if a.backbone is not None:  # readable, before any scenes or labels are made
        from ..train.engine import read_checkpoint

        try:
            read_checkpoint(a.backbone, (), "backbone checkpoint (--backbone)", weights_only=True)
        except ValueError as e:
            _fail(e)
    try:
        run = detector.train_detector(cfg, a.init, a.frames, a.seed, backbone=a.backbone, resume=a.resume,
                                      progress=not a.quiet)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    print(run)
    return 0


def cmd_evaluate(a):
    from ..train import detector_eval

    cfg = _checked(a)
    if not os.path.exists(a.checkpoint):
        _fail(f"--checkpoint {a.checkpoint} does not exist (a train-detector run folder or its model.pt)")
    try:
        r = detector_eval.evaluate_detector(cfg, a.checkpoint, scenes=a.scenes, dump_dir=a.dump_dir,
                                            progress=not a.quiet)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    for s, v in sorted(r["scenes"].items(), key=lambda kv: int(kv[0])):
        print(f"[evaluate-detector] scene {int(s):04d}: AP {v['AP']:.2f}  AP0.8 {v['AP0.8']:.2f}  "
              f"AP0.4 {v['AP0.4']:.2f}")
    print(f"[evaluate-detector] {_ap_line(r['splits'])}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


def cmd_sweep(a):
    from ..train import detector_sweep

    cfg = _checked(a)
    try:
        _, tables = detector_sweep.run_sweep(cfg, progress=not a.quiet, report_only=a.report_only)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    print(tables)
    return 0


def _seeds(spec):
    """argparse ``type`` of ``--seeds``: the usage error names the option."""
    from ..train.detector_sweep import parse_seeds

    try:
        return parse_seeds(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_untrained(a):
    from ..train import detector_sweep

    cfg = _checked(a)
    if a.json is not None and os.path.isdir(a.json):
        _fail(f"--json {a.json} is a folder (give the JSON file's path)")
    try:
        _, _, summary = detector_sweep.run_untrained(cfg, a.seeds, a.json, progress=not a.quiet)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    seeds = ",".join(map(str, a.seeds))
    for split, (m, sd) in summary.items():
        print(f"[untrained] {split}: AP {m:.2f} ± {sd:.2f} (mean ± sample SD over seeds {seeds})")
    return 0


def cmd_demo_detection(a):
    """``pcgrasp demo detection``: a tiny scene set and its labels, GraspContrast
    pretraining, fine-tuning from scratch and from the pretrained backbone,
    AP on the test scenes (a GPU when present)."""
    from ..train import detector, detector_eval, detector_sweep

    cfg = _checked(a)
    t0 = time.time()
    d = cfg["data"]
    print(f"[demo detection] scenes {d['train_scenes']} (train) and {d['test_scenes']} (test) under {d['root']} "
          f"(generated and labelled if missing)")
    detector.ensure_data(cfg, progress=not a.quiet)
    print(f"[demo detection] data ready ({time.time() - t0:.0f} s)")
    bb = detector.ensure_backbone(cfg, "graspcontrast", progress=not a.quiet)
    print(f"[demo detection] GraspContrast pretraining done ({time.time() - t0:.0f} s): {bb}")
    results = []
    for init in ("scratch", "graspcontrast"):
        run = detector.train_detector(cfg, init, 256, cfg.get("seed", 0), progress=not a.quiet)
        r = detector_eval.evaluate_detector(cfg, run, progress=not a.quiet)
        results.append((init, r))
        print(f"[demo detection] {init:>13}: {_ap_line(r['splits'])} ({time.time() - t0:.0f} s)")
    splits = list(results[0][1]["splits"])
    metrics = detector_eval.METRICS
    lines = ["| init | " + " | ".join(f"{s} {k}" for s in splits for k in metrics) + " |",
             "|---|" + "---:|" * (len(splits) * len(metrics))]
    for init, r in results:
        lines.append(f"| {detector_sweep.LABELS[init]} | " + " | ".join(f"{r['splits'][s][k]:.2f}" for s in splits
                                                                        for k in metrics) + " |")
    table = "\n".join(lines)
    print(f"\nDetection AP on the test scenes (percent, frames {cfg['eval'].get('anns')} of each):\n")
    print(table)
    out = os.path.dirname(cfg["train"]["out"].rstrip("/")) or "."
    with open(os.path.join(out, "demo_detection.md"), "w") as f:
        f.write(table + "\n")
    print(f"\n[demo detection] total {time.time() - t0:.0f} s; table also in {out}/demo_detection.md")
    print(f"[demo detection] picture of the best grasps: {_demo_picture(cfg, run, results[-1][1], out)}")
    return 0


def _demo_picture(cfg, run, result, out):
    """PNG of the last run's 50 best dumped grasps on the first test scene's first evaluated frame."""
    from ..train.detector import parse_scene_ids
    from ..vis import render_png, scene_grasps_picture

    scene, ann = parse_scene_ids(cfg["data"]["test_scenes"])[0], result["anns"][0]
    pic = scene_grasps_picture(cfg["data"]["root"], scene, ann, dump_dir=os.path.join(run, "dump"),
                               camera=cfg["data"].get("camera", "realsense"), top_k=50)
    return render_png(pic, os.path.join(out, "demo_detection_grasps.png"))


def _demo(previous):
    """``pcgrasp demo`` keeps its meaning; ``pcgrasp demo detection [key=value ...]`` runs
    the detector's demo (with ``detector_demo`` unless --config is given)."""
    def run(a):
        if a.overrides[:1] != ["detection"]:
            return previous(a)
        a.overrides = a.overrides[1:]
        if a.config == "demo":  # the Point-JEPA demo's default config
            a.config = "detector_demo"
        config_path(a.config)
        return cmd_demo_detection(a)
    return run


def register(sub):
    """Adds ``pcgrasp train-detector|evaluate-detector|detection-sweep|detection-untrained`` and
    ``pcgrasp demo detection`` (registered after the Point-JEPA commands)."""
    t = with_config(sub.add_parser("train-detector", help="fine-tune the GSNet-style detector"), "detector_demo",
                    resume=True)
    t.add_argument("--init", choices=["graspcontrast", "scratch"], default="scratch",
                   help="backbone initialisation: a GraspContrast backbone.pt or random")
    t.add_argument("--frames", type=int, choices=FRAMES, default=256,
                   help="frames per training scene, of 256 (scaled onto the scenes' views by the config)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--backbone", default=None, type=existing_file,
                   help="with --init graspcontrast: this backbone.pt (default: pretrain it with the config's "
                        "pretrain section when missing)")
    t.set_defaults(func=cmd_train)
    e = with_config(sub.add_parser("evaluate-detector", help="grasp dumps + AP of a trained detector"),
                    "detector_demo")
    e.add_argument("--checkpoint", required=True, help="a train-detector run folder or its model.pt")
    e.add_argument("--scenes", default=None, help="scene ids (default: data.test_scenes)")
    e.add_argument("--dump-dir", default=None, help="where the [N, 17] grasp arrays go (default: <run>/dump)")
    e.add_argument("--json", default=None, help="also write the APs to this JSON file")
    e.set_defaults(func=cmd_evaluate)
    s = with_config(sub.add_parser("detection-sweep", help="scratch vs GraspContrast (+/- FNE) x frame budgets x "
                                                           "seeds: Tables I/II + PNG"), "detector_demo")
    s.add_argument("--report-only", action="store_true",
                   help="no training: the tables and plot of the finished runs (the missing ones listed)")
    s.set_defaults(func=cmd_sweep)
    u = with_config(sub.add_parser("detection-untrained", help="AP of randomly initialised detectors, one per seed "
                                                               "(the sweep's chance reference)"), "detector_demo")
    u.add_argument("--seeds", type=_seeds, default="0-2", help="seeds, e.g. 0-2 or 0,3,5 (default 0-2)")
    u.add_argument("--json", default=None, help="the results file (default <sweep.out>/untrained.json); seeds "
                                                "already in it are skipped")
    u.set_defaults(func=cmd_untrained)
    if "demo" in sub.choices:
        d = sub.choices["demo"]
        d.set_defaults(func=_demo(d.get_default("func")))
        d.description = "pcgrasp demo: the Point-JEPA demo; pcgrasp demo detection: the grasp detector's demo"
