"""Every GPT2Config field HF honours either works here (logits and greedy tokens equal to HF transformers'
on the same checkpoint) or is refused in one line naming it; none is silently dropped."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from arraygpt.engine import CheckpointError, load_model
from arraygpt.engine.config import GPTConfig

from helpers import backend_or_skip, hf_logits, make_hf_model, random_ids

torch = pytest.importorskip("torch")

IMPLEMENTED = {
    "untied lm_head": dict(tie_word_embeddings=False),
    "scale_attn_weights false": dict(scale_attn_weights=False),
    "scale_attn_by_inverse_layer_idx": dict(scale_attn_by_inverse_layer_idx=True),
    "reorder_and_upcast_attn": dict(reorder_and_upcast_attn=True),
    "n_inner": dict(n_inner=96),
    "all at once": dict(tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True, n_inner=80),
}


def saved(tmp_path, **fields):
    model = make_hf_model(seed=3, **fields)
    if fields.get("tie_word_embeddings") is False:  # make sure lm_head is not a copy of wte
        with torch.no_grad():
            model.lm_head.weight.copy_(0.1 * torch.randn_like(model.lm_head.weight))
        assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory, safe_serialization=True)
    return directory, model


@pytest.mark.parametrize("case", IMPLEMENTED, ids=list(IMPLEMENTED))
@pytest.mark.parametrize("name, device", [("numpy", None), ("jax", "cpu")])
def test_config_fields_match_hf(tmp_path, case, name, device):
    directory, hf = saved(tmp_path, **IMPLEMENTED[case])
    ids = random_ids(12, 100, seed=5, batch=2)
    ours = load_model(directory, backend=backend_or_skip(name, device), dtype="float32")
    expected = hf_logits(hf, ids)
    np.testing.assert_allclose(np.asarray(ours.logits(ids)), expected, atol=2e-4 * np.abs(expected).max())
    prompt = ids[0]
    with torch.no_grad():
        hf_tokens = hf.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                pad_token_id=0)[0, len(prompt):].tolist()
    assert ours.generate(prompt, max_new_tokens=10) == hf_tokens


def test_untied_lm_head_over_a_tensor_parallel_mesh(tmp_path):
    directory, hf = saved(tmp_path, tie_word_embeddings=False, vocab_size=101)  # 101 pads to whole shards
    backend = backend_or_skip("jax", "cpu", mesh="tp=4")
    ids = random_ids(8, 101, seed=2, batch=1)
    expected = hf_logits(hf, ids)
    np.testing.assert_allclose(np.asarray(load_model(directory, backend=backend).logits(ids)), expected,
                               atol=2e-4 * np.abs(expected).max())


def test_a_distinct_stored_lm_head_is_used_as_hf_uses_it(tmp_path):
    """tie_word_embeddings true, but the file has an lm_head.weight unlike wte: transformers 5 does not tie
    them then (older versions did), and neither does arraygpt; a copy of wte is simply the tied head."""
    directory, hf = saved(tmp_path)
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(directory / "model.safetensors"))
    tensors["lm_head.weight"] = torch.randn_like(tensors["transformer.wte.weight"])
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    from transformers import GPT2LMHeadModel
    reloaded = GPT2LMHeadModel.from_pretrained(directory).eval()
    ids = random_ids(6, 100, seed=1, batch=1)
    np.testing.assert_allclose(np.asarray(load_model(directory).logits(ids)), hf_logits(reloaded, ids), atol=1e-4)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    assert "lm_head" not in load_model(directory).params
    np.testing.assert_allclose(np.asarray(load_model(directory).logits(ids)), hf_logits(hf, ids), atol=1e-4)


def test_stop_at_eos_stops_at_the_configs_eos_token(tmp_path):
    directory, hf = saved(tmp_path)
    prompt = random_ids(6, 100, seed=4)
    with torch.no_grad():
        greedy = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                             pad_token_id=0)[0, len(prompt):].tolist()
    eos = greedy[3]
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"eos_token_id": eos}))
    with torch.no_grad():  # HF with that eos: stops at its first occurrence (and includes it)
        hf_stopped = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, pad_token_id=0,
                                 eos_token_id=eos)[0, len(prompt):].tolist()
    ours = load_model(directory).generate(prompt, max_new_tokens=8, stop_at_eos=True)
    assert ours + [eos] == hf_stopped[:hf_stopped.index(eos) + 1]


def test_an_untied_config_without_lm_head_is_refused(tmp_path):
    directory, _ = saved(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"tie_word_embeddings": False}))
    with pytest.raises(CheckpointError, match="missing tensor lm_head.weight.*tie_word_embeddings is false"):
        load_model(directory)


@pytest.mark.parametrize("field, value", [
    ("add_cross_attention", True), ("is_encoder_decoder", True), ("pruned_heads", {"0": [1]}),
    ("activation_function", "relu"), ("scale_attn_weights", "yes"), ("n_inner", 0), ("eos_token_id", -3),
    ("hidden_size", 999),  # an alias of n_embd that disagrees with it
])
def test_fields_arraygpt_does_not_implement_are_refused_by_name(small_checkpoint, tmp_path, field, value):
    directory = tmp_path / "c"
    shutil.copytree(small_checkpoint, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {field: value}))
    with pytest.raises(CheckpointError, match=field) as info:
        load_model(directory)
    assert len(str(info.value).splitlines()) == 1


def test_every_gpt2config_field_is_classified():
    """The fields of the installed transformers' GPT2Config: each used, ignored (no effect at inference)
    or refused; a new field in a later transformers fails this test instead of being dropped unseen."""
    from transformers import GPT2Config
    from arraygpt.engine.config import ALIASES, NO_EFFECT_FIELDS, REFUSED_UNLESS_DEFAULT
    import dataclasses
    used = {f.name for f in dataclasses.fields(GPTConfig)} | {"activation_function"}
    known = used | NO_EFFECT_FIELDS | set(REFUSED_UNLESS_DEFAULT) | set(ALIASES)
    fields = set(GPT2Config().to_dict()) - {"transformers_version"}
    assert fields - known == set()
