"""A peer whose package is not installed: its row says why (the install line), never a traceback, and
the bench completes."""

from __future__ import annotations

import json

import pytest

from helpers import cli


@pytest.mark.parametrize("peer, module", [("llamacpp", "llama_cpp"), ("ort", "onnxruntime")])
def test_a_peer_that_is_not_installed_gives_its_reason_and_the_bench_completes(tmp_path, peer, module):
    shadow = tmp_path / "shadow" / module
    shadow.mkdir(parents=True)
    # as if absent: what Python raises for a module it cannot find
    (shadow / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n")
    out = tmp_path / "r.json"
    result = cli("bench", "--models", "tiny", "--backends", "numpy", "--peer", peer, "--no-roofline",
                 "--no-parity", "--batch-sizes", "1", "--prompt-lens", "4", "--new-tokens", "4", "--repeats", "1",
                 "--json", out, env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert result.returncode == 0 and "Traceback" not in result.stderr
    doc = json.loads(out.read_text())
    row = next(r for r in doc["results"] if r["runner"] == peer)
    assert row["status"] == "skipped" and "pip install 'arraygpt[peers]'" in row["message"]
    assert doc["complete"] is True
