"""A checkpoint in the Hugging Face GPT-2 layout written as GGUF, for the llama.cpp peer.

Written with the `gguf` package (the library of llama.cpp's own converter) the way llama.cpp's
convert_hf_to_gguf.py writes GPT-2 (conversion/gpt2.py there): the Conv1D matrices transposed to
[n_out, n_in], HF names mapped to GGUF's (token_embd, position_embd, blk.N.attn_qkv, ...), norms and
biases in float32, matrices in the file type asked for, GPT-2's byte-level BPE vocabulary and merges from
the checkpoint's vocab.json and merges.txt. A tied lm_head is not stored: llama.cpp reuses token_embd.

Each file is made once per checkpoint and type, in the cache ($ARRAYGPT_CACHE/gguf), written to a
temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

# GGUF file types the peer reads: the matrices' storage; norms and biases stay float32 in every one.
FILE_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16", "Q8_0": "MOSTLY_Q8_0"}

_BLOCK = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
          "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
_TOP = {"wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm", "lm_head": "output"}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gguf_name(name: str) -> str:
    """'h.3.attn.c_attn.weight' -> 'blk.3.attn_qkv.weight'; 'wte.weight' -> 'token_embd.weight'."""
    stem, kind = name.rsplit(".", 1)
    if stem.startswith("h."):
        _, block, part = stem.split(".", 2)
        return f"blk.{block}.{_BLOCK[part]}.{kind}"
    return f"{_TOP[stem]}.{kind}"


def gguf_tensors(directory: Path):
    """(GGUF name, float32 array laid out as llama.cpp reads it) for every tensor of the checkpoint."""
    from backends.host import host_array
    from engine.checkpoint import load_checkpoint
    _, tensors = load_checkpoint(directory)
    for name, tensor in tensors.items():
        data = host_array(tensor).astype(np.float32, copy=False)
        if name.endswith(_CONV1D):
            data = np.ascontiguousarray(data.T)  # HF Conv1D stores [n_in, n_out]
        yield gguf_name(name), data


def _quantized(data: np.ndarray, file_type: str):
    """(array to store, its GGML type or None for float32): matrices in the file's type; 1-D tensors, and
    rows Q8_0's 32-element blocks do not divide, as llama.cpp's converter keeps them (float32, float16)."""
    from gguf import GGMLQuantizationType, quants
    if data.ndim < 2 or file_type == "F32":
        return data, None
    qtype = getattr(GGMLQuantizationType, file_type)
    if file_type == "Q8_0" and data.shape[-1] % 32:
        qtype = GGMLQuantizationType.F16
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16), None
    return quants.quantize(data, qtype), qtype


def write_gguf(directory: Path, path: Path, file_type: str = "F32") -> Path:
    """Write the checkpoint at directory as a GGUF file of file_type (F32, F16, BF16 or Q8_0) at path."""
    import gguf
    from engine.checkpoint import load_checkpoint
    if file_type not in FILE_TYPES:
        raise ValueError(f"GGUF file type {file_type!r}: one of {', '.join(FILE_TYPES)}")
    directory = Path(directory)
    config, _ = load_checkpoint(directory)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, "gpt2")
    try:
        writer.add_name(directory.name)
        writer.add_block_count(config.n_layer)
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[file_type]))
        _add_vocabulary(writer, directory, config)
        for name, data in gguf_tensors(directory):
            stored, qtype = _quantized(data, file_type)
            writer.add_tensor(name, stored, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def _add_vocabulary(writer, directory: Path, config) -> None:
    """GPT-2's byte-level BPE as llama.cpp reads it: the token strings in id order, their merges, and
    <|endoftext|> as a control token (bos and eos)."""
    import gguf
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    merges = [line for line in (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    tokens = [f"[PAD{i}]" for i in range(config.vocab_size)]
    for token, index in vocab.items():
        if index < config.vocab_size:
            tokens[index] = token
    eos = vocab.get("<|endoftext|>", config.vocab_size - 1)
    types = [gguf.TokenType.CONTROL if i == eos else gguf.TokenType.NORMAL for i in range(config.vocab_size)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)


def gguf_path(directory: Path, file_type: str) -> Path:
    """Where the GGUF of a checkpoint and type lives: the cache ($ARRAYGPT_CACHE/gguf), named by the
    checkpoint's path and its files' size and time (a changed checkpoint gets a new file)."""
    from engine.presets import cache_dir
    directory = Path(directory).resolve()
    digest = hashlib.sha256(str(directory).encode())
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        stat = (directory / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir() / "gguf" / f"{directory.name}-{file_type.lower()}-{digest.hexdigest()[:16]}.gguf"


def ensure_gguf(directory: Path, file_type: str) -> Path:
    """The GGUF of this checkpoint and type, written on first use (a lock keeps concurrent benches to one)."""
    import fcntl
    path = gguf_path(directory, file_type)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            write_gguf(directory, path, file_type)
    return path
