"""The floors a measured figure is compared with: bytes a decode step must read, FLOPs a prefill must do,
from the model's shape alone (the probes that measure a device's bandwidth and matmul rate are
benchmarks/measure/probes.py; benchmarks/judge/derive.py takes the best of every library on each device as the
machine's ceiling)."""

from __future__ import annotations

import math

from arraygpt.backends.mesh import parse_mesh
from arraygpt.engine.config import ITEMSIZE, GPTConfig, expected_shapes
from arraygpt.engine.llama.config import LlamaConfig, expected_shapes as llama_shapes

# Weight formats only a peer reads (llama.cpp's Q8_0: blocks of 32 int8 weights and one float16 scale),
# and their bytes per weight. Their rows are their own numerics: no backend of ours runs them.
QUANTIZED = {"q8_0": 34 / 32}


def weight_bytes(weights: str) -> float:
    """Bytes per stored weight of a dtype or a quantized format."""
    return QUANTIZED[weights] if weights in QUANTIZED else ITEMSIZE[weights]


def matrix_shapes(config: GPTConfig | LlamaConfig) -> dict[str, tuple[int, ...]]:
    """The weight products' matrices, as the checkpoint stores them. GPT-2: the four linear weights of each
    block (HF's Conv1D, [n_in, n_out]) and wte ([V, C], the tied logits). The Llama family: the seven
    projections of each block and the logits' table (lm_head, or embed_tokens when tied)."""
    if isinstance(config, LlamaConfig):
        head = "embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"
        return {name: shape for name, shape in llama_shapes(config).items()
                if name == head or name.endswith("_proj.weight")}
    return {name: shape for name, shape in expected_shapes(config).items()
            if name == "wte.weight" or (name.endswith(".weight") and len(shape) == 2 and name.startswith("h."))}


def cache_width(config) -> int:
    """Keys (or values) one layer caches per token: GPT-2's n_embd; a grouped-query model's key/value heads
    x head size (Qwen2.5 0.5B: 128, not 896)."""
    return config.n_kv_head * config.head_dim if isinstance(config, LlamaConfig) else config.n_embd


def table_read_row_by_row(config) -> int:
    """Parameters of tables a step reads one row of (GPT-2's wpe; an untied embedding table)."""
    if isinstance(config, LlamaConfig):
        return 0 if config.tie_word_embeddings else config.vocab_size * config.n_embd
    return config.n_positions * config.n_embd


def matrix_params(config: GPTConfig) -> int:
    """Parameters of the weight products. A mixed-precision run stores these in the weights' dtype;
    everything else stays in the dtype."""
    return sum(math.prod(shape) for shape in matrix_shapes(config).values())


def decode_bytes_per_step(config: GPTConfig, dtype: str, batch: int, context: float, weights: str | None = None) -> float:
    """Weights read once per step (only one row of wpe or an untied embedding), plus every cached key and
    value attended to (the cache is kept in the dtype). The matrices count at the weights' bytes (Q8_0: 34
    per 32)."""
    matrices = matrix_params(config)
    row_by_row = table_read_row_by_row(config)
    rest = config.n_params - row_by_row + (config.n_embd if row_by_row else 0) - matrices
    cache = 2 * config.n_layer * batch * context * cache_width(config)
    return matrices * weight_bytes(weights or dtype) + (rest + cache) * ITEMSIZE[dtype]


def prefill_flops(config: GPTConfig, batch: int, prompt_len: int) -> float:
    """Matmul FLOPs of a prefill: every block weight per token, causal attention, last-position logits."""
    if isinstance(config, LlamaConfig):
        block_params = sum(math.prod(s) for n, s in llama_shapes(config).items() if n.startswith("layers."))
        width = config.n_head * config.head_dim  # scores and weighted values per query head
    else:
        block_params = sum(math.prod(s) for n, s in expected_shapes(config).items() if n.startswith("h."))
        width = config.n_embd
    weights = 2 * block_params * batch * prompt_len
    attention = 2 * 2 * config.n_layer * batch * width * prompt_len * (prompt_len + 1) / 2
    logits = 2 * batch * config.n_embd * config.vocab_size
    return weights + attention + logits


def allreduce_bytes_per_step(config: GPTConfig, dtype: str, batch: int, mesh: str) -> float:
    """Bytes each tensor-parallel group all-reduces per decode step, from the layout (engine/layout.py):
    the attention and MLP output products of every block end in a partial sum over the tp devices, and so
    does the embedding lookup in a vocabulary split over them: (2 n_layer + 1) all-reduces of [B/dp, C]
    activations. (A ring all-reduce moves 2 (tp-1)/tp times that payload through each device's links.)
    Data parallelism adds none: each dp row decodes its own prompts."""
    spec = parse_mesh(mesh)
    if spec.tp == 1:
        return 0.0
    rows = -(-batch // spec.dp)
    return (2 * config.n_layer + 1) * rows * config.n_embd * ITEMSIZE[dtype]


def decode_floor_tps(config, dtype, batch, prompt_len, new_tokens, bandwidth_bytes_s, weights=None) -> float:
    """Tokens/s if every decode step only streamed its bytes at the measured bandwidth."""
    mean_context = prompt_len + new_tokens / 2
    return batch * bandwidth_bytes_s / decode_bytes_per_step(config, dtype, batch, mean_context, weights)


def prefill_ceiling_tps(config, batch, prompt_len, flops_s) -> float:
    return batch * prompt_len * flops_s / prefill_flops(config, batch, prompt_len)
