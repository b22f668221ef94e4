"""The installed console script behaves as the README says (run as a subprocess, as a user would)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("efficient-video") or str(Path(sys.executable).parent / "efficient-video")


def run(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_console_script_is_installed():
    assert Path(EXE).exists(), "efficient-video is not on PATH: install with pip install -e '.[dev]'"


def test_help_lists_every_subcommand():
    from efficient_video.cli import SUBCOMMANDS
    top = run("--help")
    assert top.returncode == 0, top.stderr
    for name, sc in SUBCOMMANDS.items():
        assert name in top.stdout
        sub = run(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert ("--json" in sub.stdout) == sc.reports


def test_samples_check_json_is_one_object(tmp_path):
    # run from an unrelated directory: the samples must be found through the package, not the cwd
    res = run("samples", "--check", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # raises if stdout holds anything but one JSON object
    assert report["ok"] and report["files"] > 0


def test_bad_root_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    res = run("samples", "--check", "--root", str(missing))
    assert res.returncode == 2
    assert str(missing) in res.stderr and "Traceback" not in res.stderr


def test_python_dash_m_runs_the_cli():
    "`python -m efficient_video.cli` is the console script's `main` (for machines where the script is not on PATH)."
    res = subprocess.run([sys.executable, "-m", "efficient_video.cli", "--help"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert "efficient-video" in res.stdout and "train" in res.stdout
