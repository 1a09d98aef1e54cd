"""Checkpoint loading: naming variants, zero-copy mapping, every validation error, synthetic presets."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from arraygpt.engine import CheckpointError, ModelNotFoundError, load_model
from arraygpt.engine.checkpoint import LINEAR_WEIGHT_SUFFIXES, load_checkpoint
from arraygpt.engine.safetensors_io import read_safetensors
from arraygpt.engine.config import PRESETS, expected_shapes
from arraygpt.engine.synthetic import write_synthetic_checkpoint

safetensors_torch = pytest.importorskip("safetensors.torch")
torch = pytest.importorskip("torch")


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_tensors(directory, edit):
    """Rewrite model.safetensors through the safetensors library after edit(dict of tensors)."""
    path = directory / "model.safetensors"
    tensors = safetensors_torch.load_file(str(path))
    edit(tensors)
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})


def test_both_naming_variants_give_the_same_weights(hf_checkpoint, small_checkpoint):
    directory, _ = hf_checkpoint
    config, tensors = load_checkpoint(directory)
    _, reference = load_checkpoint(small_checkpoint)
    assert set(tensors) == set(reference)  # attn.bias, masked_bias, prefixes all normalized away
    for name in reference:
        np.testing.assert_array_equal(np.asarray(tensors[name].data), np.asarray(reference[name].data))


def test_numpy_weights_are_read_only_views_of_the_file(small_checkpoint):
    model = load_model(small_checkpoint, backend="numpy")
    wte = model.params["wte"]
    assert not wte.flags.writeable and not wte.flags.owndata  # a view of the mapped file, not a copy
    with pytest.raises(ValueError):
        wte[0, 0] = 1.0


def test_124M_load_keeps_only_the_transposed_linear_weights_resident(tmp_path):
    """Loading the synthetic 124M (498 MB of float32) on NumPy: the linear weights are copied (transposed)
    and their file pages released; every other tensor stays an untouched view of the mapped file."""
    write_synthetic_checkpoint("124M", tmp_path / "124M", seed=0)
    script = f"""
import re
def rss():
    status = open('/proc/self/status').read()
    return [int(re.search(key + r":\\s+(\\d+) kB", status).group(1)) * 1024 for key in ("RssAnon", "RssFile")]
from arraygpt.engine import load_model
import arraygpt.backends.numpy
before = rss()
model = load_model({str(tmp_path / '124M')!r})
print(*[after - start for after, start in zip(rss(), before)])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    anon, file = map(int, out.split())
    linear = sum(math.prod(shape) * 4 for name, shape in expected_shapes(PRESETS["124M"]).items()
                 if name.endswith(LINEAR_WEIGHT_SUFFIXES))
    assert linear * 0.95 < anon < linear + 30 * 2**20, f"anonymous memory grew {anon / 2**20:.0f} MiB"
    assert file < 20 * 2**20, f"file-backed pages grew {file / 2**20:.0f} MiB: released pages stayed resident"


@pytest.mark.parametrize("case, match", [
    ("missing", "missing tensor h.1.mlp.c_fc.weight"),
    ("unexpected", "unexpected tensor h.2.ln_1.weight"),
    ("misshaped", r"tensor h.0.attn.c_attn.weight has shape \[64, 191\], expected \[64, 192\]"),
    ("config", "missing tensor h.2"),
])
def test_bad_tensors_name_the_file_and_the_tensor(small_checkpoint, tmp_path, case, match):
    directory = copy_checkpoint(small_checkpoint, tmp_path / case)
    if case == "missing":
        edit_tensors(directory, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    elif case == "unexpected":
        edit_tensors(directory, lambda t: t.__setitem__("transformer.h.2.ln_1.weight", torch.ones(64)))
    elif case == "misshaped":
        edit_tensors(directory, lambda t: t.__setitem__(
            "transformer.h.0.attn.c_attn.weight", t["transformer.h.0.attn.c_attn.weight"][:, :191].contiguous()))
    else:  # the config promises a layer the tensors do not have
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps(config | {"n_layer": 3}))
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(directory)
    assert "model.safetensors" in str(err.value)


def test_truncated_file(small_checkpoint, tmp_path):
    directory = copy_checkpoint(small_checkpoint, tmp_path / "cut")
    path = directory / "model.safetensors"
    os.truncate(path, path.stat().st_size - 100)
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor .*truncated"):
        load_model(directory)


@pytest.mark.parametrize("content, match", [
    (b"", "truncated"),
    ((10**9).to_bytes(8, "little") + b"{}", "unreadable header"),
    ((5).to_bytes(8, "little") + b"{nope", "unreadable header"),
    ((2).to_bytes(8, "little") + b"[]", "unreadable header"),
])
def test_unreadable_header(small_checkpoint, tmp_path, content, match):
    directory = copy_checkpoint(small_checkpoint, tmp_path / "bad")
    (directory / "model.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=f"model.safetensors: {match}"):
        load_model(directory)


def test_missing_files_and_bad_config(small_checkpoint, tmp_path):
    directory = copy_checkpoint(small_checkpoint, tmp_path / "c")
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not readable JSON"):
        load_model(directory)
    (directory / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_model(directory)
    directory = copy_checkpoint(small_checkpoint, tmp_path / "m")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_model(directory)


def test_model_specs_that_do_not_resolve(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such directory"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="unknown preset '125M'"):
        load_model("125M")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        load_model(str(tmp_path / "file"))
    # No network here (and HF_HUB_OFFLINE in tests): a hub id fails with how to get the weights.
    with pytest.raises(ModelNotFoundError, match="pass --model DIR"):
        load_model("openai-community/gpt2")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synthetic_checkpoints_are_deterministic_per_seed(tmp_path):
    a = write_synthetic_checkpoint("tiny", tmp_path / "a", seed=3)
    b = write_synthetic_checkpoint("tiny", tmp_path / "b", seed=3)
    c = write_synthetic_checkpoint("tiny", tmp_path / "c", seed=4)
    assert sha256(a / "model.safetensors") == sha256(b / "model.safetensors") != sha256(c / "model.safetensors")
    assert sorted(p.name for p in a.iterdir()) == ["arraygpt-digest.json", "config.json", "merges.txt",
                                                   "model.safetensors", "vocab.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_synthetic_weights_follow_gpt2_initialization(tmp_path):
    directory = write_synthetic_checkpoint("tiny", tmp_path / "t", seed=0)
    config = PRESETS["tiny"]
    tensors = safetensors_torch.load_file(str(directory / "model.safetensors"))  # an outside reader
    assert tensors["transformer.wte.weight"].std().item() == pytest.approx(0.02, rel=0.01)
    residual = torch.cat([tensors[f"transformer.h.{i}.mlp.c_proj.weight"].flatten() for i in range(config.n_layer)])
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * config.n_layer), rel=0.02)
    assert torch.all(tensors["transformer.h.0.ln_1.weight"] == 1) and torch.all(tensors["transformer.ln_f.bias"] == 0)
    assert torch.all(tensors["transformer.h.1.attn.c_attn.bias"] == 0)
    assert {name: list(t.shape) for name, t in tensors.items()}["transformer.h.0.mlp.c_fc.weight"] == [128, 512]


@pytest.mark.parametrize("preset, n_params", [("124M", 124_439_808), ("355M", 354_823_168),
                                              ("774M", 774_030_080), ("1558M", 1_557_611_200)])
def test_presets_have_gpt2_sizes(preset, n_params):
    assert PRESETS[preset].n_params == n_params


def test_preset_is_created_once_and_marked_random():
    model = load_model("tiny")
    assert model.synthetic and model.source.synthetic == {"preset": "tiny", "seed": 0}
    mtime = (model.source.directory / "model.safetensors").stat().st_mtime_ns
    assert load_model("tiny").source.directory == model.source.directory
    assert (model.source.directory / "model.safetensors").stat().st_mtime_ns == mtime


def test_bf16_and_f16_checkpoints_load(small_checkpoint, tmp_path):
    directory = copy_checkpoint(small_checkpoint, tmp_path / "half")
    edit_tensors(directory, lambda t: t.update({k: v.to(torch.bfloat16) for k, v in t.items()}))
    tensors = read_safetensors(directory / "model.safetensors")
    assert tensors["transformer.wte.weight"].dtype == "BF16"
    model = load_model(directory)
    expected = safetensors_torch.load_file(str(directory / "model.safetensors"))["transformer.wte.weight"].float()
    np.testing.assert_array_equal(np.asarray(model.params["wte"]), expected.numpy())
