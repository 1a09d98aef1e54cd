"""The declared-primitives study times torch with its own LayerNorm/GELU/softmax against the engine's on the same
backend: both make the same tokens, it writes its rows, and it never overwrites a file it did not write."""

from __future__ import annotations

import json

import pytest

from arraygpt.benchmarks.studies.declared_primitives import main

pytest.importorskip("torch")


def test_the_study_times_both_sides_and_they_make_the_same_tokens(tmp_path):
    out = tmp_path / "study.json"
    assert main(["--model", "tiny", "--batch-sizes", "1,3", "--new-tokens", "6", "--repeats", "2",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "arraygpt-study" and [r["batch"] for r in doc["rows"]] == [1, 3]
    for row in doc["rows"]:
        assert row["same_tokens"] is True and all(len(v) == 2 for v in row["tokens_per_s"].values())
        ops = row["operators_per_step"]
        assert ops["declared"] < ops["engine"]  # one operator each where the engine has 9, 8 and 5


def test_the_study_refuses_a_file_it_did_not_write(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": 1}')
    with pytest.raises(SystemExit):
        main(["--model", "tiny", "--json", str(mine)])
    assert mine.read_text() == '{"mine": 1}'
