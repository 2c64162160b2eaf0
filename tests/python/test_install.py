"""The package installs with pip and works from the installed copy alone."""
import pathlib
import shutil
import subprocess
import sys

SDK_PYTHON = pathlib.Path(__file__).resolve().parents[2] / "sdk" / "python"


def test_pip_installs_the_package(tmp_path):
    target = tmp_path / "site"
    source = tmp_path / "src"  # a copy: the build leaves its egg-info beside pyproject.toml
    shutil.copytree(SDK_PYTHON, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    # --no-build-isolation: use the setuptools already installed, as a machine
    # without a package index must; with one, plain `pip install` does the same.
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    probe = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import ferry; "
         "print(ferry.__file__); print(ferry.FerryExecutor.__name__, issubclass(ferry.Timeout, ferry.Error))",
         str(target)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    where, names = probe.stdout.splitlines()
    assert pathlib.Path(where).is_relative_to(target)
    assert names == "FerryExecutor True"
