"""The per-operation study of a decode step: torch's profiler and ONNX Runtime's own, each op put in one kind.
The counts are the model's (a GPT-2 step reads 4 matrices a layer and the head, and runs a softmax a layer),
not figures copied from a run."""

from __future__ import annotations

import json
import time

import pytest

from arraygpt.benchmarks.studies.step_ops import ORDER, kind_of, main, ms_per_step, per_kind, wall_per_step
from arraygpt.engine.config import PRESETS

pytest.importorskip("torch")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'arraygpt[peers]')")
pytest.importorskip("onnx", reason="onnx (the exporter's output format) is not installed")


def test_both_steps_are_profiled_per_kind_with_the_models_own_counts(tmp_path):
    out = tmp_path / "ops.json"
    assert main(["--model", "tiny", "--batch", "2", "--steps", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["result"]
    n_layer = PRESETS["tiny"].n_layer
    for side in ("torch", "ort"):
        kinds = result[side]
        assert list(kinds) == ORDER
        # every weight matrix once a step, no more (the prefill is not in these figures)
        assert kinds["weight products"]["calls"] == pytest.approx(4 * n_layer + 1), side
        assert kinds["weight products"]["ms"] > 0 and kinds["step, no profiler"]["ms"] > 0
        parts = sum(kinds[k]["ms"] for k in ORDER[:-2])
        assert parts == pytest.approx(kinds["step, profiled"]["ms"])  # the kinds and the rest add up to the step
    assert result["ort"]["attention"]["ops"]["Softmax"] > 0  # ORT's attention is its own kind, not a product
    with pytest.raises(SystemExit):  # the study's earlier file is replaced only with --force
        main(["--model", "tiny", "--steps", "1", "--json", str(out)])


def test_ops_are_put_in_kinds_by_name_and_the_rest_is_outside():
    assert kind_of("MatMul", "/hf/transformer/h.3/attn/c_proj/MatMul") == "weight products"
    assert kind_of("MatMul", "/hf/transformer/h.3/attn/MatMul_1") == "attention"
    assert kind_of("mkldnn::_linear_pointwise") == "weight products"
    assert kind_of("aten::view") == "other ops"
    kinds = per_kind({"aten::bmm": (2.0, 24), ("Concat", "concat_3"): (1.0, 12), "aten::view": (0.5, 100)}, profiled_ms=5.0, wall_ms=4.0)
    assert (kinds["attention"]["ms"], kinds["cache and copies"]["ms"], kinds["other ops"]["ms"]) == (2.0, 1.0, 0.5)
    assert kinds["outside the ops"]["ms"] == pytest.approx(1.5)
    assert kinds["step, no profiler"]["ms"] == 4.0


def test_a_model_that_is_not_there_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as ended:
        main(["--model", str(tmp_path / "missing"), "--steps", "1"])
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[-1].startswith("python -m arraygpt.benchmarks.studies.step_ops: error:"), err


def test_a_step_is_one_span_of_one_run_so_a_busy_machine_cannot_make_it_negative():
    # CI once read -12.9 ms a step when the step was two runs' difference and the shorter run was descheduled
    def run(on_token, pause=(0.0, 0.004, 0.004, 0.004)):  # the prompt's token at once, then 3 steps of 4 ms
        for seconds in pause:
            time.sleep(seconds)
            on_token()

    assert 4.0 <= ms_per_step(run) < 400
    assert 4.0 <= wall_per_step(run) <= ms_per_step(run) * 100
