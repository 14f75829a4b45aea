"""The ``pcgrasp`` command as a user meets it: every command answers ``--help``, and bad input
(a missing checkpoint, an unknown config, a bad value) ends in one line on stderr that names the
argument, a non-zero exit status and no traceback."""
import argparse
import subprocess
import sys

import pytest

from pcgrasp.cli import command_paths, main


def test_every_command_answers_help(capsys):
    paths = command_paths()
    assert len(paths) >= 15 and ("ebm", "refine") in paths and ("evaluate",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0, path
        assert "usage: pcgrasp " + " ".join(path) in capsys.readouterr().out


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pcgrasp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, names", [
    (("evaluate", "--checkpoint", "missing.pt"), "--checkpoint"),
    (("ebm", "refine", "--checkpoint", "missing.pt"), "--checkpoint"),
    (("ebm", "train", "--config", "no_such_config"), "no_such_config"),
    (("evaluate-grasps", "--dump-dir", "no_such_dir", "--root", "no_such_root"), "no_such"),
    (("ebm", "generate", "--images", "many"), "--images"),
    (("detection-untrained", "--seeds", "-1"), "--seeds"),
])
def test_bad_input_is_one_line_naming_the_argument(tmp_path, args, names):
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_a_value_error_inside_a_command_is_one_line_and_its_traceback_on_request(tmp_path, monkeypatch, capsys):
    def boom(a):
        raise ValueError("train.lr must be positive, got -1")

    ap_args = ["split", "--root", str(tmp_path), "--out", str(tmp_path / "s")]
    monkeypatch.delenv("PCGRASP_TRACEBACK", raising=False)
    real_parse = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):  # the command's function raises the error
        a = real_parse(self, args, namespace)
        a.func = boom
        return a
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    assert main(ap_args) == 2
    assert capsys.readouterr().err == "pcgrasp split: error: train.lr must be positive, got -1\n"
    monkeypatch.setenv("PCGRASP_TRACEBACK", "1")
    with pytest.raises(ValueError, match="train.lr"):
        main(ap_args)


def test_resume_is_offered_only_by_the_commands_that_continue_a_checkpoint(capsys):
    """--resume on a command that ignored it was a promise the CLI did not keep: it is offered
    by the commands whose code passes it on (found by reading the CLI sources), and by no other."""
    import inspect
    import re

    from pcgrasp import cli

    sources = "".join(inspect.getsource(m) for m in (cli.contrast, cli.detector, cli.ebm, cli.jepa))
    assert len(re.findall(r"resume=a\.resume", sources)) == 5
    resumable = {("contrast-pretrain",), ("train-detector",), ("ebm", "train"), ("pretrain",), ("train",)}
    for path in command_paths():
        with pytest.raises(SystemExit):
            main([*path, "--help"])
        offered = "--resume" in capsys.readouterr().out
        assert offered == (path in resumable), path
