"""``pcgrasp show``: each kind writes its PNG and prints the path; bad input is one line naming
the argument, exit status 2, no traceback."""
import os

import numpy as np
import pytest

from conftest import needs_trimesh
from pcgrasp.cli import main
from test_vis import make_scene, tiny_ebm_checkpoint, tiny_jepa_checkpoint


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    pytest.importorskip("trimesh")
    root = str(tmp_path_factory.mktemp("show") / "gn")
    return root, make_scene(root)


def _png_ok(path):
    from PIL import Image

    img = np.asarray(Image.open(path))
    assert img.ndim == 3 and (img != 255).any()


def _shows(argv, out, capsys):
    assert main(["show", *argv, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out)
    _png_ok(out)


def _fails(argv, capsys):
    """(exit status, the stderr lines) of a failing command, usage errors (SystemExit) or bad input (main's 2)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()


@pytest.mark.pipeline
def test_show_scene_kinds(scene, tmp_path, capsys):
    from pcgrasp.labels.grasp_labels import grasp_label_path

    root, ids = scene
    _shows(["grasps", "--root", root, "--scene", "0", "--ann", "0", "--dump-dir", os.path.join(root, "dump"),
            "--top-k", "3", "--min-score", "0.2"], tmp_path / "g.png", capsys)
    _shows(["graspness", "--root", root, "--scene", "0", "--ann", "1"], tmp_path / "h.png", capsys)
    _shows(["labels", "--labels", grasp_label_path(root, ids[0]), "--top-k", "5", "--with-collision"],
           tmp_path / "l.png", capsys)


@pytest.mark.pipeline
@needs_trimesh
def test_show_ebm_and_jepa(tmp_path, capsys):
    ck = tiny_ebm_checkpoint(str(tmp_path / "ebm.pt"))
    _shows(["ebm", "--checkpoint", ck, "--grasps", "4", "--steps", "2"], tmp_path / "e.png", capsys)
    ck = tiny_jepa_checkpoint(tmp_path)
    _shows(["jepa", "--checkpoint", ck, "--split", "train", "--index", "1"], tmp_path / "j.png", capsys)
    code, lines = _fails(["show", "jepa", "--checkpoint", ck, "--split", "train", "--index", "9999"], capsys)
    assert code == 2 and len(lines) == 1 and "--index" in lines[0]


def test_default_out_is_printed(monkeypatch, tmp_path, capsys):
    import pcgrasp.cli.vis as cli_vis
    from pcgrasp.vis import Camera, Picture

    pic = Picture(np.zeros((1, 3)) + [0, 0, 1], np.zeros((1, 3), np.uint8),
                  camera=Camera(np.eye(4), np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), 64, 48))
    monkeypatch.setattr(cli_vis, "build", lambda a: pic)
    monkeypatch.chdir(tmp_path)
    assert main(["show", "labels", "--labels", "x.npz"]) == 0
    assert capsys.readouterr().out.strip() == "show_labels.png" and os.path.exists(tmp_path / "show_labels.png")


@pytest.mark.parametrize("argv, name", [
    (["show", "nope"], "kind"),
    (["show", "labels", "--labels", "/no/such/labels.npz"], "--labels"),
    (["show", "labels", "--labels", "x.npz", "--top-k", "0"], "--top-k"),
    (["show", "grasps", "--root", "/no/such/root", "--scene", "0"], "--root"),
    (["show", "grasps", "--root", ".", "--scene", "-1"], "--scene"),
    (["show", "grasps", "--root", ".", "--scene", "0", "--min-score", "nan"], "--min-score"),
    (["show", "ebm", "--checkpoint", "/no/such/model.pt"], "--checkpoint"),
    (["show", "jepa", "--checkpoint", "/no/such/model.pt"], "--checkpoint"),
    (["show", "graspness", "--root", ".", "--scene", "0", "--port", "0"], "--port"),
])
def test_bad_arguments_name_the_argument(argv, name, capsys):
    code, lines = _fails(argv, capsys)
    assert code == 2 and len(lines) == 1 and name in lines[0], lines
    assert lines[0].startswith("pcgrasp show")


@pytest.mark.pipeline
def test_bad_scene_input_is_named(scene, tmp_path, capsys):
    root, _ = scene
    for argv, name in (
            (["grasps", "--root", root, "--scene", "0", "--ann", "7"], "--ann"),
            (["grasps", "--root", root, "--scene", "5"], "--scene"),
            (["grasps", "--root", root, "--scene", "0", "--dump-dir", str(tmp_path / "none")], "--dump-dir"),
            (["graspness", "--root", root, "--scene", "0", "--ann", "2"], "--ann")):
        code, lines = _fails(["show", *argv, "--out", str(tmp_path / "x.png")], capsys)
        assert code == 2 and len(lines) == 1 and name in lines[0], lines
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    code, lines = _fails(["show", "ebm", "--checkpoint", str(bad)], capsys)
    assert code == 2 and len(lines) == 1 and "--checkpoint" in lines[0]


@pytest.mark.pipeline
def test_demo_detection_picture(scene, tmp_path):
    """``pcgrasp demo detection``'s closing picture: the run's dump on the first test frame."""
    from pcgrasp.cli.detector import _demo_picture

    root, _ = scene
    path = _demo_picture({"data": {"root": root, "test_scenes": "0"}}, root, {"anns": [0]}, str(tmp_path))
    assert path == os.path.join(str(tmp_path), "demo_detection_grasps.png")
    _png_ok(path)
