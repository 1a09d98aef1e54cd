"""Helpers several test modules share (imported as a module, not from conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# One quick bench scenario: tiny model, numpy, no peers, probes or parity (a second or two).
TINY_BENCH = ["bench", "--models", "tiny", "--backends", "numpy", "--peer", "none", "--no-roofline", "--no-parity",
              "--batch-sizes", "1", "--prompt-lens", "4", "--new-tokens", "4", "--repeats", "1", "--warmup", "0"]
# The same scenario made long (tens of seconds), for tests that stop a bench while it runs.
LONG_BENCH = [a if a != "4" else "300" for a in TINY_BENCH[:-4]] + ["--repeats", "50", "--warmup", "0"]


def cli(*argv, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m arraygpt ARGV` in a process of its own (exit code, stdout, stderr as text)."""
    return subprocess.run([sys.executable, "-m", "arraygpt", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=os.environ | (env or {}) | {"COLUMNS": "160"}, **kwargs)


def start_cli(*argv, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "arraygpt", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ | (env or {}) | {"COLUMNS": "160"})


def one_line_error(result) -> str:
    """The stderr of a command that must have failed with exit 2 and one line, no traceback."""
    err = result.stderr if hasattr(result, "stderr") else result
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def wait_for(predicate, timeout=120.0, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


def bench_rows(path: Path) -> list:
    try:
        return json.loads(Path(path).read_text())["results"]
    except (OSError, ValueError, KeyError):
        return []


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def snapshot(directory: Path) -> dict:
    """Every file under directory with its bytes: what a command must not change."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def safetensors_refuses(path) -> bool:
    """The outside oracle for a safetensors file: does the safetensors library refuse to read it?"""
    import safetensors
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            for key in f.keys():
                f.get_slice(key)
        return False
    except Exception:
        return True
