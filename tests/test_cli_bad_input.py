"""Bad input to every kind of command, as a user would give it: a corrupt or foreign checkpoint,
YAML that is broken, empty or not a mapping, an override with no value, an unknown key or the
wrong type, an out-of-range option or setting. Each ends in one line on stderr that names the
argument, a non-zero exit status, no traceback, and no work started (nothing written to the
working folder: data generation and training would make their folders first)."""
import os
import pickle

import numpy as np
import pytest
import torch

from pcgrasp.cli import main


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "empty.pt").write_bytes(b"")
    (d / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(512))
    torch.save({"weights": torch.zeros(3)}, d / "full.pt")
    (d / "trunc.pt").write_bytes((d / "full.pt").read_bytes()[:300])
    torch.save({"a": 1}, d / "wrongdict.pt")
    with open(d / "pickled.npz", "wb") as f:
        pickle.dump({"points": 1}, f)
    (d / "bad.yaml").write_text("model: [1, 2\n  dim: 3: 4\n")
    (d / "empty.yaml").write_text("# nothing here\n")
    (d / "scalar.yaml").write_text("just a string\n")
    (d / "emptydir").mkdir()
    scene = d / "root" / "scenes" / "scene_0000"
    (scene / "realsense").mkdir(parents=True)
    return d


CASES = [
    # corrupt, empty, truncated or foreign checkpoints
    (("evaluate", "--checkpoint", "{d}/empty.pt"), "empty.pt"),
    (("evaluate", "--checkpoint", "{d}/garbage.pt"), "garbage.pt"),
    (("evaluate", "--checkpoint", "{d}/wrongdict.pt"), "'cfg'"),
    (("ebm", "refine", "--checkpoint", "{d}/trunc.pt"), "trunc.pt"),
    (("ebm", "refine", "--checkpoint", "{d}/wrongdict.pt"), "'cfg'"),
    (("evaluate-detector", "--checkpoint", "{d}/garbage.pt"), "garbage.pt"),
    (("show", "labels", "--labels", "{d}/empty.pt"), "empty.pt"),
    (("show", "labels", "--labels", "{d}/pickled.npz"), "pickled.npz"),
    # configs
    (("pretrain", "--config", "{d}/bad.yaml"), "bad.yaml"),
    (("sweep", "--config", "{d}/scalar.yaml"), "scalar.yaml"),
    (("ebm", "train", "--config", "{d}/empty.yaml"), "empty.yaml"),
    (("contrast-pretrain", "--config", "{d}/bad.yaml"), "bad.yaml"),
    # overrides
    (("pretrain", "model.dim=abc"), "model.dim"),
    (("pretrain", "foo.bar="), "foo.bar"),
    (("train", "unknown.key=1"), "unknown"),
    (("demo", "=1"), "no key"),
    (("ebm", "train", "train.batch_size=abc"), "train.batch_size"),
    (("contrast-report", "foo.bar="), "foo.bar"),
    # settings out of range, refused before any data are made
    (("pretrain", "pretrain.epochs=-1"), "pretrain.epochs"),
    (("train", "train.epochs=0"), "train.epochs"),
    (("train", "--budget", "-5"), "--budget"),
    (("train", "train.budget=1.5"), "train.budget"),
    (("ebm", "train", "train.tau=-1"), "train.tau"),
    (("ebm", "sweep", "sweep.taus=[1, abc]"), "sweep.taus"),
    (("contrast-evaluate", "--backbone", "{d}/nope.pt"), "--backbone"),
    (("contrast-evaluate", "--split", "bogus"), "split"),
    (("train-detector", "--init", "graspcontrast", "--backbone", "{d}/nope.pt"), "--backbone"),
    # options
    (("generate", "--objects-per-category", "-1"), "--objects-per-category"),
    (("generate", "--grasps-per-scene", "0"), "--grasps-per-scene"),
    (("split", "--root", "{d}/emptydir", "--out", "{d}/splits"), "no objects"),
    (("ebm", "generate", "--noise-sigma", "nan"), "--noise-sigma"),
    (("generate-scenes", "--user-scale", "-1"), "--user-scale"),
    (("labels", "--root", "{d}/root", "--scenes", "0", "--num-cpus", "0"), "--num-cpus"),
    (("labels", "--root", "{d}/root", "--scenes", "0", "--retries", "-1"), "--retries"),
    (("labels", "--root", "{d}/root", "--scenes", "0", "--points", "0"), "--points"),
    (("labels", "--root", "{d}/root", "--scenes", "0", "--device", "bogus"), "--device"),
    (("labels", "--root", "{d}/root", "--scenes", "0", "--camera", "bogus"), "--camera"),
    (("labels", "--root", "{d}/root", "--scenes", "1"), "scene_0001"),
    (("evaluate-grasps", "--root", "{d}/root", "--dump-dir", "{d}/nope"), "--dump-dir"),
]


@pytest.mark.parametrize("args, names", CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_line_naming_it_and_starts_nothing(files, tmp_path, monkeypatch, capsys, args, names):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PCGRASP_TRACEBACK", raising=False)
    before = sorted(os.listdir(tmp_path))
    argv = [a.format(d=files) for a in args]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, (argv, rc, err)  # bad input: argparse's status, whichever layer refuses it
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in err, (argv, err)
    assert sorted(os.listdir(tmp_path)) == before, f"{argv} started work: {sorted(os.listdir(tmp_path))}"


def test_overrides_keep_their_types(tmp_path):
    """A setting that holds a number takes a number written either way (1e-5 is a string to
    YAML), a text setting keeps digits as text, null removes any setting, and a boolean needs a
    boolean."""
    from pcgrasp.train.config import apply_overrides

    cfg = {"train": {"lr": 1.0e-4, "epochs": 3, "out": "runs/x", "sync_bn": True}, "data": {"root": "a"}}
    got = apply_overrides(cfg, ["train.lr=1e-5", "train.epochs=5", "data.root=2024", "train.out=null",
                                "train.early_stop.patience=3", "train.sync_bn=null"])
    assert got["train"]["sync_bn"] is None and got["train"]["lr"] == 1e-5 and got["train"]["epochs"] == 5 and got["data"]["root"] == "2024"
    assert got["train"]["out"] is None and got["train"]["early_stop"] == {"patience": 3}
    for bad, key in (("train.sync_bn=1", "train.sync_bn"), ("train.lr=fast", "train.lr"),
                     ("train.epochs=.nan", "train.epochs"), ("train.epochs=", "train.epochs")):
        with pytest.raises(ValueError, match=key):
            apply_overrides(cfg, [bad])
    assert cfg["train"]["lr"] == 1.0e-4  # the config itself is not changed


LATE = [  # refused before scenes, labels or frames are made / evaluated (each used to start work)
    (("generate-scenes", "--user-meshes", "{d}/nope", "--out", "gs"), "--user-meshes"),
    (("contrast-evaluate", "--backbone", "{d}/empty.pt"), "empty.pt"),
    (("train-detector", "--init", "graspcontrast", "--backbone", "{d}/garbage.pt"), "garbage.pt"),
]


@pytest.mark.parametrize("args, names", LATE, ids=[a[0] for a, _ in LATE])
def test_unreadable_inputs_are_refused_before_any_work(files, tmp_path, monkeypatch, capsys, args, names):
    test_bad_input_is_one_line_naming_it_and_starts_nothing(files, tmp_path, monkeypatch, capsys, args, names)


def test_evaluate_grasps_checks_every_dump_file_before_evaluating(files, tmp_path, monkeypatch, capsys):
    """An incomplete dump folder is one line naming the first missing file (and how many more),
    before any frame is evaluated (it used to fail after the first frames, with progress bars)."""
    import pcgrasp.eval.grasp_ap as ap

    class Scenes:  # two scenes of two frames; the dump has only one of the four files
        def __init__(self, root, **kw):
            self.scene_ids = kw["scene_ids"]

        def camera_poses(self, s):
            return [0, 1]

    monkeypatch.setattr("pcgrasp.data.graspnet.GraspNetScenes", Scenes)
    monkeypatch.setattr(ap, "eval_frame", lambda *a, **k: pytest.fail("a frame was evaluated"))
    dump = tmp_path / "dump"
    (dump / "scene_0100" / "realsense").mkdir(parents=True)
    np.save(dump / "scene_0100" / "realsense" / "0000.npy", np.zeros((0, 17)))
    with pytest.raises(FileNotFoundError, match=r"scene_0100/realsense/0001.npy \(and 2 more\)"):
        ap.evaluate_scenes(str(files / "root"), str(dump), [100, 101])
