"""Inputs people pass: NumPy ids, text that is not UTF-8, broken checkpoints, non-finite numbers, and a
prompt that fills the whole context."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from arraygpt.engine import CheckpointError, GenerationError, TokenizerError, Tokenizer, load_model

from helpers import backend_or_skip, hf_logits, random_ids

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture(scope="module")
def model(small_checkpoint):
    return load_model(small_checkpoint, backend="numpy", dtype="float32")


def test_numpy_ids_give_the_same_logits_and_tokens_as_ints(model):
    ids = random_ids(9, 100, seed=3, batch=2)
    expected = np.asarray(model.logits(ids))
    for same in (np.asarray(ids), np.asarray(ids, dtype=np.int32), [np.asarray(row) for row in ids],
                 [[np.int64(t) for t in row] for row in ids]):
        np.testing.assert_array_equal(np.asarray(model.logits(same)), expected)
    prompt = ids[0]
    tokens = model.generate(prompt, max_new_tokens=6)
    assert model.generate(np.asarray(prompt), max_new_tokens=6) == tokens  # a 1-D array is one prompt
    assert model.generate([np.uint16(t) for t in prompt], max_new_tokens=6) == tokens
    assert model.generate(np.asarray([prompt, prompt]), max_new_tokens=6) == [tokens, tokens]


def test_bad_ids_are_named_as_plain_numbers(model):
    with pytest.raises(GenerationError, match=r"token id 630 outside the vocabulary \[0, 100\)"):
        model.logits(np.asarray([[1, 630]]))
    with pytest.raises(GenerationError, match=r"token id -2 outside"):
        model.generate([np.int64(3), np.int64(-2)], max_new_tokens=2)
    with pytest.raises(GenerationError, match=r"has True, which is not a token id"):
        model.generate([[1, True]], max_new_tokens=2)  # a bool is not an id, even though True == 1
    with pytest.raises(GenerationError, match=r"has np.True_, which is not a token id"):
        model.generate([[1, np.True_]], max_new_tokens=2)
    with pytest.raises(GenerationError, match=r"has 1.0, which is not a token id"):  # a float array
        model.logits(np.asarray([[1, 1.5]]))


@pytest.mark.parametrize("command", [["tokenize"], ["generate", "--model", "tiny", "-n", "2"]])
def test_text_that_is_not_utf8_is_one_line(command):
    """Python turns argv bytes that are not UTF-8 into lone surrogates; encoding them used to raise."""
    out = subprocess.run([sys.executable, "-m", "arraygpt", command[0], b"caf\xe9", *command[1:]],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "not valid UTF-8 (byte 0xe9 at character 3)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    piped = subprocess.run([sys.executable, "-m", "arraygpt", "tokenize", "-"], input=b"caf\xe9", capture_output=True)
    assert piped.returncode == 2 and b"standard input is not valid UTF-8" in piped.stderr
    assert b"Traceback" not in piped.stderr


def test_tokenizer_refuses_lone_surrogates_and_keeps_real_text():
    tok = Tokenizer.gpt2()
    with pytest.raises(TokenizerError, match="not valid UTF-8"):
        tok.encode("ab\udce9")
    assert tok.decode(tok.encode("café ☕")) == "café ☕"


def broken_copy(src, dst, **config_fields):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps(config | config_fields))
    return dst


@pytest.mark.parametrize("field, value, message", [
    ("n_embd", "big", "n_embd must be an integer >= 1, got 'big'"),
    ("n_layer", -1, "n_layer must be an integer >= 1, got -1"),
    ("n_head", 0, "n_head must be an integer >= 1, got 0"),
    ("n_layer", True, "n_layer must be an integer >= 1, got True"),
    ("n_positions", 12.5, "n_positions must be an integer >= 1, got 12.5"),
    ("vocab_size", None, "vocab_size must be an integer >= 1, got None"),
    ("layer_norm_epsilon", "tiny", r"layer_norm_epsilon must be a number in \(0, 1\), got 'tiny'"),
    ("n_head", 5, r"n_embd \(64\) is not a multiple of n_head \(5\)"),
])
def test_bad_config_fields_name_the_field(small_checkpoint, tmp_path, field, value, message):
    directory = broken_copy(small_checkpoint, tmp_path / "bad", **{field: value})
    with pytest.raises(CheckpointError, match=r"config.json: " + message):
        load_model(directory)


def test_bad_config_field_on_the_command_line_is_one_line(small_checkpoint, tmp_path, capsys):
    from arraygpt.cli import main
    directory = broken_copy(small_checkpoint, tmp_path / "bad", n_embd="big")
    assert main(["generate", "hello", "--model", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "n_embd must be an integer" in err and len(err.strip().splitlines()) == 1


def poisoned_copy(src, dst, name, value, dtype=None):
    shutil.copytree(src, dst)
    path = dst / "model.safetensors"
    tensors = safetensors_torch.load_file(str(path))
    tensors[name][1, 2] = value
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("name, value, dtype", [
    ("transformer.wte.weight", float("nan"), None),                   # a view on NumPy: checked as mapped
    ("transformer.h.1.mlp.c_fc.weight", float("inf"), None),          # a transposed copy
    ("transformer.h.0.attn.c_attn.weight", float("-inf"), torch.bfloat16),  # widened from BF16 bits
])
def test_non_finite_weights_are_refused_at_load_with_the_tensor_name(small_checkpoint, tmp_path, name, value, dtype):
    directory = poisoned_copy(small_checkpoint, tmp_path / "nan", name, value, dtype)
    bare = name.removeprefix("transformer.")
    for backend in ("numpy", "jax", "torch"):
        with pytest.raises(CheckpointError, match=rf"model.safetensors: tensor {bare} holds 1 non-finite value"):
            load_model(directory, backend=backend_or_skip(backend))


def overflowing_copy(src, dst):
    """Finite weights whose MLP overflows float16 (max 65504) but not float32: NaN logits in float16."""
    shutil.copytree(src, dst)
    path = dst / "model.safetensors"
    tensors = safetensors_torch.load_file(str(path))
    tensors["transformer.h.1.mlp.c_fc.weight"] *= 3000.0  # MLP activations near 2e3..2e4
    tensors["transformer.h.1.mlp.c_proj.weight"] *= 300.0  # its output near 1e6: inf in float16
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})
    return dst


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("name, device", [("numpy", None), ("jax", "cpu"), ("jax-loop", "cpu")])
def test_non_finite_logits_are_an_error_not_token_zero(small_checkpoint, tmp_path, name, device):
    directory = overflowing_copy(small_checkpoint, tmp_path / "overflow")
    backend = backend_or_skip(name, device)
    prompt = random_ids(6, 100, seed=1)
    finite = load_model(directory, backend=backend, dtype="float32").generate(prompt, max_new_tokens=4)
    assert len(finite) == 4  # float32 holds these activations
    half = load_model(directory, backend=backend, dtype="float16")
    assert not np.isfinite(np.asarray(backend.to_host(half.logits([prompt])), dtype=np.float64)).all()
    with pytest.raises(GenerationError, match="non-finite logits .* for the prompt at new token 0"):
        half.generate(prompt, max_new_tokens=4)
    with pytest.raises(GenerationError, match="non-finite logits"):
        half.generate(prompt, max_new_tokens=4, temperature=0.7, top_k=5, seed=1)


@pytest.fixture(scope="module")
def tiny():
    from transformers import GPT2LMHeadModel

    from arraygpt.engine.source import resolve_model
    directory = resolve_model("tiny").directory
    return directory, GPT2LMHeadModel.from_pretrained(directory).eval()


@pytest.mark.parametrize("backend_name", ["numpy", "jax", "jax-loop"])
def test_a_prompt_of_the_whole_context_makes_one_token(tiny, backend_name):
    """1024 prompt tokens + 1 new: the new token comes from the prompt's last logits (HF's greedy token)."""
    directory, hf_model = tiny
    prompt = random_ids(1024, 50257, seed=11)
    expected = int(np.argmax(hf_logits(hf_model, [prompt])[0, -1]))
    model = load_model(directory, backend=backend_or_skip(backend_name))
    assert model.generate(prompt, max_new_tokens=1) == [expected]
    with pytest.raises(GenerationError, match="1024 prompt tokens \\+ 2 new tokens need 1025 positions"):
        model.generate(prompt, max_new_tokens=2)
    with pytest.raises(GenerationError, match="1025 prompt tokens \\+ 1 new tokens need 1025 positions") as err:
        model.generate(prompt + [1], max_new_tokens=1)
    assert "\n" not in str(err.value)


def test_a_prompt_over_the_context_is_one_line_on_the_command_line(capsys):
    from arraygpt.cli import main
    assert main(["generate", "a" + " a" * 1024, "--model", "tiny", "-n", "1"]) == 2  # 1025 tokens
    err = capsys.readouterr().err
    assert "1025 prompt tokens + 1 new tokens need 1025 positions" in err and len(err.strip().splitlines()) == 1
