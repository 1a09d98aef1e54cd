"""GPT-2 hyper-parameters and the picoGPT model sizes."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from .errors import CheckpointError
from .files import read_config_json

GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}  # bytes per element of each dtype name


# GPT2Config fields that change nothing at inference (dropout, heads for other tasks, generation and
# bookkeeping defaults), and PretrainedConfig's own: accepted and ignored, as HF ignores them when it runs
# GPT2LMHeadModel.eval(). Every other field that GPT2Config reads is implemented below or refused by name.
NO_EFFECT_FIELDS = frozenset({
    "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj", "summary_activation",
    "summary_proj_to_labels", "summary_first_dropout", "initializer_range", "use_cache", "pad_token_id",
    "bos_token_id", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward", "id2label", "label2id",
    "problem_type", "task_specific_params", "n_ctx", "tokenizer_class", "prefix", "sep_token_id",
    "decoder_start_token_id", "finetuning_task", "tie_encoder_decoder", "is_decoder", "cross_attention_hidden_size",
    "reorder_and_upcast_attn",  # the same arithmetic in float32 (HF upcasts half-precision scores to float32)
})
# Fields whose non-default value HF honours and arraygpt does not implement: refused, naming the field.
REFUSED_UNLESS_DEFAULT = {
    "add_cross_attention": False,   # cross-attention layers need encoder states: not a language model
    "is_encoder_decoder": False,
    "pruned_heads": {},             # heads removed per layer: shapes differ layer by layer
}
# HF's aliases (GPT2Config.attribute_map): read when the GPT-2 name is absent.
ALIASES = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
           "num_hidden_layers": "n_layer"}


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int = 1024
    vocab_size: int = GPT2_VOCAB_SIZE
    layer_norm_epsilon: float = 1e-5
    n_inner: int | None = None                    # the MLP's width; None = 4 * n_embd
    scale_attn_weights: bool = True               # scores / sqrt(head_dim)
    scale_attn_by_inverse_layer_idx: bool = False  # scores also / (layer index + 1)
    tie_word_embeddings: bool = True              # logits from wte; False: from a separate lm_head.weight
    eos_token_id: int | None = END_OF_TEXT_ID     # what stop_at_eos stops at

    family = "gpt2"  # engine/families.py

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CheckpointError(f"{name} must be an integer >= 1, got {value!r}")
        if self.n_inner is not None and (isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int)
                                         or self.n_inner < 1):
            raise CheckpointError(f"n_inner must be an integer >= 1 or null, got {self.n_inner!r}")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise CheckpointError(f"layer_norm_epsilon must be a number in (0, 1), got {eps!r}")
        for name in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise CheckpointError(f"{name} must be true or false, got {getattr(self, name)!r}")
        eos = self.eos_token_id
        if eos is not None and (isinstance(eos, bool) or not isinstance(eos, int) or eos < 0):
            raise CheckpointError(f"eos_token_id must be an integer >= 0 or null, got {eos!r}")
        if self.n_embd % self.n_head:
            raise CheckpointError(f"n_embd ({self.n_embd}) is not a multiple of n_head ({self.n_head})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def attn_scales(self) -> tuple[float, ...]:
        """Each layer's factor on q (attention scores): 1/sqrt(head_dim) as GPT-2 does, 1 without
        scale_attn_weights, divided by layer + 1 with scale_attn_by_inverse_layer_idx (as HF does)."""
        base = 1.0 / math.sqrt(self.head_dim) if self.scale_attn_weights else 1.0
        return tuple(base / (i + 1) if self.scale_attn_by_inverse_layer_idx else base for i in range(self.n_layer))

    @property
    def n_params(self) -> int:
        """Parameters, with the logits tied to wte (what GPT-2's '124M' counts) unless lm_head is separate.
        In closed form: a config of a billion layers is counted, not enumerated."""
        C, I = self.n_embd, self.mlp_width
        per_layer = 4 * C * C + 2 * C * I + 9 * C + I  # c_attn 3C(C+1), c_proj C(C+1), c_fc I(C+1), proj C(I+1), 2 LN
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * C
        return (self.vocab_size + self.n_positions) * C + self.n_layer * per_layer + 2 * C + lm_head

    @property
    def n_tensors(self) -> int:
        return 2 + 12 * self.n_layer + 2 + (0 if self.tie_word_embeddings else 1)

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
            "n_inner": self.n_inner,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "bos_token_id": END_OF_TEXT_ID,
            "eos_token_id": self.eos_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
        }

    @classmethod
    def from_hf_json(cls, path: Path) -> "GPTConfig":
        raw = read_config_json(path)
        try:
            return cls.from_hf_dict(raw)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None

    @classmethod
    def from_hf_dict(cls, raw: dict) -> "GPTConfig":
        """GPT2Config's fields as config.json holds them: each one used, ignored (no effect at inference)
        or refused, naming the field; never silently dropped."""
        if raw.get("model_type", "gpt2") != "gpt2":
            raise CheckpointError(f"model_type is {raw['model_type']!r}; arraygpt runs GPT-2 only")
        activation = raw.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh"):
            raise CheckpointError(f"activation_function {activation!r} is not GPT-2's tanh GELU (gelu_new)")
        for name, default in REFUSED_UNLESS_DEFAULT.items():
            if raw.get(name, default) not in (default, None):
                raise CheckpointError(f"{name} is {json.dumps(raw[name])[:60]}: arraygpt does not implement it "
                                      f"(it runs GPT-2 language models with {name} = {json.dumps(default)})")
        raw = dict(raw)
        for alias, name in ALIASES.items():
            if alias in raw:
                if name in raw and raw[name] != raw[alias]:
                    raise CheckpointError(f"{alias} ({raw[alias]!r}) and {name} ({raw[name]!r}) disagree")
                raw.setdefault(name, raw[alias])
        missing = [name for name in ("n_layer", "n_head", "n_embd", "vocab_size") if name not in raw]
        if missing:
            raise CheckpointError(f"missing field {missing[0]!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {name: raw[name] for name in fields if name in raw}
        if "n_positions" not in raw and "n_ctx" in raw:
            kwargs["n_positions"] = raw["n_ctx"]
        if isinstance(kwargs.get("eos_token_id"), list) and len(kwargs["eos_token_id"]) == 1:
            kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
        return cls(**kwargs)  # __post_init__ checks every field's type and range and names the field


# The sizes picoGPT downloads, plus a tiny one for demos and tests.
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=4, n_embd=128),
    "124M": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "355M": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "774M": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "1558M": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
}


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor GPT-2 needs, by its bare Hugging Face name, in Conv1D ([in, out]) layout
    (lm_head.weight, when untied, is an nn.Linear: [vocab, C])."""
    C, V, I = config.n_embd, config.vocab_size, config.mlp_width
    shapes = {"wte.weight": (V, C), "wpe.weight": (config.n_positions, C)}
    for i in range(config.n_layer):
        p = f"h.{i}."
        shapes |= {
            p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
            p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
            p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
            p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
            p + "mlp.c_fc.weight": (C, I), p + "mlp.c_fc.bias": (I,),
            p + "mlp.c_proj.weight": (I, C), p + "mlp.c_proj.bias": (C,),
        }
    shapes |= {"ln_f.weight": (C,), "ln_f.bias": (C,)}
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, C)
    return shapes
