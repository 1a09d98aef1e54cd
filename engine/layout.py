"""How each tensor is laid out for the forward pass, and which of its axes a backend may split.

The forward pass (engine/gpt2.py) takes linear weights as [n_out, n_in] (Hugging Face stores Conv1D
[n_in, n_out]) and the fused q/k/v weight head-major: its 3C output rows ordered (head, q|k|v, D)
instead of HF's (q|k|v, head, D), so that a contiguous block of rows holds whole heads with their
queries, keys and values. That is what tensor parallelism needs (Megatron's layout): a device that
holds rows [h0, h1) of c_attn computes those heads' attention without talking to the others.

Each tensor also names its logical axes: "heads", "mlp" and "vocab" are the features tensor
parallelism splits, "batch" is what data parallelism splits, None is never split. A backend without a
device mesh ignores them. A backend with one splits each named axis over one of its mesh axes
(backend.multiple(axis) ways) and needs it to divide: heads and the vocabulary are padded with zeros to
whole shards, which leaves every output unchanged (a zero head attends to zero values and feeds zero
columns of attn.c_proj; the logits of padded vocabulary rows are cut off).
"""

from __future__ import annotations

import dataclasses

from .config import GPTConfig
from .checkpoint import HostTensor

BATCH, HEADS, MLP, VOCAB = "batch", "heads", "mlp", "vocab"
CACHE_AXES = (BATCH, HEADS, None, None)  # the KV cache [B, H, S, D]


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Shapes:
    """The padded sizes a backend's shards need (equal to the config's without a mesh)."""

    n_head: int
    vocab_size: int

    @classmethod
    def for_backend(cls, config: GPTConfig, backend) -> "Shapes":
        multiple = backend.multiple
        mlp = multiple(MLP)
        if config.mlp_width % mlp:  # GPT-2's MLP width is 4 * n_embd: it divides any mesh size used here
            raise ValueError(f"the MLP width {config.mlp_width} does not split into {mlp} shards")
        return cls(n_head=round_up(config.n_head, multiple(HEADS)), vocab_size=round_up(config.vocab_size, multiple(VOCAB)))


def lay_out(name: str, tensor: HostTensor, config: GPTConfig, shapes: Shapes) -> tuple[HostTensor, tuple]:
    """(the tensor as the forward pass takes it, its logical axes) for a bare HF name."""
    C, H, D = config.n_embd, config.n_head, config.head_dim
    if name in ("wte.weight", "lm_head.weight"):  # lm_head (untied) is an nn.Linear: [V, C] as stored
        return tensor.padded((shapes.vocab_size, C)), (VOCAB, None)
    if name.endswith(".attn.c_attn.weight"):  # [C, 3C] -> [3 H' D, C], rows (head, q|k|v, D)
        return tensor.transpose().head_major(H, D).padded((3 * shapes.n_head * D, C)), (HEADS, None)
    if name.endswith(".attn.c_attn.bias"):
        return tensor.head_major(H, D).padded((3 * shapes.n_head * D,)), (HEADS,)
    if name.endswith(".attn.c_proj.weight"):  # [C, C] -> [C, H' D]: input features are heads
        return tensor.transpose().padded((C, shapes.n_head * D)), (None, HEADS)
    if name.endswith(".mlp.c_fc.weight"):  # [C, 4C] -> [4C, C]
        return tensor.transpose(), (MLP, None)
    if name.endswith(".mlp.c_fc.bias"):
        return tensor, (MLP,)
    if name.endswith(".mlp.c_proj.weight"):  # [4C, C] -> [C, 4C]
        return tensor.transpose(), (None, MLP)
    return tensor, (None,) * len(tensor.shape)  # wpe, biases of the output projections, LayerNorms
