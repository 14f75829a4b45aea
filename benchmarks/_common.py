"""Shared pieces of the benchmark scripts: timing, device names, result files."""
import datetime
import importlib
import json
import os
import platform
import re
import statistics
import time

import torch

import pcgrasp

# --budget-s counts from here: the scripts import this module first thing, so
# the bound covers building the cases' data too, not only the timed loop.
_STARTED = time.perf_counter()


def optional_import(name):
    """The module, or None when it (a peer) is not installed or fails to import."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def timeit(fn, device, budget_s=20.0, max_reps=7):
    """Median wall time in ms over up to max_reps runs after one warm-up;
    fewer runs when a run is slow."""
    def once():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    first = once()  # warm-up (also JIT/allocator)
    reps = max(1, min(max_reps, int(budget_s / max(first, 1e-6))))
    times = [once() for _ in range(reps)] if first < budget_s else [first]
    return statistics.median(times) * 1e3, len(times)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.+)", f.read())
            model = m.group(1) if m else model
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def add_budget_arg(ap):
    """--budget-s: a bound on the whole run's time (the GPU check runs inside a
    fixed time box, and results it cannot write are lost)."""
    ap.add_argument("--budget-s", type=float, default=None, metavar="SECONDS",
                    help="start no new case once this many seconds have passed since the script started "
                         "(a case already running finishes); the results of the cases that ran are written. "
                         "Default: no bound")


def run_cases(cases, device, budget, only="", budget_s=None, stats=None):
    """Times each case dict(name, ours, peers={name: fn}, notes?) and prints a line.

    budget_s: start no new case once that many seconds have passed since this
    module was imported (see _STARTED). Ctrl-C, or SIGINT from `timeout -s INT`,
    also ends the run after the cases done so far instead of losing them.
    stats, a dict if given, gets "stopped" ("budget", "interrupted" or None),
    "skipped" (names of the cases not run) and "elapsed_s"."""
    results = []
    todo = [c for c in cases if not only or only in c["name"]]
    t0 = _STARTED
    stopped = None
    done = 0
    try:
        for c in todo:
            if budget_s is not None and time.perf_counter() - t0 >= budget_s:
                stopped = "budget"
                break
            results.append(_run_case(c, device, budget))
            done += 1
    except KeyboardInterrupt:
        stopped = "interrupted"
    skipped = [c["name"] for c in todo[done:]]
    if stopped:
        print(f"stopped ({stopped}) after {time.perf_counter() - t0:.0f} s: {len(skipped)} case(s) not run",
              flush=True)
    if stats is not None:
        stats.update(stopped=stopped, skipped=skipped, elapsed_s=round(time.perf_counter() - t0, 1))
    return results


def _run_case(c, device, budget):
    ours, n = timeit(c["ours"], device, budget)
    row = {"case": c["name"], "pcgrasp_ms": ours, "reps": n, "peers": {}, "notes": c.get("notes", "")}
    for pname, fn in c["peers"].items():
        try:
            t, pn = timeit(fn, device, budget)
            row["peers"][pname] = {"ms": t, "ratio": t / ours, "reps": pn}
        except Exception as e:  # a peer that fails is reported, not fatal
            row["peers"][pname] = {"error": f"{type(e).__name__}: {e}"[:200]}
    if "after" in c:  # e.g. peak-memory measurements
        row["notes"] = (row["notes"] + " " + c["after"]()).strip()
    peers = ", ".join(f"{k} {v['ms']:.2f} ms ({v['ratio']:.2f}x)" if "ms" in v else f"{k} failed ({v['error']})"
                      for k, v in row["peers"].items())
    print(f"{c['name']}: pcgrasp {ours:.2f} ms | {peers} {row['notes']}", flush=True)
    return row


def write_results(out_dir, partial, dname, results, extra_meta, title="Benchmarks", stem=None):
    """Writes <out_dir>/<device-slug>[-stem].{json,md}; a partial run (--only, or
    one stopped early by --budget-s) replaces its own rows and keeps the others.
    extra_meta's "stopped" and "skipped" (run_cases' stats), when set, are also
    noted under the markdown table."""
    os.makedirs(out_dir, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dname).strip("-").lower() + (f"-{stem}" if stem else "")
    path = os.path.join(out_dir, f"{slug}.json")
    stamp = datetime.date.today().isoformat()
    results = [{**r, "date": r.get("date", stamp)} for r in results]
    if partial and os.path.exists(path):
        with open(path) as f:
            old_file = json.load(f)
        # rows kept from an earlier run keep that run's date
        old = [{**r, "date": r.get("date", old_file["meta"].get("date", "?"))} for r in old_file["results"]]
        new = {r["case"]: r for r in results}
        results = [new.pop(r["case"], r) for r in old] + list(new.values())
    stopped = extra_meta.get("stopped")
    meta = {"device": dname, "date": stamp, "torch": torch.__version__, "pcgrasp": pcgrasp.build_info(), **extra_meta}
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(out_dir, f"{slug}.md"), "w") as f:
        f.write(f"# {title}: {dname}\n\n{stamp}, torch {torch.__version__}. Median wall time; "
                "ratio = peer time / pcgrasp time (> 1: pcgrasp faster). Same process, same device. Rows kept "
                "from an earlier partial run say when they were timed.\n\n")
        f.write("| case | pcgrasp ms | peers (ms, ratio) | notes |\n|---|---:|---|---|\n")
        for r in results:
            peers = "; ".join(f"{k}: {v['ms']:.2f} ({v['ratio']:.2f}x)" if "ms" in v else f"{k}: failed"
                              for k, v in r["peers"].items())
            notes = r.get("notes", "")
            if r.get("date", stamp) != stamp:
                notes = f"(timed {r['date']}) {notes}".strip()
            f.write(f"| {r['case']} | {r['pcgrasp_ms']:.2f} | {peers} | {notes} |\n")
        if stopped:
            skipped = extra_meta.get("skipped", [])
            f.write(f"\nStopped early ({stopped}); not run this time: {', '.join(skipped) or 'none'}.\n")
    print(f"wrote {path} and .md")
