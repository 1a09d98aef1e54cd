"""A checkpoint in the Hugging Face layout (GPT-2 or the Llama family) written as GGUF, for the llama.cpp peer.

Written with the `gguf` package (the library of llama.cpp's own converter) the way llama.cpp's
convert_hf_to_gguf.py writes GPT-2 (conversion/gpt2.py there): the Conv1D matrices transposed to
[n_out, n_in], HF names mapped to GGUF's (token_embd, position_embd, blk.N.attn_qkv, ...), norms and
biases in float32, matrices in the file type asked for, GPT-2's byte-level BPE vocabulary and merges from
the checkpoint's vocab.json and merges.txt. A tied lm_head is not stored: llama.cpp reuses token_embd.

The Llama family as the converter's LlamaModel and Qwen2Model write it (architecture llama for llama and
mistral, qwen2 for qwen2): attn_q/attn_k/attn_v/attn_output, ffn_gate/ffn_up/ffn_down, attn_norm/ffn_norm;
for the llama architecture q and k rows permuted from HF's rotate-half order to GGML's interleaved pairs
(LlamaModel.permute; qwen2 keeps HF's order, its rope is GGML's NEOX type); Llama 3's rope scaling as the
rope_freqs tensor of per-frequency factors; the byte-level BPE vocabulary from tokenizer.json.

Each file is made once per checkpoint and type, in the cache ($ARRAYGPT_CACHE/gguf), written to a
temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from arraygpt.backends.host import host_array
from arraygpt.engine.checkpoint import load_checkpoint as load_gpt2_checkpoint
from arraygpt.engine.families import load_checkpoint, read_config
from arraygpt.engine.llama.checkpoint import INV_FREQ
from arraygpt.engine.presets import cache_dir

# GGUF file types the peer reads: the matrices' storage; norms and biases stay float32 in every one.
FILE_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16", "Q8_0": "MOSTLY_Q8_0"}

_BLOCK = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
          "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
_TOP = {"wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm", "lm_head": "output"}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gguf_name(name: str, blocks: str = "h.", block_parts: dict = _BLOCK, top: dict = _TOP) -> str:
    """An HF tensor name as GGUF's: 'h.3.attn.c_attn.weight' -> 'blk.3.attn_qkv.weight' (GPT-2's maps by
    default; blocks="layers." with the Llama family's); 'wte.weight' -> 'token_embd.weight'."""
    stem, kind = name.rsplit(".", 1)
    if stem.startswith(blocks):
        block, part = stem.removeprefix(blocks).split(".", 1)
        return f"blk.{block}.{block_parts[part]}.{kind}"
    return f"{top[stem]}.{kind}"


def gguf_tensors(directory: Path):
    """(GGUF name, float32 array laid out as llama.cpp reads it) for every tensor of the checkpoint."""
    _, tensors = load_gpt2_checkpoint(directory)
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


_LLAMA_BLOCK = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down"}
_LLAMA_TOP = {"embed_tokens": "token_embd", "norm": "output_norm", "lm_head": "output"}


def llama_gguf_name(name: str) -> str:
    """'layers.3.self_attn.q_proj.weight' -> 'blk.3.attn_q.weight'; 'embed_tokens.weight' -> 'token_embd.weight'."""
    return gguf_name(name, "layers.", _LLAMA_BLOCK, _LLAMA_TOP)


def interleave_rotary(data: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's q/k rows (per head: the first halves of the rotated pairs, then the second halves) in GGML's
    order (each pair adjacent), as llama.cpp's converter permutes them for the llama architecture."""
    return data.reshape(n_heads, 2, data.shape[0] // n_heads // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)


def rope_factors(config) -> np.ndarray:
    """Llama 3's scaling as llama.cpp reads it: each rotary frequency's divisor (1 kept, factor stretched)."""
    plain = [1.0 / config.rope_theta ** (i / config.head_dim) for i in range(0, config.head_dim, 2)]
    return np.asarray([p / s for p, s in zip(plain, config.inv_freq)], dtype=np.float32)


def llama_gguf_tensors(directory: Path, config, arch: str):
    _, tensors = load_checkpoint(directory)
    for name, tensor in tensors.items():
        if name == INV_FREQ:
            continue
        data = host_array(tensor).astype(np.float32, copy=False)
        if arch == "llama" and name.endswith(("q_proj.weight", "q_proj.bias")):
            data = interleave_rotary(data, config.n_head)
        elif arch == "llama" and name.endswith(("k_proj.weight", "k_proj.bias")):
            data = interleave_rotary(data, config.n_kv_head)
        yield llama_gguf_name(name), np.ascontiguousarray(data)
    if config.rope_scaling is not None:
        yield "rope_freqs.weight", rope_factors(config)


def _add_llama_metadata(writer, directory: Path, config) -> None:
    writer.add_block_count(config.n_layer)
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_kv_head)
    writer.add_rope_freq_base(float(config.rope_theta))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_vocab_size(config.vocab_size)
    _add_tokenizer_json(writer, directory, config)


def _add_tokenizer_json(writer, directory: Path, config) -> None:
    """A byte-level BPE tokenizer.json as llama.cpp reads it: token strings in id order (unused ids padded),
    merges, special tokens as control tokens."""
    import gguf
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec.get("model", {})
    tokens = [f"[PAD{i}]" for i in range(config.vocab_size)]
    types = [gguf.TokenType.UNUSED] * config.vocab_size
    for token, index in model.get("vocab", {}).items():
        if index < config.vocab_size:
            tokens[index], types[index] = token, gguf.TokenType.NORMAL
    for added in spec.get("added_tokens", []):
        if added["id"] < config.vocab_size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if config.eos_token_id is not None and config.eos_token_id < config.vocab_size:
        writer.add_eos_token_id(config.eos_token_id)


def _add_gpt2_metadata(writer, directory: Path, config) -> None:
    writer.add_block_count(config.n_layer)
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    _add_vocabulary(writer, directory, config)


def write_gguf(directory: Path, path: Path, file_type: str = "F32") -> Path:
    """Write the checkpoint at directory as a GGUF file of file_type (F32, F16, BF16 or Q8_0) at path."""
    import gguf
    if file_type not in FILE_TYPES:
        raise ValueError(f"GGUF file type {file_type!r}: one of {', '.join(FILE_TYPES)}")
    directory = Path(directory)
    config = read_config(directory / "config.json")
    if config.family == "llama":
        arch = "qwen2" if config.model_type == "qwen2" else "llama"
        metadata, tensors = _add_llama_metadata, llama_gguf_tensors(directory, config, arch)
    else:
        arch, metadata, tensors = "gpt2", _add_gpt2_metadata, gguf_tensors(directory)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        writer.add_name(directory.name)
        writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[file_type]))
        metadata(writer, directory, config)
        for name, data in tensors:
            # rope_freqs stays float32, as the converter keeps it (1-D tensors do in every file type)
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
    directory = Path(directory).resolve()
    digest = hashlib.sha256(str(directory).encode())
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"):
        if not (directory / name).exists() and name != "config.json":
            continue
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
