"""The Llama family (Llama, Qwen2, Mistral-without-window) against Hugging Face transformers' own classes on the
same files: the outside oracle. HF writes the checkpoints (save_pretrained, random weights: every norm weight
and bias random too), runs in float64, and we load what it wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arraygpt.engine import CheckpointError, load_model

from helpers import backend_or_skip, random_ids

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 160
SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5)
# One checkpoint per config field that changes the math, each against HF.
VARIANTS = {
    "llama gqa untied": ("LlamaConfig", "LlamaForCausalLM", dict(tie_word_embeddings=False)),
    "llama mha tied": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=8, tie_word_embeddings=True)),
    "llama attention_bias": ("LlamaConfig", "LlamaForCausalLM", dict(attention_bias=True)),
    "llama3 rope scaling": ("LlamaConfig", "LlamaForCausalLM", dict(
        rope_theta=500000.0, max_position_embeddings=256,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 32})),
    "llama head_dim": ("LlamaConfig", "LlamaForCausalLM", dict(head_dim=16)),
    "qwen2 biases tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True, rope_theta=1e6)),
    "mistral no window": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=None)),
}


def hf_model(config_class, model_class, seed=0, **fields):
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**(SMALL | fields))
    model = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():  # HF initializes norms to 1 and biases to 0: random ones test that each is read
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith(".bias"):
                param.copy_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    config_class, model_class, fields = VARIANTS[request.param]
    model = hf_model(config_class, model_class, **fields)
    directory = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    model.save_pretrained(directory)
    return directory, model.double()


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


@pytest.mark.parametrize("backend_name", ["numpy", "strict", "jax", "torch"])
def test_float32_logits_within_1e_5_of_hf_float64(variant, backend_name):
    directory, model = variant
    ids = random_ids(40, VOCAB, seed=1, batch=2)
    ours = np.asarray(load_model(directory, backend=backend_or_skip(backend_name), dtype="float32").logits(ids),
                      dtype=np.float64)
    expected = hf_logits(model, ids)
    assert ours.shape == expected.shape == (2, 40, VOCAB)
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)


def test_float64_logits_match_hf_to_its_float32_rotary_angles(variant):
    """HF computes the rotary angles and RMSNorm in float32 even in a float64 model: that is the whole
    difference left."""
    directory, model = variant
    ids = random_ids(60, VOCAB, seed=2, batch=1)
    ours = np.asarray(load_model(directory, backend="numpy", dtype="float64").logits(ids))
    np.testing.assert_allclose(ours, hf_logits(model, ids), atol=2e-6 * np.abs(ours).max(), rtol=0)


@pytest.mark.parametrize("backend_name", ["numpy", "jax-loop", "torch"])
def test_greedy_tokens_equal_hf_generate(variant, backend_name):
    directory, model = variant
    ours = load_model(directory, backend=backend_or_skip(backend_name), dtype="float32")
    for seed, length in [(3, 5), (4, 17), (5, 1)]:
        prompt = random_ids(length, VOCAB, seed=seed)
        with torch.no_grad():
            expected = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24, min_new_tokens=24,
                                      pad_token_id=0, eos_token_id=None, attention_mask=torch.ones(1, length,
                                                                                                    dtype=torch.long))
        assert ours.generate(prompt, max_new_tokens=24) == expected[0, length:].tolist()


def test_left_padded_batch_equals_one_by_one(variant):
    directory, _ = variant
    model = load_model(directory, backend="numpy", dtype="float32")
    prompts = [random_ids(n, VOCAB, seed=20 + n) for n in (3, 11, 6)]
    batched = model.generate(prompts, max_new_tokens=10)
    assert batched == [model.generate(p, max_new_tokens=10) for p in prompts]


def test_sharded_checkpoint_with_its_index_loads(tmp_path):
    model = hf_model("Qwen2Config", "Qwen2ForCausalLM", seed=4)
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("model-*.safetensors"))) > 1
    ids = random_ids(12, VOCAB, seed=6, batch=1)
    ours = np.asarray(load_model(tmp_path, backend="numpy", dtype="float64").logits(ids))
    np.testing.assert_allclose(ours, hf_logits(model.double(), ids), atol=2e-6 * np.abs(ours).max(), rtol=0)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file beside it"):
        load_model(tmp_path, backend="numpy")


def every_field(config_class) -> set[str]:
    return set(getattr(transformers, config_class)().to_dict())


@pytest.mark.parametrize("config_class", ["LlamaConfig", "Qwen2Config", "MistralConfig"])
def test_every_field_of_the_installed_config_classes_is_classified(config_class):
    from arraygpt.engine.llama.config import HONOURED, NO_EFFECT_FIELDS, REFUSED_UNLESS
    unclassified = every_field(config_class) - HONOURED - NO_EFFECT_FIELDS - set(REFUSED_UNLESS)
    assert not unclassified, f"{config_class} fields neither honoured, ignored nor refused: {sorted(unclassified)}"


@pytest.mark.parametrize("field, value, says", [
    ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, "rope_scaling of type 'yarn'"),
    ("mlp_bias", True, "mlp_bias is true"),
    ("hidden_act", "gelu", "hidden_act is \"gelu\""),
    ("use_sliding_window", True, "use_sliding_window is true"),
    ("num_key_value_heads", 3, "not a multiple of num_key_value_heads"),
    ("some_new_field", 1, "field 'some_new_field' is not one arraygpt knows"),
])
def test_fields_that_change_the_math_and_are_not_implemented_are_refused_by_name(tmp_path, field, value, says):
    model = hf_model("Qwen2Config", "Qwen2ForCausalLM", seed=5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[field] = value
    config.pop("rope_parameters", None) if field == "rope_scaling" else None
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=None) as err:
        load_model(tmp_path, backend="numpy")
    assert says in str(err.value) and "config.json" in str(err.value)


@pytest.mark.parametrize("backend_name, options", [("torch", dict(record=True)), ("jax-loop", {}), ("jax", {}),
                                                   ("strict", {})])
def test_every_decode_strategy_makes_numpys_tokens_greedy_and_sampled(backend_name, options):
    """The tiny-llama preset (grouped heads, llama3 rope) through each strategy: recorded (torch's CPU stand-in
    for a CUDA graph), the compiled loop, step by step; sampled with a seed, batched with mixed lengths."""
    from arraygpt.backends import get_backend
    from arraygpt.backends.base import BackendUnavailable
    try:
        backend = get_backend(backend_name, **options)
    except BackendUnavailable as err:
        pytest.skip(str(err))
    reference = load_model("tiny-llama", backend="numpy", dtype="float32")
    model = load_model("tiny-llama", backend=backend, dtype="float32")
    prompts = [random_ids(n, 4096, seed=60 + n) for n in (2, 9)]
    for kwargs in (dict(), dict(temperature=0.8, top_k=50, seed=3)):
        assert model.generate(prompts, max_new_tokens=12, **kwargs) == reference.generate(prompts, max_new_tokens=12,
                                                                                          **kwargs)


@pytest.mark.parametrize("backend_name, dtype, weights", [("torch", "float32", "bfloat16"), ("jax", "float32", "bfloat16"),
                                                          ("torch", "bfloat16", None), ("numpy", "float32", "float16")])
def test_mixed_and_half_precision_stay_near_hf_float64(variant, backend_name, dtype, weights):
    """Half-width weights (mixed precision) or half-width everything: logits within half precision's rounding
    of HF's float64 (the rotary angles stay float32, as HF keeps them)."""
    directory, model = variant
    ids = random_ids(24, VOCAB, seed=7, batch=2)
    ours = load_model(directory, backend=backend_or_skip(backend_name), dtype=dtype, weights=weights)
    got = np.asarray(ours.backend.to_host(ours.logits(ids)), dtype=np.float64)
    expected = hf_logits(model, ids)
    assert ours.params["inv_freq"].dtype == ours.backend.dtype("float32")
    np.testing.assert_allclose(got, expected, atol=0.05 * np.abs(expected).max(), rtol=0)


@pytest.mark.parametrize("preset", ["smollm2-135m", "smollm2-360m", "qwen2.5-0.5b", "llama3.2-1b", "tinyllama-1.1b",
                                    "tiny-llama"])
def test_each_preset_is_the_shape_hf_builds_from_its_config(preset):
    """Every preset's config.json, as we write it, builds in transformers a model of exactly our parameter count
    (the roofline's bytes per step come from it) and of our tensors' shapes (built on the meta device: no memory)."""
    from arraygpt.engine.llama.config import LLAMA_PRESETS, expected_shapes
    config = LLAMA_PRESETS[preset]
    hf_config = transformers.AutoConfig.for_model(**config.to_hf_json())
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    assert model.num_parameters() == config.n_params
    shapes = {name.removeprefix("model."): tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == expected_shapes(config)


def test_stop_at_eos_stops_at_any_id_a_config_lists_as_hf_does(tmp_path):
    """Instruct configs list several eos ids: generation stops at the first of any of them, as HF's generate does
    (HF keeps the stop token in its output; ours ends before it)."""
    model = hf_model("LlamaConfig", "LlamaForCausalLM", seed=9)
    prompt = random_ids(6, VOCAB, seed=3)
    with torch.no_grad():
        free = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, min_new_tokens=20,
                              pad_token_id=0, eos_token_id=None)[0, 6:].tolist()
    later, earlier = free[12], free[5]
    first = next(i for i, t in enumerate(free) if t in (later, earlier))
    model.generation_config.eos_token_id = [later, earlier]
    model.config.eos_token_id = [later, earlier]
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == [later, earlier]
    ours = load_model(tmp_path, backend="numpy", dtype="float32")
    assert ours.stop_ids == (later, earlier)
    assert ours.generate(prompt, max_new_tokens=20, stop_at_eos=True) == free[:first]
    with torch.no_grad():
        hf = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, pad_token_id=0,
                            eos_token_id=[later, earlier])[0, 6:].tolist()
    assert hf[:first + 1] == free[:first + 1] and hf[first] in (later, earlier)
