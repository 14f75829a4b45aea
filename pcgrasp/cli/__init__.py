"""The ``pcgrasp`` command. One module per pipeline registers its subcommands
(``register(sub)``, each parser's ``func`` runs it):

- ``jepa``: the Point-JEPA grasp-joint pipeline (generate, split, pretrain,
  train, evaluate, sweep, demo)
- ``scenes``: synthetic cluttered scenes in the GraspNet-1B layout (generate-scenes)
- ``ebm``: the energy-based grasp planner (ebm generate|train|sweep|refine)
- ``labels``: GraspNet-1B grasp / collision labels, graspness (labels) and AP (evaluate-grasps)
- ``contrast``: GraspContrast pretraining (contrast-pretrain, contrast-evaluate, contrast-report)
- ``detector``: the GSNet-style grasp detector (train-detector, evaluate-detector, detection-sweep,
  demo detection)

``--config`` takes a YAML path or the name of a packaged config. Trailing
``key.sub=value`` arguments override the config. Under torchrun the training
commands run data-parallel (DDP).
"""
import argparse
import sys

from . import contrast, detector, ebm, jepa, labels, scenes

PIPELINES = (jepa, scenes, ebm, labels, contrast, detector)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pcgrasp", description="pcgrasp: point-cloud grasp learning")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in PIPELINES:
        module.register(sub)
    a = ap.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
