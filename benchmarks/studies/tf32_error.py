"""How far TF32 products move GPT-2's logits, measured on a CPU by emulating them.

    python -m arraygpt.benchmarks.studies.tf32_error --model 124M

TF32 (NVIDIA tensor cores, `--precision tf32`) rounds each float32 input of a matrix product to a
10-bit mantissa and accumulates in float32. This runs the engine's own forward pass on NumPy with
exactly that rounding (round to nearest even) applied to both inputs of every `@`, and reports max
|logits - float64 reference| / max |reference|, the figure `arraygpt parity` compares with its
tolerance. It is an emulation: a GPU's accumulation order differs, which moves the result by about
float32's own error (1e-6), far below TF32's.
"""

from __future__ import annotations

import argparse

import numpy as np

from arraygpt.engine import load_model

from ..measure.timing import fixed_prompts


def round_to_tf32(x: np.ndarray) -> np.ndarray:
    """float32 values with the 13 low mantissa bits rounded away (to nearest, ties to even)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x0FFF) + ((bits >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return rounded.view(np.float32)


class TF32Array(np.ndarray):
    """An ndarray whose matrix products (np.matmul, `@`) see TF32-rounded inputs; every other
    operation is NumPy's, and results stay TF32Arrays so the whole forward pass is covered."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, np.ndarray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, np.ndarray) else x for x in kwargs["out"])
        if ufunc is np.matmul and method == "__call__":
            plain = [round_to_tf32(x) for x in plain]
        out = getattr(ufunc, method)(*plain, **kwargs)
        return out.view(TF32Array) if isinstance(out, np.ndarray) else out


def as_tf32(params):
    if isinstance(params, dict):
        return {k: as_tf32(v) for k, v in params.items()}
    if isinstance(params, list):
        return [as_tf32(v) for v in params]
    return np.asarray(params).view(TF32Array)


def relative_error(model_spec, batch=2, prompt_len=16, seed=0) -> dict:
    reference = load_model(model_spec, backend="numpy", dtype="float64")
    prompts = fixed_prompts(batch, prompt_len, reference.config.vocab_size, seed=seed)
    expected = np.asarray(reference.logits(prompts))
    scale = float(np.abs(expected).max())
    model = load_model(model_spec, backend="numpy", dtype="float32")
    float32 = np.asarray(model.logits(prompts), dtype=np.float64)
    model.params = as_tf32(model.params)  # NumPy does not compile: the same forward, now on TF32Arrays
    tf32 = np.asarray(model.logits(prompts)).view(np.ndarray).astype(np.float64)
    return {"model": str(model_spec), "float32": float(np.abs(float32 - expected).max() / scale),
            "tf32": float(np.abs(tf32 - expected).max() / scale)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="preset or directory (repeatable; default: tiny, 124M)")
    args = parser.parse_args()
    for spec in args.model or ["tiny", "124M"]:
        r = relative_error(spec)
        print(f"{r['model']}: relative logit error, float32 {r['float32']:.1e}, tf32 (emulated) {r['tf32']:.1e}")


if __name__ == "__main__":
    main()
