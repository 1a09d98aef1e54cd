"""GPT-2 hyper-parameters and the picoGPT model sizes."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .errors import CheckpointError

GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}  # bytes per element of each dtype name


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int = 1024
    vocab_size: int = GPT2_VOCAB_SIZE
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{name} must be an integer >= 1, got {value!r}")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise CheckpointError(f"layer_norm_epsilon must be a number in (0, 1), got {eps!r}")
        if self.n_embd % self.n_head:
            raise CheckpointError(f"n_embd ({self.n_embd}) is not a multiple of n_head ({self.n_head})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        """Parameters with the logits tied to wte (what GPT-2's '124M' counts)."""
        return sum(math.prod(shape) for shape in expected_shapes(self).values())

    def to_hf_json(self) -> dict:
        """The fields transformers' GPT2Config reads, so HF can load what we write."""
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "bos_token_id": END_OF_TEXT_ID,
            "eos_token_id": END_OF_TEXT_ID,
            "tie_word_embeddings": True,
        }

    @classmethod
    def from_hf_json(cls, path: Path) -> "GPTConfig":
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing (a GPT-2 checkpoint needs config.json)") from None
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: not readable JSON ({err})") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: not a JSON object")
        if raw.get("model_type", "gpt2") != "gpt2":
            raise CheckpointError(f"{path}: model_type is {raw['model_type']!r}; arraygpt runs GPT-2 only")
        activation = raw.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh"):
            raise CheckpointError(f"{path}: activation_function {activation!r} is not GPT-2's tanh GELU")
        missing = [name for name in ("n_layer", "n_head", "n_embd", "vocab_size") if name not in raw]
        if missing:
            raise CheckpointError(f"{path}: missing field {missing[0]!r}")
        try:  # __post_init__ checks every field's type and range and names the field
            return cls(n_layer=raw["n_layer"], n_head=raw["n_head"], n_embd=raw["n_embd"],
                       n_positions=raw.get("n_positions", raw.get("n_ctx", 1024)), vocab_size=raw["vocab_size"],
                       layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-5))
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None


# The sizes picoGPT downloads, plus a tiny one for demos and tests.
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=4, n_embd=128),
    "124M": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "355M": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "774M": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "1558M": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
}


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor GPT-2 needs, by its bare Hugging Face name, in Conv1D ([in, out]) layout."""
    C, V = config.n_embd, config.vocab_size
    shapes = {"wte.weight": (V, C), "wpe.weight": (config.n_positions, C)}
    for i in range(config.n_layer):
        p = f"h.{i}."
        shapes |= {
            p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
            p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
            p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
            p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
            p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
            p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,),
        }
    shapes |= {"ln_f.weight": (C,), "ln_f.bias": (C,)}
    return shapes
