"""Generation: cached vs uncached, batching, backends against each other, sampling, seeds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arraygpt.engine import GenerationError, load_model
from arraygpt.engine.generate import generate_tokens
from arraygpt.engine.sampling import Sampling, keep_top_k, keep_top_p, sample

from helpers import backend_or_skip, random_ids


@pytest.fixture(scope="module")
def model(small_checkpoint):
    return load_model(small_checkpoint, backend="numpy", dtype="float32")


def greedy_without_cache(model, prompt, n):
    """Full recomputation each step: what the KV cache must reproduce exactly."""
    ids = list(prompt)
    for _ in range(n):
        logits = np.asarray(model.logits([ids]))
        ids.append(int(np.argmax(logits[0, -1])))
    return ids[len(prompt):]


@pytest.mark.parametrize("length", [1, 4, 17])
def test_cached_generation_equals_full_recomputation(model, length):
    prompt = random_ids(length, 100, seed=length)
    assert model.generate(prompt, max_new_tokens=20) == greedy_without_cache(model, prompt, 20)


def test_mixed_length_batch_equals_one_by_one(model):
    prompts = [random_ids(n, 100, seed=n) for n in (1, 7, 3, 12)]
    alone = [model.generate(p, max_new_tokens=12) for p in prompts]
    assert model.generate(prompts, max_new_tokens=12) == alone


def test_backends_agree_with_numpy(small_checkpoint, backend):
    """Every usable backend (float32) against our NumPy float64 forward: logits and greedy tokens."""
    ids = random_ids(12, 100, seed=8, batch=2)
    reference = load_model(small_checkpoint, backend="numpy", dtype="float64")
    expected = np.asarray(reference.logits(ids))
    model = load_model(small_checkpoint, backend=backend, dtype="float32")
    got = backend.to_host(model.logits(ids))
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
    prompts = [random_ids(n, 100, seed=n) for n in (3, 8)]
    assert model.generate(prompts, max_new_tokens=10) == reference.generate(prompts, max_new_tokens=10)


def test_same_seed_samples_the_same_on_every_backend(small_checkpoint, backend):
    prompt = random_ids(5, 100, seed=1)
    kwargs = dict(max_new_tokens=12, temperature=0.8, top_k=40, top_p=0.95, seed=1234)
    reference = load_model(small_checkpoint, backend="numpy").generate(prompt, **kwargs)
    assert load_model(small_checkpoint, backend=backend).generate(prompt, **kwargs) == reference


def test_seeds_reproduce_and_differ(model):
    prompt = random_ids(4, 100, seed=2)
    first = model.generate(prompt, max_new_tokens=20, temperature=1.0, seed=1)
    assert model.generate(prompt, max_new_tokens=20, temperature=1.0, seed=1) == first
    assert model.generate(prompt, max_new_tokens=20, temperature=1.0, seed=2) != first


def test_top_k_one_and_tiny_top_p_are_greedy(model):
    prompt = random_ids(6, 100, seed=3)
    greedy = model.generate(prompt, max_new_tokens=10)
    assert model.generate(prompt, max_new_tokens=10, temperature=1.5, top_k=1, seed=0) == greedy
    assert model.generate(prompt, max_new_tokens=10, temperature=1.5, top_p=1e-6, seed=0) == greedy


def softmax64(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def empirical(logits, sampling, n=20000, seed=0):
    from array_api_compat import numpy as xp
    rng = np.random.default_rng(seed)
    batch = xp.asarray(np.repeat(logits[None, :], n, axis=0), dtype=xp.float32)
    ids = sample(batch, xp.asarray(rng.random(n), dtype=xp.float32), sampling)
    return np.bincount(np.asarray(ids), minlength=logits.size) / n


def test_sampling_follows_softmax_of_tempered_logits():
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    for temperature in (1.0, 0.5, 2.0):
        expected = softmax64(logits / temperature)
        assert np.abs(empirical(logits, Sampling(temperature)) - expected).max() < 0.015


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    got = empirical(logits, Sampling(1.0, top_k=3))
    expected = np.zeros(6)
    expected[:3] = softmax64(logits[:3])
    assert np.abs(got - expected).max() < 0.015
    probs = softmax64(logits)  # [0.55, 0.20, 0.12, 0.07, 0.03, 0.003]: 0.8 needs the first three
    got = empirical(logits, Sampling(1.0, top_p=0.8))
    expected = np.zeros(6)
    expected[:3] = probs[:3] / probs[:3].sum()
    assert np.abs(got - expected).max() < 0.015


def test_filters_directly():
    from array_api_compat import numpy as xp
    logits = xp.asarray([[3.0, 1.0, 2.0, 0.0]], dtype=xp.float32)
    assert np.isinf(keep_top_k(logits, 2)).tolist() == [[False, True, False, True]]
    probs = xp.asarray([[0.1, 0.6, 0.3, 0.0]], dtype=xp.float32)
    assert (np.asarray(keep_top_p(probs, 0.7)) > 0).tolist() == [[False, True, True, False]]


def test_stop_token_ends_a_row_and_not_the_others(model):
    prompts = [random_ids(3, 100, seed=21), random_ids(5, 100, seed=22)]
    free = model.generate(prompts, max_new_tokens=15)
    stop = free[0][4]
    steps = list(generate_tokens(model, prompts, 15, Sampling(), None, stop_token=stop))
    first_row = [s[0] for s in steps]
    cut = free[0].index(stop)
    assert first_row[:cut] == free[0][:cut] and all(t is None for t in first_row[cut:])
    second = [s[1] for s in steps if s[1] is not None]
    assert second == (free[1][:free[1].index(stop)] if stop in free[1] else free[1])


def test_stop_token_with_the_compiled_loop(model, small_checkpoint):
    """jax-loop makes every token in one call; rows still end at their stop token."""
    looped = load_model(small_checkpoint, backend=backend_or_skip("jax-loop", "cpu"))
    prompts = [random_ids(3, 100, seed=21), random_ids(5, 100, seed=22)]
    stop = model.generate(prompts, max_new_tokens=15)[0][4]
    expected = list(generate_tokens(model, prompts, 15, Sampling(), None, stop_token=stop))
    assert list(generate_tokens(looped, prompts, 15, Sampling(), None, stop_token=stop)) == expected


def test_decode_loop_is_standard_array_api_code(small_checkpoint):
    """decode_loop run on array-api-strict by the host fori_loop: the tokens of the step-by-step loop."""
    backend = backend_or_skip("strict")
    backend.compiles_loop = True  # what jax-loop sets; ArrayBackend.fori_loop is a Python loop
    looped, stepped = load_model(small_checkpoint, backend=backend), load_model(small_checkpoint, backend="strict")
    assert type(looped.decoding).__name__ == "CompiledLoop" and type(stepped.decoding).__name__ == "StepByStep"
    prompts = [random_ids(n, 100, seed=n) for n in (2, 6)]
    for kwargs in (dict(), dict(temperature=0.9, top_k=20, seed=5)):
        assert looped.generate(prompts, max_new_tokens=9, **kwargs) == stepped.generate(prompts, max_new_tokens=9,
                                                                                         **kwargs)


def test_streaming_yields_one_step_at_a_time(model):
    prompt = random_ids(4, 100, seed=9)
    stream = model.stream(prompt, max_new_tokens=5)
    steps = [next(stream) for _ in range(5)]
    assert [s[0] for s in steps] == model.generate(prompt, max_new_tokens=5)
    assert next(stream, "done") == "done"


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=math.nan), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_bad_generation_values_are_clear_errors(model, kwargs, message):
    with pytest.raises(GenerationError, match=message):
        model.generate([1, 2, 3], **({"max_new_tokens": 5} | kwargs))


def test_prompt_errors_come_before_any_work(model):
    with pytest.raises(GenerationError, match="empty"):
        model.generate([[]], max_new_tokens=3)
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        model.generate([1, 100], max_new_tokens=3)
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        model.generate([-1], max_new_tokens=3)
    with pytest.raises(GenerationError, match="need 49 positions.*exceeds the model's context of 48"):
        model.stream([1] * 40, max_new_tokens=10)  # raised on the call, not at the first token
    with pytest.raises(GenerationError, match="exceeds the model's context of 48"):
        model.logits([[1] * 49])
    with pytest.raises(GenerationError, match="equal length"):
        model.logits([[1, 2], [3]])


@pytest.mark.parametrize("name", ["numpy", "strict"])
def test_the_recordable_step_makes_the_tokens_of_the_host_loop(small_checkpoint, name):
    """The step a CUDA graph would record (slot on the device, the cache written by a select, this step's
    uniforms as an array), replayed eagerly on NumPy and array-api-strict: the tokens of today's path,
    greedy and sampled, and cached = uncached."""
    from arraygpt.benchmarks.parity import cached_vs_uncached

    backend = backend_or_skip(name)
    backend.records_steps = True  # ArrayBackend.record is the function itself
    replayed, stepped = load_model(small_checkpoint, backend=backend), load_model(small_checkpoint, backend=name)
    assert type(replayed.decoding).__name__ == "Recorded" and type(stepped.decoding).__name__ == "StepByStep"
    prompts = [random_ids(n, 100, seed=30 + n) for n in (3, 8)]
    for kwargs in (dict(), dict(temperature=0.9, top_k=20, top_p=0.9, seed=4)):
        assert replayed.generate(prompts, max_new_tokens=11, **kwargs) == stepped.generate(prompts, max_new_tokens=11,
                                                                                           **kwargs)
    equal = [random_ids(6, 100, seed=50), random_ids(6, 100, seed=51)]
    agreement, _ = cached_vs_uncached(replayed, equal, replayed.generate(equal, max_new_tokens=10))
    assert agreement == 1.0


SAMPLERS = [("numpy", None), ("strict", None), ("torch", "cpu"), ("jax", "cpu")]


def test_a_draw_over_gpt2s_vocabulary_is_the_same_on_every_library():
    """Issue 29: with 50,257 probabilities a float32 running sum decided the token, and each library sums in its
    own order, so the same seed gave other tokens. The same logits and uniforms must now give the same ids on
    every library, plain, top-k and top-p, and those of a float64 oracle drawing from the same rounded
    probabilities (only a draw within float32 rounding of a boundary may differ from it)."""
    from arraygpt.engine.sampling import GRID
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((2, 50257)) * 2.5).astype(np.float32)  # a flat tail: thousands of tokens matter
    uniforms = rng.random(128, dtype=np.float32)
    rows, draws = np.repeat(logits, 64, axis=0), uniforms  # 128 draws: each row with 64 uniforms
    ids = {}
    for name, device in SAMPLERS:
        backend = backend_or_skip(name, device)
        xp = backend.xp
        for sampling in (Sampling(1.0), Sampling(0.9, top_k=5000), Sampling(1.1, top_p=0.8)):
            got = sample(xp.asarray(rows, device=backend.device), xp.asarray(draws, device=backend.device), sampling)
            ids.setdefault(sampling, {})[name] = backend.to_host(got).tolist()
    for sampling, by_library in ids.items():
        first = next(iter(by_library.values()))
        assert all(tokens == first for tokens in by_library.values()), sampling
    # The oracle for plain sampling: NumPy float64 over the same float32 probabilities rounded to the grid.
    probs32 = softmax(rows - rows.max(axis=-1, keepdims=True))
    grid = np.floor(probs32.astype(np.float64) * GRID) / GRID
    cdf = np.cumsum(grid, axis=-1)
    oracle = (cdf < draws.astype(np.float64)[:, None] * cdf[:, -1:]).sum(axis=-1)
    assert np.mean(oracle == np.asarray(ids[Sampling(1.0)]["numpy"])) > 0.99


def softmax(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def test_the_python_api_says_a_preset_has_random_weights():
    from arraygpt.engine.errors import RandomWeightsWarning
    with pytest.warns(RandomWeightsWarning, match="tiny has random weights"):
        load_model("tiny")
