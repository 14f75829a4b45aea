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


def run_cases(cases, device, budget, only=""):
    """Times each case dict(name, ours, peers={name: fn}, notes?) and prints a line."""
    results = []
    for c in cases:
        if only and only not in c["name"]:
            continue
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
        results.append(row)
        peers = ", ".join(f"{k} {v['ms']:.2f} ms ({v['ratio']:.2f}x)" if "ms" in v else f"{k} failed ({v['error']})"
                          for k, v in row["peers"].items())
        print(f"{c['name']}: pcgrasp {ours:.2f} ms | {peers} {row['notes']}", flush=True)
    return results


def write_results(out_dir, partial, dname, results, extra_meta, title="Benchmarks", stem=None):
    """Writes <out_dir>/<device-slug>[-stem].{json,md}; a partial run (--only)
    replaces its own rows and keeps the others."""
    os.makedirs(out_dir, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dname).strip("-").lower() + (f"-{stem}" if stem else "")
    path = os.path.join(out_dir, f"{slug}.json")
    if partial and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)["results"]
        new = {r["case"]: r for r in results}
        results = [new.pop(r["case"], r) for r in old] + list(new.values())
    stamp = datetime.date.today().isoformat()
    meta = {"device": dname, "date": stamp, "torch": torch.__version__, "pcgrasp": pcgrasp.build_info(), **extra_meta}
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    with open(os.path.join(out_dir, f"{slug}.md"), "w") as f:
        f.write(f"# {title}: {dname}\n\n{stamp}, torch {torch.__version__}. Median wall time; "
                "ratio = peer time / pcgrasp time (> 1: pcgrasp faster). Same process, same device.\n\n")
        f.write("| case | pcgrasp ms | peers (ms, ratio) | notes |\n|---|---:|---|---|\n")
        for r in results:
            peers = "; ".join(f"{k}: {v['ms']:.2f} ({v['ratio']:.2f}x)" if "ms" in v else f"{k}: failed"
                              for k, v in r["peers"].items())
            f.write(f"| {r['case']} | {r['pcgrasp_ms']:.2f} | {peers} | {r.get('notes', '')} |\n")
    print(f"wrote {path} and .md")
