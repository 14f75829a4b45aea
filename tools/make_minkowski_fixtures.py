"""Writes tests/fixtures/minkowski/<case>.npz with MinkowskiEngine's results for the parity cases
of tests/_minkowski_cases.py, so CI checks pcgrasp.nn against ME without installing ME.

    python tools/make_minkowski_fixtures.py [--force]   # needs MinkowskiEngine (tools/install-minkowski.sh)

Run from the repository root with PYTHONPATH=. ; files are written to a temporary name, then renamed;
existing ones are skipped unless --force.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import _minkowski_cases as cases  # noqa: E402

SEED = 20261121


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "minkowski"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    import MinkowskiEngine as ME
    from tqdm import tqdm
    os.makedirs(args.out, exist_ok=True)
    for name in tqdm(cases.CASES, desc=f"MinkowskiEngine {ME.__version__} fixtures"):
        path = os.path.join(args.out, name + ".npz")
        if os.path.exists(path) and not args.force:
            continue
        fx = cases.make_inputs(name, SEED)
        res = cases.run_me(name, fx)
        arrays = dict(fx)
        arrays.update({k: v.detach().numpy() for k, v in res.items()})
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"{args.out}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
