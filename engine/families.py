"""The model families the engine runs, each declared once: GPT-2 and the Llama family (Llama, Qwen2,
SmolLM2, TinyLlama, Mistral without a sliding window). Everything above the forward pass (generation
strategies, buckets, sampling, streaming, the KV cache, mixed precision, the mesh, the host boundary) takes a
model through its Family and never asks which one it is.

A checkpoint directory's config.json names its family by model_type (absent: GPT-2, as picoGPT's files).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from .checkpoint import is_matrix as gpt2_is_matrix, load_checkpoint as gpt2_load_checkpoint, nest_params as gpt2_nest
from .config import PRESETS as GPT2_PRESETS, GPTConfig
from .errors import CheckpointError
from .files import read_config_json
from .gpt2 import gpt2
from .layers import ENGINE, Primitives
from .layout import Shapes as GPT2Shapes, lay_out as gpt2_lay_out
from .llama.checkpoint import INV_FREQ, Shapes as LlamaShapes, is_matrix as llama_is_matrix, lay_out as llama_lay_out
from .llama.checkpoint import load_checkpoint as llama_load_checkpoint, nest_params as llama_nest, rope_dtype
from .llama.config import LLAMA_PRESETS, MODEL_TYPES as LLAMA_TYPES, LlamaConfig, RopeScaling
from .llama.forward import llama


@dataclasses.dataclass(frozen=True)
class Family:
    """What the engine needs to know of a model family, declared once."""

    name: str
    forward: Callable          # (params, ids, positions, mask, hp, kv_cache=None, last_only=False) -> logits, new kv
    from_hf_dict: Callable     # config.json's object -> the family's config (fields refused by name)
    load_checkpoint: Callable  # (directory, config) -> (config, {bare name: HostTensor})
    shapes: Callable           # (config, backend) -> the padded sizes a backend's shards need (ValueError if none)
    lay_out: Callable          # (bare name, stored shape, config, shapes) -> engine.layout.Layout
    is_matrix: Callable        # bare name -> True for the tensors products read (stored in the weights' dtype)
    nest_params: Callable      # ({bare name: array}, config) -> the nested params the forward pass takes
    cache_heads: Callable      # (params, config) -> the heads the KV cache holds
    table: str                 # the embedding table's bare name (the logits read it when no lm_head.weight is stored)
    tensor_dtype: Callable = lambda name, dtype: dtype  # a tensor's dtype when it is not a matrix


def _gpt2_load(directory, config):
    return gpt2_load_checkpoint(directory)


GPT2 = Family(
    name="gpt2", forward=gpt2, from_hf_dict=GPTConfig.from_hf_dict, load_checkpoint=_gpt2_load,
    shapes=GPT2Shapes.for_backend, lay_out=gpt2_lay_out, is_matrix=gpt2_is_matrix,
    nest_params=lambda flat, config: gpt2_nest(flat, config.n_layer),
    # heads as the weights hold them: a backend may pad them to whole shards (engine/layout.py)
    cache_heads=lambda params, config: params["blocks"][0]["attn"]["c_attn"]["w"].shape[0] // (3 * config.head_dim),
    table="wte.weight")

LLAMA = Family(
    name="llama", forward=llama, from_hf_dict=LlamaConfig.from_hf_dict,
    load_checkpoint=llama_load_checkpoint, shapes=LlamaShapes.for_backend, lay_out=llama_lay_out,
    is_matrix=llama_is_matrix, nest_params=llama_nest, cache_heads=lambda params, config: config.n_kv_head,
    table="embed_tokens.weight",
    tensor_dtype=lambda name, dtype: rope_dtype(dtype) if name == INV_FREQ else dtype)

FAMILIES = {"gpt2": GPT2, "llama": LLAMA}
FAMILY_OF_MODEL_TYPE = {"gpt2": GPT2, **{model_type: LLAMA for model_type in LLAMA_TYPES}}  # config.json's model_type
PRESETS: dict[str, Any] = {**GPT2_PRESETS, **LLAMA_PRESETS}  # every preset name, GPT-2's first


def family_of(config) -> Family:
    return FAMILIES[config.family]


def config_from_hf_dict(raw: dict):
    """config.json's object -> GPTConfig or LlamaConfig, by model_type (absent: GPT-2)."""
    model_type = raw.get("model_type", "gpt2")
    family = FAMILY_OF_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise CheckpointError(f"model_type is {model_type!r}; arraygpt runs gpt2 and the Llama family "
                              f"({', '.join(LLAMA_TYPES)})")
    return family.from_hf_dict(raw)


def read_config(path: Path):
    """A checkpoint's config.json, as its family's config; one-line errors naming the file."""
    raw = read_config_json(path)
    try:
        return config_from_hf_dict(raw)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None


def load_checkpoint(directory: Path):
    """(config, {bare name: HostTensor}) of a checkpoint directory of any family."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such directory")
    config = read_config(directory / "config.json")
    return family_of(config).load_checkpoint(directory, config)


def config_from_fields(fields: dict):
    """A config from dataclasses.asdict of one (as a bench file records it)."""
    if "n_kv_head" in fields:
        scaling = fields.get("rope_scaling")
        return LlamaConfig(**{**fields, "rope_scaling": RopeScaling(**scaling) if scaling else None,
                              "more_eos_token_ids": tuple(fields.get("more_eos_token_ids") or ())})
    return GPTConfig(**fields)


@dataclasses.dataclass(frozen=True)
class Hyper:
    """What the forward pass needs beside the weights (whose shapes give the rest): static numbers, so a
    compiler traces them in. forward: the family's pass; attn_scales: each layer's factor on q (1/sqrt(D)
    unless a GPT-2 config says otherwise); prims: how the primitives are computed (the engine's own, or the
    backend's, Primitives.of)."""

    forward: Callable
    head_dim: int
    eps: float
    n_vocab: int
    attn_scales: tuple[float, ...]
    prims: Primitives = ENGINE

    @classmethod
    def of(cls, config, backend=None) -> "Hyper":
        """config: a GPTConfig or LlamaConfig; backend: whose declared primitives to use (None: the engine's)."""
        return cls(family_of(config).forward, config.head_dim, config.layer_norm_epsilon, config.vocab_size,
                   config.attn_scales, Primitives.of(backend))
