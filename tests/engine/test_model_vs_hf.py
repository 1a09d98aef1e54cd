"""Logits and greedy generation against Hugging Face's GPT2LMHeadModel (PyTorch CPU): the outside oracle."""

from __future__ import annotations

import numpy as np
import pytest

from arraygpt.engine import load_model

from helpers import backend_or_skip, hf_logits, random_ids

torch = pytest.importorskip("torch")


def test_logits_match_hf_in_both_naming_variants(hf_checkpoint):
    directory, hf_model = hf_checkpoint
    ids = random_ids(20, 100, seed=1, batch=3)
    ours = np.asarray(load_model(directory, backend="numpy", dtype="float32").logits(ids))
    expected = hf_logits(hf_model, ids)
    assert ours.shape == expected.shape == (3, 20, 100)
    np.testing.assert_allclose(ours, expected, atol=2e-5 * np.abs(expected).max(), rtol=0)


def test_float64_logits_match_hf_closely(hf_checkpoint):
    directory, hf_model = hf_checkpoint
    ids = random_ids(33, 100, seed=2, batch=1)
    ours = np.asarray(load_model(directory, backend="numpy", dtype="float64").logits(ids))
    # HF ran in float32, so float32 rounding is the whole difference.
    np.testing.assert_allclose(ours, hf_logits(hf_model, ids), atol=1e-5 * np.abs(ours).max(), rtol=0)


@pytest.mark.parametrize("backend_name", ["numpy", "jax-loop"])  # step by step, and the compiled loop
def test_greedy_generation_with_cache_matches_hf_generate(hf_checkpoint, backend_name):
    directory, hf_model = hf_checkpoint
    model = load_model(directory, backend=backend_or_skip(backend_name), dtype="float32")
    for seed, length in [(3, 5), (4, 12), (5, 1)]:
        prompt = random_ids(length, 100, seed=seed)
        with torch.no_grad():
            expected = hf_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=30, min_new_tokens=30,
                                         pad_token_id=0, eos_token_id=None, attention_mask=torch.ones(1, length))
        assert model.generate(prompt, max_new_tokens=30) == expected[0, length:].tolist()


def test_batched_greedy_generation_matches_hf_one_by_one(hf_checkpoint):
    directory, hf_model = hf_checkpoint
    model = load_model(directory, backend="numpy", dtype="float32")
    prompts = [random_ids(n, 100, seed=10 + n) for n in (3, 9, 6)]
    expected = []
    for prompt in prompts:
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=15, min_new_tokens=15,
                                    pad_token_id=0, eos_token_id=None, attention_mask=torch.ones(1, len(prompt)))
        expected.append(out[0, len(prompt):].tolist())
    assert model.generate(prompts, max_new_tokens=15) == expected


def test_synthetic_checkpoint_loads_in_hf_with_same_logits(tmp_path):
    """What `arraygpt init` writes is a checkpoint HF reads, and HF computes our logits from it."""
    from transformers import GPT2LMHeadModel

    from arraygpt.engine.synthetic import write_synthetic_checkpoint

    directory = write_synthetic_checkpoint("tiny", tmp_path / "tiny", seed=7)
    hf_model = GPT2LMHeadModel.from_pretrained(directory).eval()
    ids = random_ids(16, 50257, seed=3, batch=2)
    ours = np.asarray(load_model(directory).logits(ids))
    expected = hf_logits(hf_model, ids)
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
