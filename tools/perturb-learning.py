#!/usr/bin/env python3
"""Runs the tests that assert a learning outcome under settings that change floating-point rounding,
and reports the spread of every measured quantity next to its threshold.

A learning test (loss falls, recall rises, AP > 0, DDP = one process) is tuned to one CPU when its
threshold sits inside the spread that rounding alone produces. Intel CPUs with AVX-512 run other ATen
and MKL kernels than the AMD development machine; without such a machine, these settings stand in:

    OMP_NUM_THREADS 1 / 2, ATEN_CPU_CAPABILITY default / avx2 / avx512 (where the CPU has it),
    MKL_CBWR=COMPATIBLE, MKL_ENABLE_INSTRUCTIONS=AVX2, and several seeds (PCGRASP_TEST_SEED).

Each test reports its quantities through the ``learning_margin`` fixture (tests/conftest.py) into
PCGRASP_LEARNING_LOG. Usage:

    python tools/perturb-learning.py [--seeds 0 1 2] [--settings all|NAME ...] [--tests NODEID ...]
                                     [--out results/perturbation]

Writes ``<out>/learning_spread.json`` (every measurement) and ``<out>/learning_spread.md`` (per
quantity: threshold, min / median / max, the worst margin, failures), and resumes: a (setting, seed)
already in the JSON is not run again (``--fresh`` starts over).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LEARNING_TESTS = [
    "tests/test_training.py::test_tiny_training_reduces_the_loss",
    "tests/test_training.py::test_ddp_two_gloo_processes_equal_one_process",
    "tests/test_graspcontrast.py::test_tiny_pretraining_learns_resumes_exactly_and_loads_strict",
    "tests/test_graspcontrast.py::test_ddp_two_gloo_processes_average_the_single_process_gradient",
    "tests/test_train_detector.py::test_tiny_run_learns_finds_grasps_and_resumes_exactly",
    "tests/test_train_detector.py::test_ddp_two_gloo_processes_average_the_single_process_gradients",
    "tests/test_ebm.py::test_descent_lowers_energy_on_a_trained_toy_model",
]


def cpu_has(flag):
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


def settings_table():
    s = {
        "2-threads": {"OMP_NUM_THREADS": "2"},
        "1-thread": {"OMP_NUM_THREADS": "1"},
        "default-isa+mkl-compat": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default",
                                   "MKL_CBWR": "COMPATIBLE"},
        "avx2": {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    }
    if cpu_has("avx512f"):
        s["avx512"] = {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx512"}
    return s


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run_one(tests, env_extra, seed, log_path, timeout):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")}
    env.update(env_extra)
    env.update(PCGRASP_TEST_SEED=str(seed), PCGRASP_LEARNING_LOG=log_path)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    tail = (r.stdout + r.stderr).strip().splitlines()
    return r.returncode, time.time() - t0, tail[-1] if tail else ""


def summarise(records):
    groups = {}
    for r in records:
        groups.setdefault((r["test"].split("::")[-1], r["name"]), []).append(r)
    rows = []
    for (test, name), rs in sorted(groups.items()):
        vals = [r["value"] for r in rs]
        thr, above = rs[0]["threshold"], rs[0]["above"]
        margins = [(v - thr) if above else (thr - v) for v in vals]
        rows.append({"test": test, "name": name, "threshold": thr, "direction": ">" if above else "<",
                     "n": len(vals), "min": min(vals), "median": statistics.median(vals), "max": max(vals),
                     "sd": statistics.pstdev(vals) if len(vals) > 1 else 0.0, "worst_margin": min(margins),
                     "failures": sum(m <= 0 for m in margins)})
    return rows


def markdown(rows, meta):
    out = ["# Learning tests under rounding-changing settings", "",
           f"{meta['machine']}, {meta['date']}; settings: {', '.join(meta['settings'])}; seeds "
           f"{meta['seeds']} (PCGRASP_TEST_SEED); {meta['runs']} pytest runs, {meta['wall_s']:.0f} s.", "",
           "| test | quantity | needs | n | min | median | max | SD | worst margin | failures |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['test']} | {r['name']} | {r['direction']} {r['threshold']:.4g} | {r['n']} | "
                   f"{r['min']:.4g} | {r['median']:.4g} | {r['max']:.4g} | {r['sd']:.3g} | "
                   f"{r['worst_margin']:.4g} | {r['failures']} |")
    out += ["", "Runs:", "", "| setting | seed | exit | s | pytest |", "|---|---|---|---|---|"]
    for run in meta["run_log"]:
        out.append(f"| {run['setting']} | {run['seed']} | {run['rc']} | {run['wall_s']:.0f} | {run['summary']} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=["all"], help="names from the table, or all")
    ap.add_argument("--seed-settings", nargs="+", default=["2-threads"],
                    help="settings run at every seed; the others run at seed 0 only")
    ap.add_argument("--tests", nargs="+", default=LEARNING_TESTS)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "perturbation"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per pytest run")
    ap.add_argument("--fresh", action="store_true", help="ignore earlier results in --out")
    a = ap.parse_args(argv)
    table = settings_table()
    names = list(table) if a.settings == ["all"] else a.settings
    for n in names + a.seed_settings:
        if n not in table:
            ap.error(f"--settings: unknown setting {n!r} (known: {', '.join(table)})")
    os.makedirs(a.out, exist_ok=True)
    js = os.path.join(a.out, "learning_spread.json")
    state = {"records": [], "run_log": []}
    if os.path.exists(js) and not a.fresh:
        with open(js) as f:
            state = json.load(f)
    done = {(r["setting"], r["seed"]) for r in state["run_log"]}
    plan = [(n, s) for n in names for s in (a.seeds if n in a.seed_settings else a.seeds[:1])]
    for setting, seed in plan:
        if (setting, seed) in done:
            print(f"[perturb] {setting} seed {seed}: done before, skipped")
            continue
        with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as tmp:
            log_path = tmp.name
        rc, wall, summary = run_one(a.tests, table[setting], seed, log_path, a.timeout)
        with open(log_path) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        os.remove(log_path)
        for r in recs:
            r["setting"] = setting
        state["records"] += recs
        state["run_log"].append({"setting": setting, "seed": seed, "rc": rc, "wall_s": wall, "summary": summary})
        print(f"[perturb] {setting} seed {seed}: exit {rc} in {wall:.0f} s: {summary}", flush=True)
        with open(js, "w") as f:   # after every run: an interrupted sweep keeps what it measured
            json.dump(state, f, indent=1)
    rows = summarise(state["records"])
    meta = {"machine": f"{cpu_name()} ({os.cpu_count()} cores)",
            "date": time.strftime("%Y-%m-%d"), "settings": names, "seeds": a.seeds,
            "runs": len(state["run_log"]), "wall_s": sum(r["wall_s"] for r in state["run_log"]),
            "run_log": state["run_log"]}
    state["summary"] = rows
    with open(js, "w") as f:
        json.dump(state, f, indent=1)
    md = markdown(rows, meta)
    with open(os.path.join(a.out, "learning_spread.md"), "w") as f:
        f.write(md)
    print(md)
    return 1 if any(r["failures"] for r in rows) or any(r["rc"] for r in state["run_log"]) else 0


if __name__ == "__main__":
    sys.exit(main())
