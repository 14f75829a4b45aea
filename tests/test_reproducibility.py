"""Test inputs reproduce across processes: the rng fixture's seed must not
depend on Python's per-process hash salt, or a failure (on a GPU machine
especially) could not be replayed."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def draws_in_a_new_process(hash_seed):
    code = ("import numpy as np; from conftest import stable_seed; "
            "print(np.random.default_rng(stable_seed('tests/test_knn.py::test_x[lattice-3]')).random(3).tolist())")
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed))
    r = subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_rng_fixture_seed_is_the_same_in_every_process():
    assert draws_in_a_new_process(1) == draws_in_a_new_process(2)
