"""Mixed precision: matrices stored in bfloat16 or float16, float32 everywhere else, against the NumPy
float64 reference and HF-shaped checkpoints."""

from __future__ import annotations


import numpy as np
import pytest

from backends import BackendError
from benchmarks.parity import TOLERANCE
from engine import GenerationError, load_model

from helpers import backend_or_skip, random_ids

# (backend, weights) pairs that have the weights' dtype on a CPU
MIXED_CASES = [("torch", "bfloat16"), ("jax", "bfloat16"), ("torch", "float16"), ("numpy", "float16")]


def relative_error(model, ids, reference):
    got = np.asarray(model.backend.to_host(model.logits(ids)), dtype=np.float64)
    return np.abs(got - reference).max() / np.abs(reference).max()


@pytest.mark.parametrize("name, weights", MIXED_CASES)
def test_mixed_matches_the_float64_reference(hf_checkpoint, name, weights):
    directory, _ = hf_checkpoint  # both naming variants
    ids = random_ids(12, 100, seed=5, batch=2)
    reference = np.asarray(load_model(directory, backend="numpy", dtype="float64").logits(ids))
    model = load_model(directory, backend=backend_or_skip(name), dtype="float32", weights=weights)
    assert model.params["wte"].dtype == model.backend.dtype(weights)  # the matrices are stored narrow
    assert model.params["blocks"][0]["mlp"]["c_fc"]["w"].dtype == model.backend.dtype(weights)
    assert model.params["blocks"][0]["mlp"]["c_fc"]["b"].dtype == model.dtype  # biases, norms, wpe are not
    assert model.params["wpe"].dtype == model.params["ln_f"]["g"].dtype == model.dtype
    logits = model.logits(ids)
    assert logits.dtype == model.dtype  # the logits come back in float32
    assert relative_error(model, ids, reference) <= TOLERANCE[f"float32+{weights}-weights"]


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_mixed_bfloat16_is_closer_to_float64_than_all_bfloat16(small_checkpoint, name):
    backend = backend_or_skip(name)
    ids = random_ids(16, 100, seed=6, batch=2)
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    mixed = relative_error(load_model(small_checkpoint, backend=backend, weights="bfloat16"), ids, reference)
    half = relative_error(load_model(small_checkpoint, backend=backend, dtype="bfloat16"), ids, reference)
    assert mixed < half


def test_strict_runs_the_mixed_path_in_the_dtypes_it_has(small_checkpoint):
    """array-api-strict has neither bfloat16 nor float16: the same casts run as float64 arithmetic on
    float32 matrices (conformance of the mixed path), and float16 weights are a one-line error."""
    backend = backend_or_skip("strict")
    ids = random_ids(10, 100, seed=7, batch=2)
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    model = load_model(small_checkpoint, backend=backend, dtype="float64", weights="float32")
    assert relative_error(model, ids, reference) <= TOLERANCE["float32"]
    prompts = [random_ids(n, 100, seed=n) for n in (2, 6)]
    assert model.generate(prompts, max_new_tokens=6) == load_model(small_checkpoint, dtype="float64").generate(
        prompts, max_new_tokens=6)
    with pytest.raises(BackendError, match="strict' has no float16") as err:
        load_model(small_checkpoint, backend=backend, weights="float16")
    assert "\n" not in str(err.value)


def test_weights_wider_than_the_arithmetic_are_refused(small_checkpoint):
    with pytest.raises(GenerationError, match="weights in float32 are wider than the float16 arithmetic"):
        load_model(small_checkpoint, dtype="float16", weights="float32")
    with pytest.raises(BackendError, match="numpy' has no bfloat16"):
        load_model(small_checkpoint, weights="bfloat16")


def greedy_margins(model, prompt, tokens):
    """Top-1 minus top-2 logit at every position that chose one of tokens (one uncached forward)."""
    logits = np.asarray(model.backend.to_host(model.logits([prompt + tokens[:-1]])), dtype=np.float64)[0]
    chosen = np.sort(logits[len(prompt) - 1:], axis=-1)
    return chosen[:, -1] - chosen[:, -2], logits


@pytest.mark.parametrize("name", ["torch", "jax-loop"])
def test_mixed_greedy_tokens_equal_float32_where_the_margins_are_wide(small_checkpoint, name):
    """Where float32's winning logit leads by more than twice the measured mixed-vs-float32 difference,
    mixed precision must choose the same tokens."""
    backend = backend_or_skip(name)
    full = load_model(small_checkpoint, backend=backend, dtype="float32")
    mixed = load_model(small_checkpoint, backend=backend, dtype="float32", weights="bfloat16")
    checked = 0
    for seed in range(40):
        prompt = random_ids(5, 100, seed=100 + seed)
        tokens = full.generate(prompt, max_new_tokens=8)
        margins, logits = greedy_margins(full, prompt, tokens)
        _, mixed_logits = greedy_margins(mixed, prompt, tokens)
        error = np.abs(mixed_logits - logits).max()
        if margins.min() <= 2 * error:
            continue  # a near-tie: either token is a correct answer at this precision
        checked += 1
        assert mixed.generate(prompt, max_new_tokens=8) == tokens, (seed, margins.min(), error)
    assert checked >= 5, f"only {checked} prompts had margins above twice the error"
