"""The half-width product study runs each way in its own process and checks each way's products against
float64 products of the same half-rounded weights (NumPy float64, the oracle)."""

from __future__ import annotations

import json

import pytest

from arraygpt.benchmarks.studies.half_products import main, round_to

pytest.importorskip("jax")
pytest.importorskip("torch")


def test_each_way_computes_the_products_it_times(tmp_path):
    out = tmp_path / "study.json"
    assert main(["--scale", "tiny", "--sweeps", "1", "--batch", "1,3", "--json", str(out),
                 "--ways", "numpy-f32,jax-bf16,jax-f16-upcast,torch-f16,torch-bf16-linear,torch-bf16-adapter"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["way"], r["batch"]) for r in rows} == {(w, b) for w in ("numpy-f32", "jax-bf16", "jax-f16-upcast",
                                                                         "torch-f16", "torch-bf16-linear",
                                                                         "torch-bf16-adapter") for b in (1, 3)}
    for r in rows:
        # float32 products to float32's error; a half product whose result is rounded to the half type to
        # that type's (bfloat16 2^-8, float16 2^-11); widened weights multiply in float32, as the torch
        # adapter's own product does for one row (several rows are the engine's half product)
        rounded = r["product"] in ("engine", "linear") or (r["product"] == "adapter" and r["batch"] > 1)
        limit = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[r["weights"]] if rounded else 1e-5
        assert r["rel_error"] < limit, r
        assert r["gb_s"] > 0 and r["weight_bytes"] > 0
    with pytest.raises(SystemExit):  # the study's own earlier file is replaced only with --force
        main(["--scale", "tiny", "--ways", "numpy-f32", "--json", str(out)])
    assert main(["--scale", "tiny", "--sweeps", "1", "--batch", "1", "--ways", "numpy-f32", "--json", str(out),
                 "--force"]) == 0
    assert [r["way"] for r in json.loads(out.read_text())["rows"]] == ["numpy-f32"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_rounding_is_torchs(dtype):
    """The weights' values rounded to a half type as torch rounds them (nearest, ties to even), ties included."""
    import numpy as np
    import torch
    x = np.random.default_rng(0).standard_normal(10_000, dtype=np.float32)
    x = np.concatenate([x, np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11], np.float32)])
    want = torch.from_numpy(x).to(getattr(torch, dtype)).float().numpy()
    assert np.array_equal(round_to(x, dtype), want)


def test_a_wrong_option_is_one_line_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--ways", "jax-bf17"])
    assert "unknown way(s) jax-bf17" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--batch", "1,x"])
    assert "invalid batches value" in capsys.readouterr().err
    mine = tmp_path / "mine.json"
    mine.write_text('{"a user\'s": "file"}')
    with pytest.raises(SystemExit):  # refused before any way runs, the file left as it was
        main(["--ways", "numpy-f32", "--scale", "tiny", "--json", str(mine)])
    assert "refusing to overwrite" in capsys.readouterr().err
    assert mine.read_text() == '{"a user\'s": "file"}'
