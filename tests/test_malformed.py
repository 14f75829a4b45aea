"""Bad input gives a clear Python exception naming the argument, never a crash.

Each case runs in a spawned worker process: a segfault or abort breaks that
worker, fails that one test, and the next test gets a fresh worker."""
import concurrent.futures as cf
import multiprocessing as mp

import pytest

from _malformed_cases import CASES

_pool = None


def _worker():
    global _pool
    if _pool is None:
        _pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
    return _pool


@pytest.fixture(scope="module", autouse=True)
def _shutdown_worker():
    yield
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def test_enough_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input(name):
    global _pool
    _, want_type, want_text = CASES[name]
    from _malformed_cases import run_case

    try:
        got_type, msg = _worker().submit(run_case, name).result(timeout=120)
    except (cf.process.BrokenProcessPool, cf.TimeoutError) as e:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
        pytest.fail(f"{name}: the worker crashed or hung ({type(e).__name__})")
    assert got_type == want_type, f"{name}: expected {want_type}, got {got_type}: {msg}"
    assert want_text in msg, f"{name}: message should mention {want_text!r}: {msg}"
