"""The detector's sweep report (pcgrasp.train.detector_sweep): the tables
against NumPy, the plot; and ``pcgrasp detection-untrained`` (randomly
initialised detectors, the sweep's chance reference) on a tiny scene: its
JSON, its summary and that a second call skips the finished seeds."""
import json
import re

import numpy as np
import pytest
import torch

from pcgrasp.cli import main
from pcgrasp.metrics import mean_sd
from pcgrasp.train import detector as D
from pcgrasp.train import detector_eval as E
from pcgrasp.train import detector_sweep as S


def _rows(rng, inits, budgets, seeds):
    return [{"init": i, "frames": b, "seed": s,
             "splits": {sp: {k: float(rng.uniform(0, 60)) for k in E.METRICS} for sp in E.SPLIT_RANGES}}
            for b in budgets for i in inits for s in seeds]


def test_sweep_tables_are_mean_and_sd_over_seeds():
    rng = np.random.default_rng(3)
    rows = _rows(rng, D.INITS, D.BUDGETS, [0, 1, 2])
    text = S.sweep_tables(rows, list(D.BUDGETS), list(D.INITS))
    assert "Table I" in text and "Table II" in text

    def parse(line):
        return [tuple(map(float, c.split(" ± "))) for c in line.strip("|").split("|") if "±" in c]

    sections = text.split("### ")
    t1 = [ln for ln in sections[1].splitlines() if ln.startswith("| 16/256")][0]
    t2 = [ln for ln in sections[2].splitlines() if ln.startswith("| 256/256")][0]
    full = [ln for ln in sections[3].splitlines() if ln.startswith("| 1/256 | GraspContrast w/o FNE |")][0]

    def ref(init, b, split, key="AP"):
        v = np.array([r["splits"][split][key] for r in rows if r["init"] == init and r["frames"] == b])
        return v.mean(), v.std(ddof=1)

    want1 = [ref(i, 16, s) for s in E.SPLIT_RANGES for i in ("scratch", "graspcontrast")]
    want2 = [ref(i, 256, s) for s in E.SPLIT_RANGES for i in ("graspcontrast", "graspcontrast_nofne")]
    want3 = [ref("graspcontrast_nofne", 1, s, k) for s in E.SPLIT_RANGES for k in E.METRICS]
    for got, want in ((parse(t1), want1), (parse(t2), want2), (parse(full), want3)):
        np.testing.assert_allclose(got, np.round(want, 2), atol=0.0051)
    assert "| 1/256 | GraspContrast w/o FNE | 3 |" in text
    # one seed: SD 0; a missing init: no Table II; a missing split column is left out
    one = _rows(rng, ["scratch", "graspcontrast"], [1], [0])
    for r in one:
        del r["splits"]["test_novel"]
    text = S.sweep_tables(one, [1], ["scratch", "graspcontrast"])
    assert "Table II" not in text and "novel" not in text
    assert re.search(r"\| 1/256 \| \d+\.\d\d ± 0\.00 \|", text)


def test_sweep_plot_writes_a_png(tmp_path):
    rows = _rows(np.random.default_rng(4), D.INITS, D.BUDGETS, [0, 1])
    S.sweep_plot(rows, list(D.BUDGETS), list(D.INITS), str(tmp_path / "p.png"))
    assert open(tmp_path / "p.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- untrained reference
def test_seed_lists_parse_and_bad_ones_are_named():
    assert S.parse_seeds("0-2") == [0, 1, 2] and S.parse_seeds("4") == [4]
    assert S.parse_seeds("3, 0-1,1") == [0, 1, 3]
    for bad, match in [("x", "cannot parse"), ("-1", ">= 0"), ("0--1", ">= 0"), ("2-1", "ends before"),
                       ("", "no seeds"), ("1.5", "cannot parse")]:
        with pytest.raises(ValueError, match=match):
            S.parse_seeds(bad)


@pytest.fixture(scope="module")
def scene_100_root(tmp_path_factory):
    """One tiny test_seen scene (100), 2 views: the untrained detectors need no training scene or labels."""
    pytest.importorskip("trimesh")  # the scene generator needs it: without it these tests skip
    from pcgrasp.data.synthetic.scenes import generate_scenes

    root = str(tmp_path_factory.mktemp("untrained_scenes"))
    generate_scenes(root, scenes="100", views=2, width=160, height=90, objects_per_scene=(3, 3), seed=3,
                    progress=False)
    return root


@pytest.mark.pipeline
def test_untrained_command_writes_the_json_and_skips_finished_seeds(scene_100_root, tmp_path, capsys,
                                                                   monkeypatch):
    from test_train_detector import tiny_cfg

    cfg = tiny_cfg(scene_100_root, tmp_path / "runs")   # data.labels set, training scene 0 absent: not labelled
    cfg["sweep"] = {"out": str(tmp_path / "sweep")}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    out = tmp_path / "ref" / "untrained.json"
    argv = ["detection-untrained", "--config", str(path), "--seeds", "0-1", "--json", str(out), "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    got = json.loads(out.read_text())
    assert list(got) == ["0", "1"]
    for splits in got.values():
        assert list(splits) == ["test_seen"] and list(splits["test_seen"]) == list(E.METRICS)
        assert all(0 <= v <= 100 for v in splits["test_seen"].values())
    assert [ln.split(":")[0] for ln in lines] == ["[untrained] seed 0", "[untrained] seed 1", "[untrained] test_seen"]
    assert "skipped" not in "".join(lines)
    m, sd = mean_sd([got[k]["test_seen"]["AP"] for k in got])
    assert lines[-1] == f"[untrained] test_seen: AP {m:.2f} ± {sd:.2f} (mean ± sample SD over seeds 0,1)"
    # the run folders sit beside the sweep's runs; seed 1's model is the one train_detector would start from
    run = tmp_path / "sweep" / "runs" / "untrained_s1"
    assert (run / "metrics.json").exists()
    torch.manual_seed(1)
    ref = D.build_model(cfg["model"]).state_dict()
    state = D.load_detector(str(run)).state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref)
    # again: seed 0 is in the JSON, seed 1 (dropped from it) has its finished evaluation: nothing is evaluated
    del got["1"]
    out.write_text(json.dumps(got))

    def no_evaluation(*a, **k):
        raise AssertionError("a finished seed was evaluated again")
    monkeypatch.setattr(S, "evaluate_detector", no_evaluation)
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"(skipped: in {out})" in lines[0] and f"(skipped: finished evaluation in {run})" in lines[1]
    assert json.loads(out.read_text()).keys() == {"0", "1"}
    assert lines[-1].startswith(f"[untrained] test_seen: AP {m:.2f} ± {sd:.2f}")
