"""How each tensor is laid out for the forward pass, and which of its axes a backend may split.

The decision is a Layout, a plain record (transpose, reorder heads, pad, the logical axes) made here from
the tensor's name and shape alone; backends/host.py carries out every step of it on the host, in the
order the record lists them, and nothing else does (the engine imports no array library).

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


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a checkpoint tensor becomes on the backend, in this order: transposed (a C-contiguous copy of
    a 2-D tensor), dim 0 reordered head-major (HF's (q|k|v, head, D) rows -> (head, q|k|v, D)), zero-padded
    at the end of each dim to pad_to. axes: the logical axis of each dimension of the result. product_only:
    the weight products alone read it (a linear layer's weight, an untied lm_head; never the embedding table,
    which the lookup reads too), so an adapter may hold it in its product's own format."""

    axes: tuple = ()
    transpose: bool = False
    heads: tuple[int, int] | None = None   # (n_head, head_dim)
    pad_to: tuple[int, ...] | None = None
    product_only: bool = False

    def shape_of(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the backend makes from a tensor stored with this shape."""
        if self.pad_to is not None:
            return self.pad_to
        return tuple(reversed(stored)) if self.transpose else tuple(stored)


def as_stored(shape: tuple[int, ...]) -> Layout:
    """The tensor as the file holds it, split nowhere."""
    return Layout(axes=(None,) * len(shape))


def _padded(shape: tuple[int, ...], want: tuple[int, ...]) -> tuple[int, ...] | None:
    return None if tuple(want) == tuple(shape) else tuple(want)


def lay_out(name: str, shape: tuple[int, ...], config: GPTConfig, shapes: Shapes) -> Layout:
    """How the forward pass takes the tensor stored under a bare HF name with this shape."""
    C, H, D = config.n_embd, config.n_head, config.head_dim
    qkv_rows = 3 * shapes.n_head * D
    if name in ("wte.weight", "lm_head.weight"):  # lm_head (untied) is an nn.Linear: [V, C] as stored
        return Layout((VOCAB, None), pad_to=_padded(shape, (shapes.vocab_size, C)), product_only=name == "lm_head.weight")
    if name.endswith(".attn.c_attn.weight"):  # [C, 3C] -> [3 H' D, C], rows (head, q|k|v, D)
        return Layout((HEADS, None), transpose=True, heads=(H, D), pad_to=_padded(shape[::-1], (qkv_rows, C)),
                      product_only=True)
    if name.endswith(".attn.c_attn.bias"):
        return Layout((HEADS,), heads=(H, D), pad_to=_padded(shape, (qkv_rows,)))
    if name.endswith(".attn.c_proj.weight"):  # [C, C] -> [C, H' D]: input features are heads
        return Layout((None, HEADS), transpose=True, pad_to=_padded(shape[::-1], (C, shapes.n_head * D)),
                      product_only=True)
    if name.endswith(".mlp.c_fc.weight"):  # [C, 4C] -> [4C, C]
        return Layout((MLP, None), transpose=True, product_only=True)
    if name.endswith(".mlp.c_fc.bias"):
        return Layout((MLP,))
    if name.endswith(".mlp.c_proj.weight"):  # [4C, C] -> [C, 4C]
        return Layout((None, MLP), transpose=True, product_only=True)
    return as_stored(shape)  # wpe, biases of the output projections, LayerNorms
