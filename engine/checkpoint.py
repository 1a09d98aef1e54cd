"""Hugging Face GPT-2 checkpoints: GPT-2's tensor names normalized, shapes checked against the config, the
parameters nested in picoGPT's layout. The files themselves are read and written by engine/safetensors_io.py."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .config import GPTConfig, expected_shapes
from .errors import CheckpointError
from .safetensors_io import HostTensor, check_tensor_set, read_safetensors

_DROPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights
# HF's Conv1D weights, stored [n_in, n_out]; the model takes them as [n_out, n_in] (engine.layers.linear).
LINEAR_WEIGHT_SUFFIXES = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def is_matrix(name: str) -> bool:
    """The tensors the weight products read (the linear weights, wte, which tied logits reuse, and an
    untied lm_head): what a mixed-precision model stores in its weights' dtype."""
    return name in ("wte.weight", "lm_head.weight") or name.endswith(LINEAR_WEIGHT_SUFFIXES)


def bare_name(name: str, tied: bool = True) -> str | None:
    """The hub's bare tensor name ('h.0.attn.c_attn.weight'), or None for tensors GPT-2 does not use.

    save_pretrained writes 'transformer.'-prefixed names; the hub's original gpt2 file has bare names
    plus attn.bias mask buffers. lm_head.weight is dropped when the logits are tied to wte (as HF
    ties them, whatever the file holds).
    """
    name = name.removeprefix("transformer.")
    if (tied and name == "lm_head.weight") or name.endswith(_DROPPED_SUFFIXES):
        return None
    return name


def _untied_head(stored: dict[str, HostTensor]) -> bool:
    """True when the file holds an lm_head.weight whose bytes are not wte's."""
    head = stored.get("lm_head.weight")
    wte = stored.get("wte.weight", stored.get("transformer.wte.weight"))
    if head is None or wte is None:
        return False
    return (head.dtype, head.shape) != (wte.dtype, wte.shape) or head.data.cast("B") != wte.data.cast("B")


def load_checkpoint(directory: Path) -> tuple[GPTConfig, dict[str, HostTensor]]:
    """Read config.json and model.safetensors of a Hugging Face GPT-2 directory and check they agree."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such directory")
    config = GPTConfig.from_hf_json(directory / "config.json")
    model_file = directory / "model.safetensors"
    if not model_file.exists():
        others = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.safetensors"))
        hint = f" (found {', '.join(others)}; re-save with save_pretrained(..., safe_serialization=True))" if others else ""
        raise CheckpointError(f"{model_file}: missing{hint}")
    implied = (f"config.json says n_layer={config.n_layer}, n_embd={config.n_embd}, "
               f"vocab_size={config.vocab_size}, n_positions={config.n_positions}")
    stored = read_safetensors(model_file)
    # Bounded before the expected tensors are enumerated: even at 2 bytes a parameter, the file must hold them.
    if config.n_params * 2 > os.path.getsize(model_file):
        raise CheckpointError(f"{model_file}: {implied}: {config.n_params:,} parameters, more than its "
                              f"{os.path.getsize(model_file):,} bytes can hold")
    if config.tie_word_embeddings and _untied_head(stored):
        # A stored lm_head that differs from wte: transformers 5 then does not tie them, and uses it.
        config = dataclasses.replace(config, tie_word_embeddings=False)
    tensors = {}
    for name, tensor in stored.items():
        bare = bare_name(name, config.tie_word_embeddings)
        if bare is None:
            continue
        if bare in tensors:
            raise CheckpointError(f"{model_file}: tensor {bare} is stored twice ({tensors[bare].name} and "
                                  f"{name}): which one is meant is unclear")
        tensors[bare] = dataclasses.replace(tensor, name=name)
    tensors = {bare: dataclasses.replace(t, name=bare) for bare, t in tensors.items()}
    check_tensor_set(model_file, tensors, expected_shapes(config), implied, missing_hint={
        "lm_head.weight": "tie_word_embeddings is false, so the logits need their own lm_head.weight"})
    return config, tensors


def nest_params(flat: dict, n_layer: int) -> dict:
    """Bare HF names -> picoGPT's nested dict: {'wte', 'wpe', 'blocks': [...], 'ln_f'}."""
    def norm(prefix):
        return {"g": flat[prefix + ".weight"], "b": flat[prefix + ".bias"]}

    def dense(prefix):
        return {"w": flat[prefix + ".weight"], "b": flat[prefix + ".bias"]}

    blocks = [{
        "ln_1": norm(f"h.{i}.ln_1"),
        "attn": {"c_attn": dense(f"h.{i}.attn.c_attn"), "c_proj": dense(f"h.{i}.attn.c_proj")},
        "ln_2": norm(f"h.{i}.ln_2"),
        "mlp": {"c_fc": dense(f"h.{i}.mlp.c_fc"), "c_proj": dense(f"h.{i}.mlp.c_proj")},
    } for i in range(n_layer)]
    params = {"wte": flat["wte.weight"], "wpe": flat["wpe.weight"], "blocks": blocks, "ln_f": norm("ln_f")}
    if "lm_head.weight" in flat:  # untied logits (tie_word_embeddings false)
        params["lm_head"] = flat["lm_head.weight"]
    return params


def leaves(params) -> list:
    """Every array of a nested parameter dict (nest_params' layout), in a fixed order."""
    if isinstance(params, dict):
        return [leaf for value in params.values() for leaf in leaves(value)]
    if isinstance(params, list):
        return [leaf for value in params for leaf in leaves(value)]
    return [params]


