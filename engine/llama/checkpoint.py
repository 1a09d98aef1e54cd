"""Hugging Face checkpoints of the Llama family: one model.safetensors or sharded files with their
model.safetensors.index.json, the tensor names normalized ('model.' dropped), shapes checked against the
config, laid out for a backend (engine/layout.py's axes), and nested for engine/llama/forward.py."""

from __future__ import annotations

import array
import dataclasses
import json
import os
from pathlib import Path

from ..errors import CheckpointError
from ..files import read_text
from ..layout import HEADS, MLP, VOCAB, Layout, as_stored, round_up
from ..safetensors_io import HostTensor, check_tensor_set, read_safetensors
from .config import LlamaConfig, expected_shapes

INDEX_FILE = "model.safetensors.index.json"
INV_FREQ = "rotary.inv_freq"  # not in the file: the rotary frequencies, computed from the config (HF's buffer)


def is_matrix(name: str) -> bool:
    """The tensors the weight products read: what a mixed-precision model stores in its weights' dtype."""
    return name in ("embed_tokens.weight", "lm_head.weight") or (name.endswith(".weight") and ("_proj." in name))


def rope_dtype(dtype: str) -> str:
    """The rotary angles' dtype: float32 (as HF computes them, whatever the model's dtype), float64 for float64."""
    return "float64" if dtype == "float64" else "float32"


@dataclasses.dataclass(frozen=True)
class Shapes:
    """The padded vocabulary a backend's shards need; heads are never padded (see check_splits)."""

    vocab_size: int

    @classmethod
    def for_backend(cls, config: LlamaConfig, backend) -> "Shapes":
        heads, mlp = backend.multiple(HEADS), backend.multiple(MLP)
        if config.n_kv_head % heads or config.n_head % heads:
            # Padding key/value heads with zeros would change which query heads share them.
            raise ValueError(f"{config.n_head} query and {config.n_kv_head} key/value heads do not split into "
                             f"{heads} shards; use a tensor-parallel size that divides {config.n_kv_head}")
        if config.intermediate_size % mlp:
            raise ValueError(f"the MLP width {config.intermediate_size} does not split into {mlp} shards")
        return cls(vocab_size=round_up(config.vocab_size, backend.multiple(VOCAB)))


def lay_out(name: str, shape: tuple[int, ...], config: LlamaConfig, shapes: Shapes) -> Layout:
    """How the forward pass takes the tensor stored under a bare HF name: as stored ([out, in]), split over
    heads, MLP features or the vocabulary (padded to whole shards)."""
    if name in ("embed_tokens.weight", "lm_head.weight"):
        want = (shapes.vocab_size, config.n_embd)
        return Layout((VOCAB, None), pad_to=None if tuple(shape) == want else want,
                      product_only=name == "lm_head.weight")
    if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
        return Layout((HEADS, None), product_only=True)
    if name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
        return Layout((HEADS,))
    if name.endswith("o_proj.weight"):
        return Layout((None, HEADS), product_only=True)
    if name.endswith(("gate_proj.weight", "up_proj.weight")):
        return Layout((MLP, None), product_only=True)
    if name.endswith("down_proj.weight"):
        return Layout((None, MLP), product_only=True)
    return as_stored(shape)  # norms, o_proj's bias, the rotary frequencies


def bare_name(name: str) -> str:
    return name.removeprefix("model.")


def _safe_file_name(name, index_path: Path) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise CheckpointError(f"{index_path}: weight_map names {json.dumps(name)[:60]}, not a file beside it")
    return name


def read_files(directory: Path) -> tuple[dict[str, HostTensor], list[Path]]:
    """Every tensor of model.safetensors, or of the shards model.safetensors.index.json lists (each tensor in
    the file the index names)."""
    single, index_path = directory / "model.safetensors", directory / INDEX_FILE
    if single.exists():
        return read_safetensors(single), [single]
    if not index_path.exists():
        others = sorted(p.name for p in directory.glob("*.bin"))
        hint = f" (found {', '.join(others)}; re-save with save_pretrained(..., safe_serialization=True))" if others else ""
        raise CheckpointError(f"{single}: missing, and no {INDEX_FILE} for sharded files{hint}")
    try:
        index = json.loads(read_text(index_path))
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{index_path}: not readable JSON ({str(err)[:100]})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: no weight_map object naming each tensor's file")
    files = sorted({_safe_file_name(f, index_path) for f in weight_map.values()})
    tensors = {}
    for file in files:
        path = directory / file
        if not path.exists():
            raise CheckpointError(f"{path}: missing ({INDEX_FILE} lists it)")
        stored = read_safetensors(path)
        for name, tensor in stored.items():
            if weight_map.get(name) != file:
                raise CheckpointError(f"{path}: holds {name}, which {INDEX_FILE} places "
                                      f"{'in ' + str(weight_map[name]) if name in weight_map else 'nowhere'}")
            tensors[name] = tensor
    absent = [name for name in weight_map if name not in tensors]
    if absent:
        raise CheckpointError(f"{directory / weight_map[absent[0]]}: does not hold {absent[0]} ({INDEX_FILE} says it does)")
    return tensors, [directory / f for f in files]


def _same_bytes(a: HostTensor, b: HostTensor) -> bool:
    return (a.dtype, a.shape) == (b.dtype, b.shape) and a.data.cast("B") == b.data.cast("B")


def inv_freq_tensor(config: LlamaConfig) -> HostTensor:
    values = array.array("d", config.inv_freq)
    return HostTensor(INV_FREQ, "F64", (len(values),), memoryview(values))


def load_checkpoint(directory: Path, config: LlamaConfig) -> tuple[LlamaConfig, dict[str, HostTensor]]:
    """The tensors of a Llama-family directory by bare name, checked against config (read by the caller),
    plus the rotary frequencies (INV_FREQ)."""
    stored, files = read_files(directory)
    where = files[0] if len(files) == 1 else directory
    implied = (f"config.json says num_hidden_layers={config.n_layer}, hidden_size={config.n_embd}, "
               f"vocab_size={config.vocab_size}, num_key_value_heads={config.n_kv_head}")
    size = sum(os.path.getsize(f) for f in files)
    if config.n_params * 2 > size:  # before the expected tensors are enumerated: even at 2 bytes a parameter
        raise CheckpointError(f"{where}: {implied}: {config.n_params:,} parameters, more than its {size:,} bytes can hold")
    tensors = {}
    for name, tensor in stored.items():
        bare = bare_name(name)
        if bare in tensors:
            raise CheckpointError(f"{where}: tensor {bare} is stored twice ({tensors[bare].name} and {name})")
        if bare.endswith("rotary_emb.inv_freq"):  # old checkpoints saved HF's buffer: recomputed from the config
            continue
        tensors[bare] = dataclasses.replace(tensor, name=bare)
    head = tensors.get("lm_head.weight")
    if config.tie_word_embeddings and head is not None:
        embed = tensors.get("embed_tokens.weight")
        if embed is not None and not _same_bytes(head, embed):
            config = dataclasses.replace(config, tie_word_embeddings=False)  # as transformers 5: a distinct head is used
        else:
            del tensors["lm_head.weight"]
    check_tensor_set(where, tensors, expected_shapes(config), implied)
    tensors[INV_FREQ] = inv_freq_tensor(config)
    return config, tensors


def nest_params(flat: dict, config: LlamaConfig) -> dict:
    """Bare HF names -> the nested dict engine/llama/forward.py takes."""
    def dense(prefix, bias=False):
        return {"w": flat[prefix + ".weight"], "b": flat[prefix + ".bias"]} if bias else {"w": flat[prefix + ".weight"]}

    blocks = [{
        "attn_norm": flat[f"layers.{i}.input_layernorm.weight"],
        "attn": {"q": dense(f"layers.{i}.self_attn.q_proj", config.qkv_bias),
                 "k": dense(f"layers.{i}.self_attn.k_proj", config.qkv_bias),
                 "v": dense(f"layers.{i}.self_attn.v_proj", config.qkv_bias),
                 "o": dense(f"layers.{i}.self_attn.o_proj", config.o_bias)},
        "mlp_norm": flat[f"layers.{i}.post_attention_layernorm.weight"],
        "mlp": {"gate": dense(f"layers.{i}.mlp.gate_proj"), "up": dense(f"layers.{i}.mlp.up_proj"),
                "down": dense(f"layers.{i}.mlp.down_proj")},
    } for i in range(config.n_layer)]
    params = {"embed": flat["embed_tokens.weight"], "blocks": blocks, "norm": flat["norm.weight"],
              "inv_freq": flat[INV_FREQ]}
    if "lm_head.weight" in flat:
        params["lm_head"] = flat["lm_head.weight"]
    return params
