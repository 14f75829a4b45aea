"""The ``pcgrasp`` command. One module per pipeline registers its subcommands
(``register(sub)``, each parser's ``func`` runs it):

- ``jepa``: the Point-JEPA grasp-joint pipeline (generate, split, pretrain,
  train, evaluate, sweep, demo)
- ``scenes``: synthetic cluttered scenes in the GraspNet-1B layout (generate-scenes)
- ``ebm``: the energy-based grasp planner (ebm generate|train|sweep|refine)
- ``labels``: GraspNet-1B grasp / collision labels, graspness (labels) and AP (evaluate-grasps)
- ``contrast``: GraspContrast pretraining (contrast-pretrain, contrast-evaluate, contrast-report)
- ``detector``: the GSNet-style grasp detector (train-detector, evaluate-detector, detection-sweep,
  detection-untrained, demo detection)
- ``vis``: pictures of grasps, labels, graspness, EBM and Point-JEPA grasps (show grasps|labels|
  graspness|ebm|jepa: a PNG, or the browser viewer with --serve)

``--config`` takes a YAML path or the name of a packaged config. Trailing
``key.sub=value`` arguments override the config. Under torchrun the training
commands run data-parallel (DDP).
"""
import argparse
import os
import sys

from . import contrast, detector, ebm, jepa, labels, scenes, vis

PIPELINES = (jepa, scenes, ebm, labels, contrast, detector, vis)


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming the argument (``pcgrasp evaluate: error: argument
    --checkpoint: ...``), exit status 2; subcommands' parsers are of this class too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    """The ``pcgrasp`` parser with every pipeline's commands."""
    ap = Parser(prog="pcgrasp", description="pcgrasp: point-cloud grasp learning")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in PIPELINES:
        module.register(sub)
    return ap


def command_paths(parser=None):
    """Every runnable command as a tuple of words, e.g. ('ebm', 'refine') (tests and the
    installed-package smoke test call each one's --help)."""
    def walk(p, path):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path
        for action in subs:
            for name, child in action.choices.items():
                yield from walk(child, path + (name,))
    return list(walk(parser or build_parser(), ()))


def main(argv=None):
    """Runs one command. Bad input (a missing file, a bad value: OSError, ValueError, KeyError,
    or a command's own refusal, ``SystemExit(message)``) ends it with one line on stderr,
    ``pcgrasp <command>: error: ...``, and exit status 2, as argparse's usage errors do; no
    traceback. Any other exception is reported the same way, with its type, and exit status 1
    (PCGRASP_TRACEBACK=1 re-raises either, for the traceback)."""
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except SystemExit as e:
        if not isinstance(e.code, str) or os.environ.get("PCGRASP_TRACEBACK", "0") not in ("", "0"):
            raise
        print(f"pcgrasp {a.cmd}: error: {' '.join(e.code.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pcgrasp {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the command line shows one line, never a traceback
        if os.environ.get("PCGRASP_TRACEBACK", "0") not in ("", "0"):
            raise
        bad_input = isinstance(e, (OSError, ValueError, KeyError))
        text = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, KeyError):
            text = f"missing key {text}"
        elif not bad_input:
            text = f"{type(e).__name__}: {text} (PCGRASP_TRACEBACK=1 shows where)"
        print(f"pcgrasp {a.cmd}: error: {text}", file=sys.stderr)
        return 2 if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())
