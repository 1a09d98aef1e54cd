"""Checkpoints, configs and the preset cache as a hostile or damaged disk presents them: every bad file
is one CheckpointError naming it (the safetensors library is the oracle for what a header may be), a
damaged preset is rebuilt, and concurrent processes make one preset once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from arraygpt.engine import CheckpointError, GenerationError, load_model
from arraygpt.engine.safetensors_io import read_safetensors

from helpers import cli, one_line_error, safetensors_refuses

safetensors = pytest.importorskip("safetensors")


def split(path):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(path, header, body, raw_header: bytes | None = None):
    encoded = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + body)


@pytest.fixture
def copy(small_checkpoint, tmp_path):
    directory = tmp_path / "ckpt"
    shutil.copytree(small_checkpoint, directory)
    return directory


def first_two(header):
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    return names[0], names[1]


@pytest.mark.parametrize("mutation, match", [
    ("overlap", "overlaps the tensor before it"),
    ("gap", "leaves a gap"),
    ("duplicate key", "duplicate key"),
    ("negative dim", "not a list of integers >= 0"),
    ("float dim", "not a list of integers >= 0"),
    ("negative offset", "data_offsets"),
    ("nested deep", "unreadable header"),
    ("extra field", "malformed header entry"),
    ("trailing bytes", "bytes before the file does"),
])
def test_bad_headers_are_refused_where_the_library_refuses_them(copy, mutation, match):
    path = copy / "model.safetensors"
    header, body = split(path)
    a, b = first_two(header)
    raw = None
    if mutation == "overlap":
        header[b]["data_offsets"] = [header[b]["data_offsets"][0] - 4, header[b]["data_offsets"][1] - 4]
    elif mutation == "gap":  # 4 unused bytes between the first two tensors
        start = header[b]["data_offsets"][0]
        for entry in (v for k, v in header.items() if k != "__metadata__" and v["data_offsets"][0] >= start):
            entry["data_offsets"] = [entry["data_offsets"][0] + 4, entry["data_offsets"][1] + 4]
        body = body[:start] + bytes(4) + body[start:]
    elif mutation == "duplicate key":
        text = json.dumps(header)
        raw = (text[:-1] + ", " + json.dumps(a) + ": " + json.dumps(header[a]) + "}").encode()
    elif mutation == "negative dim":
        header[a]["shape"] = [-1] + header[a]["shape"][1:]
    elif mutation == "float dim":
        header[a]["shape"] = [float(header[a]["shape"][0])] + header[a]["shape"][1:]
    elif mutation == "negative offset":
        header[a]["data_offsets"] = [-8, header[a]["data_offsets"][1]]
    elif mutation == "nested deep":
        raw = b"[" * 100_000 + b"]" * 100_000
    elif mutation == "extra field":
        header[a]["extra"] = 1
    elif mutation == "trailing bytes":
        body += b"\0" * 16
    join(path, header, body, raw)
    with pytest.raises(CheckpointError, match=match) as info:
        read_safetensors(path)
    assert "model.safetensors" in str(info.value) and len(str(info.value).splitlines()) == 1
    if mutation not in ("extra field", "duplicate key"):  # stricter than the library (it takes the last copy)
        assert safetensors_refuses(path)


def test_a_tensor_stored_under_both_names_is_refused(copy):
    path = copy / "model.safetensors"
    header, body = split(path)
    wte = header["transformer.wte.weight"]
    size = wte["data_offsets"][1] - wte["data_offsets"][0]
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header["wte.weight"] = dict(wte, data_offsets=[end, end + size])
    body += body[wte["data_offsets"][0]:wte["data_offsets"][1]]
    join(path, header, body)
    assert not safetensors_refuses(path)  # a valid file: only GPT-2's naming makes it ambiguous
    with pytest.raises(CheckpointError, match="wte.weight is stored twice"):
        load_model(copy)


def test_zero_size_tensors_are_named_not_a_traceback(copy):
    path = copy / "model.safetensors"
    header, body = split(path)
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header["transformer.h.0.extra"] = {"dtype": "F32", "shape": [0, 4], "data_offsets": [end, end]}
    join(path, header, body)
    assert not safetensors_refuses(path)
    with pytest.raises(CheckpointError, match="unexpected tensor h.0.extra"):
        load_model(copy)


def test_f16_checkpoints_load_on_every_python(copy):
    """memoryview casts to float16 only from Python 3.12; F16 travels as its bit patterns."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(copy / "model.safetensors"))
    save_file({k: v.half() for k, v in tensors.items()}, str(copy / "model.safetensors"), metadata={"format": "pt"})
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(copy, dtype=torch.float32).eval()  # float16 weights, widened
    ids = [[1, 5, 9, 33, 2]]
    with torch.no_grad():
        expected = hf(torch.tensor(ids)).logits.double().numpy()
    import numpy as np
    np.testing.assert_allclose(np.asarray(load_model(copy).logits(ids)), expected, atol=1e-4)


def test_a_config_of_a_billion_layers_is_refused_before_anything_is_enumerated(copy):
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {"n_layer": 1_000_000_000}))
    start = time.time()
    with pytest.raises(CheckpointError, match="parameters, more than its .* bytes can hold"):
        load_model(copy)
    assert time.time() - start < 5


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "not a JSON object"),
    ('{"n_layer": 2, "n_head": 4, "n_embd": 64, "vocab_size": 100, "arraygpt_synthetic": "tiny"}',
     "arraygpt_synthetic must be"),
    ("[" * 50000, "not readable JSON"),
])
def test_odd_config_files_are_one_line(copy, content, match):
    (copy / "config.json").write_text(content)
    err = one_line_error(cli("generate", "hi", "--model", copy, "-n", "1"))
    assert match in err


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_preset_is_rebuilt_from_its_seed(tmp_path, monkeypatch):
    from arraygpt.engine.presets import PresetRepaired, preset_directory
    from arraygpt.engine.synthetic import write_synthetic_checkpoint
    monkeypatch.setenv("ARRAYGPT_CACHE", str(tmp_path / "cache"))
    directory = preset_directory("tiny", 1)
    good = sha256(directory / "model.safetensors")
    with open(directory / "model.safetensors", "r+b") as f:  # zeros in the middle: finite, so no NaN check sees them
        f.seek(os.path.getsize(directory / "model.safetensors") // 2)
        f.write(bytes(4096))
    assert sha256(directory / "model.safetensors") != good
    with pytest.warns(PresetRepaired, match="does not match its digest"):
        load_model("tiny", seed=1)
    assert sha256(directory / "model.safetensors") == good
    fresh = write_synthetic_checkpoint("tiny", tmp_path / "fresh", seed=1)  # the seed's file, made apart
    assert sha256(fresh / "model.safetensors") == good


def test_an_unchanged_preset_costs_a_stat(tmp_path, monkeypatch):
    from arraygpt.engine import presets
    monkeypatch.setenv("ARRAYGPT_CACHE", str(tmp_path / "cache"))
    directory = presets.preset_directory("tiny", 0)
    reads = []
    monkeypatch.setattr(presets, "file_digests", lambda *a: reads.append(a) or {})
    assert presets.preset_directory("tiny", 0) == directory and not reads


def test_six_processes_make_one_preset_once(tmp_path):
    cache = tmp_path / "cache"
    code = ("import sys; from arraygpt.engine.source import resolve_model; "
            "print(resolve_model('tiny', seed=9).directory)")
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=os.environ | {"ARRAYGPT_CACHE": str(cache)}) for _ in range(6)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    entries = sorted(p.name for p in (cache / "synthetic").iterdir())
    assert entries == [".tiny-seed9.lock", "tiny-seed9"]  # no staging, no second copy
    load_model("tiny", seed=9)  # whole and verified


def test_an_unwritable_cache_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    err = one_line_error(cli("generate", "hi", "--model", "tiny", "-n", "1",
                             env={"ARRAYGPT_CACHE": str(tmp_path / "file" / "cache")}))
    assert "cannot use the preset cache" in err and "ARRAYGPT_CACHE" in err


def test_a_full_disk_while_writing_is_one_line(tmp_path):
    """A file size limit (ulimit -f) makes writes past 1 MB fail (EFBIG) the way a full disk fails them
    (ENOSPC): the same OSError path. (Python ignores SIGXFSZ, so the write returns the error.)"""
    import shlex
    for argv, env in ((["init", "tiny", tmp_path / "ckpt"], {}),
                      (["generate", "hi", "--model", "tiny", "-n", "1"], {"ARRAYGPT_CACHE": str(tmp_path / "cache")})):
        command = shlex.join([sys.executable, "-m", "arraygpt", *map(str, argv)])
        result = subprocess.run(["bash", "-c", f"ulimit -f 1024; exec {command}"], capture_output=True, text=True,
                                env=os.environ | env, timeout=300)
        err = one_line_error(result)
        assert "File too large" in err or "no space" in err, err
    assert not (tmp_path / "ckpt").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not [p for p in (tmp_path / "cache" / "synthetic").iterdir() if not p.name.endswith(".lock")]


@pytest.mark.parametrize("prompt", [b"\x01\x02", {1: 2, 3: 4}, {1, 2, 3}, "hello"])
def test_prompts_that_are_not_sequences_of_ids_are_refused(small_checkpoint, prompt):
    model = load_model(small_checkpoint)
    with pytest.raises(GenerationError, match="must be a sequence of token ids"):
        model.generate(prompt, max_new_tokens=2)
    with pytest.raises(GenerationError, match="must be a sequence of token ids"):
        model.generate([[1, 2], prompt], max_new_tokens=2)
