"""The half-width product study runs each way in its own process and checks each way's products against
float64 products of the same half-rounded weights (NumPy float64, the oracle)."""

from __future__ import annotations

import json

import pytest

from benchmarks.studies.half_products import main, round_to

pytest.importorskip("jax")
pytest.importorskip("torch")


def test_each_way_computes_the_products_it_times(tmp_path):
    out = tmp_path / "study.json"
    assert main(["--scale", "tiny", "--sweeps", "1", "--batch", "1,3", "--json", str(out),
                 "--ways", "numpy-f32,jax-bf16,jax-f16-upcast,torch-f16,torch-bf16-linear"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["way"], r["batch"]) for r in rows} == {(w, b) for w in ("numpy-f32", "jax-bf16", "jax-f16-upcast",
                                                                         "torch-f16", "torch-bf16-linear") for b in (1, 3)}
    for r in rows:
        # float32 products to float32's error; a half product whose result is rounded to the half type to
        # that type's (bfloat16 2^-8, float16 2^-11); widened weights multiply in float32
        limit = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[r["weights"]] if r["product"] == "engine" \
            or r["product"] == "linear" else 1e-5
        assert r["rel_error"] < limit, r
        assert r["gb_s"] > 0 and r["weight_bytes"] > 0


def test_bfloat16_rounding_is_to_nearest_even():
    import numpy as np
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -9], dtype=np.float32)
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1); 1 + 3 * 2^-8 up to 1 + 2^-6
    assert round_to(x, "bfloat16").tolist() == [1.0, 1.0, 1.0 + 2 ** -6, 1.0]


def test_an_unknown_way_is_one_line():
    with pytest.raises(SystemExit):
        main(["--ways", "jax-bf17"])
