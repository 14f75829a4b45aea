"""The study's tables, lr selection and Fig. 5 on hand-made results."""
import math
import os
import statistics

import pytest

pytestmark = pytest.mark.pipeline  # pure NumPy / trimesh: nothing for the sanitizer run


# ---------------------------------------------------------------- study tables
def _hand_made_rows():
    rows = []
    vals = {("A", 0.1, "jepa"): [0.20, 0.22], ("A", 0.1, "scratch"): [0.30, 0.26],
            ("A", 1.0, "jepa"): [0.10, 0.12], ("A", 1.0, "scratch"): [0.11, 0.13],
            ("B", 1.0, "jepa"): [0.15, 0.15], ("B", 1.0, "scratch"): [0.10, 0.20]}
    for (pack, b, init), v in vals.items():
        for seed, x in enumerate(v):
            rows.append({"pack": pack, "budget": b, "init": init, "seed": seed, "lr_backbone": 1e-4, "lr_head": 1e-3,
                         "top_logit_rmse": x, "selection_gap": x / 2, "coverage@15": 1 - x,
                         "heldout/top_logit_rmse": 2 * x})
    return rows


def test_study_tables_on_hand_made_results(tmp_path):
    from pcgrasp.train.sweep import select_lr, study_tables, sweep_plot

    rows = _hand_made_rows()
    packs = {"A": [0.1, 1.0], "B": [1.0]}
    grid = [{"init": i, "seed": s, "lr_backbone": lb, "lr_head": 1e-3, "pack": "A", "budget": 0.1,
             "val/top_logit_rmse": v + 0.01 * s}
            for i, best in (("jepa", 3e-4), ("scratch", 1e-4)) for lb in (1e-4, 3e-4) for s in (0, 1)
            for v in [0.1 if lb == best else 0.2]]
    chosen = {i: select_lr(grid, i) for i in ("jepa", "scratch")}
    assert chosen == {"jepa": (3e-4, 1e-3), "scratch": (1e-4, 1e-3)}
    floors = {"test": {"mode": 0.1, "mean": 0.09, "blind": 0.3, "noise": 0.02}}
    probe = {"shapes": 10, "chance": 0.25, "encoders": {"jepa": {"knn_acc": 0.9, "linear_acc": 0.8, "property_r2": 0.5},
                                                          "random": {"knn_acc": 0.5, "linear_acc": 0.4,
                                                                     "property_r2": 0.1}}}
    md = study_tables(rows, packs, ["jepa", "scratch"], floors, grid, chosen, probe)
    deg = math.degrees(1)

    def cell(v, d=2):
        return f"{statistics.mean(v) * deg:.{d}f} ± {statistics.stdev(v) * deg:.{d}f}"

    lines = md.splitlines()
    row_a10 = next(ln for ln in lines if ln.startswith("| A | 10 % |") and cell([0.20, 0.22]) in ln)
    jm, sm = statistics.mean([0.20, 0.22]), statistics.mean([0.30, 0.26])
    assert cell([0.30, 0.26]) in row_a10 and f"{100 * (sm - jm) / sm:+.1f} %" in row_a10  # Δ = +25.0 %
    row_b = next(ln for ln in lines if ln.startswith("| B | 100 % |") and cell([0.15, 0.15]) in ln)
    assert "+0.0 %" in row_b  # equal means
    assert cell([0.40, 0.44]) in md  # held-out column (2x the test values)
    assert cell([0.10, 0.11]) in md  # the selection gap (x / 2)
    assert f"{1 - 0.21:.3f} ± {statistics.stdev([0.80, 0.78]):.3f}" in md  # coverage@15 of jepa at 10 %
    grid_line = next(ln for ln in lines if ln.startswith("| 0.0003 | 0.001 |"))
    assert grid_line.count("*") == 1 and cell([0.1, 0.11]) + " *" in grid_line
    assert f"{0.1 * deg:.2f} | {0.09 * deg:.2f} | {0.3 * deg:.2f}" in md
    assert "| jepa | 0.900 | 0.800 | 0.500 |" in md
    sweep_plot(rows, packs, ["jepa", "scratch"], str(tmp_path / "f.png"), floors)
    assert os.path.getsize(tmp_path / "f.png") > 1000


def test_sweep_packs_validation():
    from pcgrasp.train.sweep import sweep_packs

    assert sweep_packs({"budgets": [0.1, 1]}) == {"A": [0.1, 1.0]}
    with pytest.raises(ValueError, match="sweep.packs"):
        sweep_packs({"packs": {"C": [0.1]}})
    with pytest.raises(ValueError, match="sweep.packs"):
        sweep_packs({"packs": {"A": [0.0]}})
