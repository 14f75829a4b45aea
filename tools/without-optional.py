#!/usr/bin/env python3
"""Runs a command as if the optional packages were not installed.

    python tools/without-optional.py [--hide trimesh,embreex,rtree,fcl,ray] -- COMMAND [ARGS...]

The GPU machines (and some users) have torch but not trimesh, embreex, rtree, python-fcl or Ray.
Every test module that needs one must skip cleanly without it (``pytest.importorskip``), and
``import pcgrasp`` must work. Instead of a second environment, this puts a folder of stand-in
modules first on PYTHONPATH: importing a hidden package raises ModuleNotFoundError, exactly as
when it is absent. CI runs the test suite through it."""
import argparse
import os
import subprocess
import sys
import tempfile

DEFAULT = "trimesh,embreex,rtree,fcl,ray,viser"

STUB = ('raise ModuleNotFoundError("No module named {name!r} (hidden by tools/without-optional.py)", '
        'name={name!r})\n')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: without-optional.py [--hide a,b,c] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--hide", default=DEFAULT, help=f"comma-separated module names (default {DEFAULT})")
    a = ap.parse_args(argv[:cut])
    cmd = argv[cut + 1:]
    if not cmd:
        ap.error("no command after --")
    with tempfile.TemporaryDirectory(prefix="pcgrasp-hidden-") as d:
        for name in filter(None, a.hide.split(",")):
            with open(os.path.join(d, f"{name}.py"), "w") as f:
                f.write(STUB.format(name=name))
        env = dict(os.environ)
        env["PYTHONPATH"] = d + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        print(f"[without-optional] hidden: {a.hide}", flush=True)
        return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
