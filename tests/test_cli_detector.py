"""The detector's commands (pcgrasp.cli.detector): bad arguments fail with a
message naming the argument, ``pcgrasp demo detection`` reaches the detector's
demo while ``pcgrasp demo`` stays the Point-JEPA one, and the commands pass
their arguments through."""
import pytest
import torch

from pcgrasp.cli import detector as cli_detector
from pcgrasp.cli import jepa as cli_jepa
from pcgrasp.cli import main
from pcgrasp.train import detector as D


def _fails(argv, capsys):
    """stderr of a refused call: argparse's usage errors raise SystemExit(2), the commands' own
    refusals return 2 from main; either way one line and status 2."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, code, err)
    return err


@pytest.mark.parametrize("argv, name", [
    (["train-detector", "--init", "imagenet"], "--init"),
    (["train-detector", "--frames", "8"], "--frames"),
    (["train-detector", "--frames", "x"], "--frames"),
    (["train-detector", "--seed", "-1"], "--seed"),
    (["train-detector", "--seed", "0.5"], "--seed"),
    (["train-detector", "--config", "no_such_config"], "no_such_config"),
    (["train-detector", "--init", "scratch", "--backbone", "b.pt"], "--backbone"),
    (["train-detector", "--init", "graspcontrast", "--backbone", "/no/such/backbone.pt"], "--backbone"),
    (["train-detector", "train.epochs=0"], "train.epochs"),
    (["train-detector", "data.num_points=-3"], "data.num_points"),
    (["evaluate-detector"], "--checkpoint"),
    (["evaluate-detector", "--checkpoint", "/no/such/run"], "--checkpoint"),
    (["evaluate-detector", "--checkpoint", ".", "eval.anns=all"], "eval.anns"),
    (["detection-sweep", "sweep.inits=[scratch,imagenet]", "--report-only"], "sweep.inits"),
    (["detection-sweep", "data.test_scenes=0-3"], "data.test_scenes"),
    (["detection-untrained", "data.test_scenes=0-3"], "data.test_scenes"),
    (["detection-untrained", "--config", "no_such_config"], "no_such_config"),
    (["demo", "detection", "--config", "no_such_config"], "no_such_config"),
])
def test_bad_arguments_name_the_argument(argv, name, capsys):
    assert name in _fails(argv, capsys)


@pytest.mark.parametrize("seeds, why", [("x", "cannot parse"), ("-1", ">= 0"), ("0--2", ">= 0"), ("2-0", "ends before"),
                                        ("", "no seeds")])
def test_untrained_bad_seeds_are_a_usage_error(seeds, why, capsys):
    with pytest.raises(SystemExit) as e:
        main(["detection-untrained", "--seeds", seeds])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcgrasp detection-untrained: error: argument --seeds: ")
    assert why in lines[0]


def test_untrained_bad_json_is_named(tmp_path, capsys):
    folder = tmp_path / "dir"
    folder.mkdir()
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "text.json").write_text("not json")
    for path in (folder, tmp_path / "list.json", tmp_path / "text.json"):
        assert str(path) in _fails(["detection-untrained", "--json", str(path), "--quiet", "threads=null"], capsys)


def test_untrained_passes_its_arguments(monkeypatch, capsys):
    from pcgrasp.train import detector_sweep as S

    got = {}

    def fake(cfg, seeds, json_path=None, progress=True):
        got.update(cfg=cfg, seeds=seeds, json_path=json_path, progress=progress)
        return {}, [], {"test_seen": (1.5, 0.25)}

    monkeypatch.setattr(S, "run_untrained", fake)
    assert main(["detection-untrained", "--seeds", "0,2-3", "--json", "u.json", "--quiet", "eval.anns=null"]) == 0
    assert (got["seeds"], got["json_path"], got["progress"]) == ([0, 2, 3], "u.json", False)
    assert got["cfg"]["eval"]["anns"] is None
    assert capsys.readouterr().out == "[untrained] test_seen: AP 1.50 ± 0.25 (mean ± sample SD over seeds 0,2,3)\n"
    assert main(["detection-untrained"]) == 0 and got["seeds"] == [0, 1, 2] and got["json_path"] is None


def test_train_detector_passes_its_arguments(monkeypatch, tmp_path, capsys):
    got = {}

    def fake(cfg, init, frames, seed, backbone=None, resume=False, progress=True):
        got.update(cfg=cfg, init=init, frames=frames, seed=seed, backbone=backbone, resume=resume)
        return "RUN"

    monkeypatch.setattr(D, "train_detector", fake)
    bb = tmp_path / "backbone.pt"
    torch.save({}, bb)  # read before any work: it must be a readable checkpoint
    assert main(["train-detector", "--init", "graspcontrast", "--frames", "16", "--seed", "3", "--backbone", str(bb),
                 "--resume", "--quiet", "train.epochs=2"]) == 0
    assert capsys.readouterr().out.strip() == "RUN"
    assert (got["init"], got["frames"], got["seed"], got["backbone"], got["resume"]) == \
        ("graspcontrast", 16, 3, str(bb), True)
    assert got["cfg"]["train"]["epochs"] == 2 and got["cfg"]["model"]["seed_feat_dim"] == 32  # detector_demo


def test_demo_detection_and_the_default_demo(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_detector, "cmd_demo_detection", lambda a: calls.append(("detection", a.config,
                                                                                    a.overrides)) or 0)
    monkeypatch.setattr(cli_jepa, "cmd_demo", lambda a: calls.append(("jepa", a.config, a.overrides)))
    assert main(["demo", "detection"]) == 0
    assert main(["demo", "detection", "train.epochs=1"]) == 0
    assert main(["demo", "--config", "demo", "train.epochs=3"]) == 0
    assert main(["demo"]) == 0
    assert calls == [("detection", "detector_demo", []), ("detection", "detector_demo", ["train.epochs=1"]),
                     ("jepa", "demo", ["train.epochs=3"]), ("jepa", "demo", [])]


def test_packaged_configs_are_valid():
    from pcgrasp.cli.common import config_path
    from pcgrasp.train.config import load_config

    for name in ("detector", "detector_demo"):
        cfg = load_config(config_path(name))
        D.check_config(cfg)
        for init in ("graspcontrast", "graspcontrast_nofne"):
            from pcgrasp.train import contrast

            contrast.check_config(D.pretrain_config(cfg, init == "graspcontrast"))
        assert set(cfg["model"]) <= set(D.MODEL_KEYS)
    full = load_config(config_path("detector"))
    assert full["model"]["seed_feat_dim"] == 512 and full["model"]["num_seed"] == 1024
    assert full["data"]["num_points"] == 20000 and full["train"]["batch_size"] == 4


def test_pretraining_may_use_its_own_scene_root():
    """pretrain.data.root: GraspContrast pretrains on another (unlabelled) root; by default on the
    detector's own scenes. Either way the detector's backbone widths are kept."""
    from pcgrasp.cli.common import config_path
    from pcgrasp.train.config import load_config

    own = load_config(config_path("detector_demo"), ["data.root=/x/detector"])
    other = load_config(config_path("detector_demo"), ["data.root=/x/detector", "pretrain.data.root=/x/unlabelled",
                                                       "pretrain.data.generate.scenes=0-47,100-103"])
    for fne in (True, False):
        a, b = D.pretrain_config(own, fne), D.pretrain_config(other, fne)
        assert a["data"]["root"] == "/x/detector" and b["data"]["root"] == "/x/unlabelled"
        assert b["data"]["generate"] == {"scenes": "0-47,100-103"} and "generate" not in a["data"]
        assert a["model"] == b["model"] and a["model"]["out_channels"] == own["model"]["seed_feat_dim"]
        assert a["fne"] is b["fne"] is fne
