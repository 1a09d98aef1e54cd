"""What `pip install arraygpt` installs: one namespace, arraygpt, holding the engine, the backends and the
benchmarks (the folders stay at the top of the repository; pyproject.toml's package-dir maps them), with the
suites, the GPU check's scripts and the tokenizer's asset, and nothing under another top-level name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"arraygpt": "arraygpt", "engine": "arraygpt/engine", "backends": "arraygpt/backends",
           "benchmarks": "arraygpt/benchmarks"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                           str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return next(out.glob("arraygpt-*.whl"))


def test_the_wheel_installs_nothing_outside_the_arraygpt_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.startswith("arraygpt-")} == {"arraygpt"}, tops
    # every package folder of the repository is in it (a new subfolder missing from pyproject's list fails here)
    for folder, installed in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            path = f"{installed}/{init.relative_to(ROOT / folder).as_posix()}"
            assert path in names, f"{init.relative_to(ROOT)} is not installed: add its package to pyproject.toml"
    assert "arraygpt/engine/assets/gpt2.tiktoken" in names and "arraygpt/benchmarks/suites/quick.toml" in names
    assert "arraygpt/benchmarks/gpu/check.sh" in names
    assert not [name for name in names if "/results/" in name]  # the committed results stay in the repository
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "get_backend = arraygpt.backends:get_backend" in entry_points
    assert "arraygpt = arraygpt.cli:main" in entry_points


def test_the_installed_package_runs_from_elsewhere(wheel, tmp_path):
    """Installed (not editable), away from the repository: the engine, its presets and the suites load."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    script = ("import arraygpt.engine, arraygpt.benchmarks.scenarios as s, arraygpt.engine.tokenizer as t\n"
              "print(arraygpt.engine.__file__)\n"
              "print(','.join(s.available_suites()))\n"
              "print(t.Tokenizer.gpt2().encode('Hello world'))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    where, suites, ids = out.stdout.splitlines()
    assert where.startswith(str(target)) and "quick" in suites.split(",")
    assert ids == "[15496, 995]"  # tiktoken's GPT-2 ids, from the installed asset
