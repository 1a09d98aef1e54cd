"""The Llama family's hyper-parameters as Hugging Face's config.json holds them (model_type llama, qwen2,
mistral), every field classified: honoured, ignored because it changes nothing at inference, or refused by
name; and the presets at real shapes."""

from __future__ import annotations

import dataclasses
import json
import math

from ..errors import CheckpointError

MODEL_TYPES = ("llama", "qwen2", "mistral")

# Fields that change nothing at inference (dropout, initialisation, bookkeeping, generation defaults,
# PretrainedConfig's own): accepted and ignored, as HF ignores them in eval().
NO_EFFECT_FIELDS = frozenset({
    "attention_dropout", "initializer_range", "use_cache", "pad_token_id", "bos_token_id", "architectures",
    "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "output_hidden_states",
    "output_attentions", "return_dict", "chunk_size_feed_forward", "id2label", "label2id", "problem_type",
    "task_specific_params", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "finetuning_task", "tie_encoder_decoder", "is_decoder", "cross_attention_hidden_size", "add_cross_attention",
    "is_encoder_decoder", "pruned_heads", "tf_legacy_loss", "use_bfloat16", "torchscript",
    "pretraining_tp",     # a training-time split of the products: the same function
    "max_window_layers",  # Qwen2: which layers would use the sliding window; read only with use_sliding_window
    "arraygpt_synthetic",  # arraygpt's own mark of a preset's random weights (engine/synthetic.py)
})
# Fields arraygpt implements only at this value (or null): anything else is refused, naming the field.
REFUSED_UNLESS = {
    "hidden_act": ("silu",),
    "mlp_bias": (False,),
    "use_sliding_window": (False,),
    "partial_rotary_factor": (1, 1.0),
    "is_encoder_decoder": (False,),
    "add_cross_attention": (False,),
}
ROPE_TYPES = ("default", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3's frequency-dependent stretch of the rotary frequencies (rope_type llama3)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    n_layer: int                           # num_hidden_layers
    n_head: int                            # num_attention_heads
    n_kv_head: int                         # num_key_value_heads (grouped-query attention when < n_head)
    n_embd: int                            # hidden_size
    intermediate_size: int                 # the SwiGLU MLP's width
    vocab_size: int
    n_positions: int = 2048                # max_position_embeddings
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    head_size: int | None = None           # head_dim when the config gives one; None = n_embd // n_head
    qkv_bias: bool = False                 # q, k, v projections with biases (Qwen2; Llama's attention_bias)
    o_bias: bool = False                   # the output projection's bias (Llama's attention_bias)
    tie_word_embeddings: bool = False      # logits from embed_tokens instead of lm_head
    eos_token_id: int | None = None
    more_eos_token_ids: tuple[int, ...] = ()  # the other stop ids a config lists (instruct models): stop_at_eos stops at any
    model_type: str = "llama"

    family = "llama"

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size", "vocab_size", "n_positions"):
            _check_int(name, getattr(self, name))
        if self.head_size is not None:
            _check_int("head_dim", self.head_size)
        for name in ("rms_norm_eps",):
            eps = getattr(self, name)
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
                raise CheckpointError(f"{name} must be a number in (0, 1), got {eps!r}")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) or not 1 < self.rope_theta < 1e12:
            raise CheckpointError(f"rope_theta must be a number in (1, 1e12), got {self.rope_theta!r}")
        if self.n_head % self.n_kv_head:
            raise CheckpointError(f"num_attention_heads ({self.n_head}) is not a multiple of num_key_value_heads "
                                  f"({self.n_kv_head})")
        if self.head_size is None and self.n_embd % self.n_head:
            raise CheckpointError(f"hidden_size ({self.n_embd}) is not a multiple of num_attention_heads ({self.n_head})")
        if self.head_dim % 2:
            raise CheckpointError(f"the head size ({self.head_dim}) is odd: rotary embeddings need pairs")
        for name in ("qkv_bias", "o_bias", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise CheckpointError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for eos in (self.eos_token_id, *self.more_eos_token_ids):
            if eos is not None and (isinstance(eos, bool) or not isinstance(eos, int) or eos < 0):
                raise CheckpointError(f"eos_token_id must be an integer >= 0, a list of them, or null; got {eos!r}")

    @property
    def head_dim(self) -> int:
        return self.head_size or self.n_embd // self.n_head

    @property
    def layer_norm_epsilon(self) -> float:  # the name the engine's Hyper reads for every family
        return self.rms_norm_eps

    @property
    def mlp_width(self) -> int:
        return self.intermediate_size

    @property
    def attn_scales(self) -> tuple[float, ...]:
        return (1.0 / math.sqrt(self.head_dim),) * self.n_layer

    @property
    def inv_freq(self) -> tuple[float, ...]:
        """The rotary frequencies, [D/2], as HF's rope initialisation computes them (llama3 scaling included)."""
        D = self.head_dim
        inv = [1.0 / self.rope_theta ** (i / D) for i in range(0, D, 2)]
        s = self.rope_scaling
        if s is None:
            return tuple(inv)
        low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
        high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
        out = []
        for f in inv:
            wavelen = 2 * math.pi / f
            if wavelen < high_wavelen:       # high frequencies: kept
                out.append(f)
            elif wavelen > low_wavelen:      # low frequencies: stretched by the factor
                out.append(f / s.factor)
            else:                            # between: interpolated smoothly
                smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
                    s.high_freq_factor - s.low_freq_factor)
                out.append((1 - smooth) * f / s.factor + smooth * f)
        return tuple(out)

    @property
    def n_params(self) -> int:
        """Parameters, counting a tied embedding once. In closed form."""
        C, I, D = self.n_embd, self.intermediate_size, self.head_dim
        q, kv = self.n_head * D, self.n_kv_head * D
        attn = C * q + 2 * C * kv + q * C + (q + 2 * kv if self.qkv_bias else 0) + (C if self.o_bias else 0)
        per_layer = attn + 3 * C * I + 2 * C
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * C
        return self.vocab_size * C + self.n_layer * per_layer + C + lm_head

    @property
    def n_tensors(self) -> int:
        per_layer = 9 + (3 if self.qkv_bias else 0) + (1 if self.o_bias else 0)
        return 1 + self.n_layer * per_layer + 1 + (0 if self.tie_word_embeddings else 1)

    def to_hf_json(self) -> dict:
        """The fields transformers' LlamaConfig / Qwen2Config read, so HF can load what we write."""
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
        out = {
            "architectures": [arch[self.model_type]],
            "model_type": self.model_type,
            "hidden_act": "silu",
            "num_hidden_layers": self.n_layer,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv_head,
            "hidden_size": self.n_embd,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.n_positions,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None if self.rope_scaling is None else {"rope_type": "llama3",
                                                                      **dataclasses.asdict(self.rope_scaling)},
            "head_dim": self.head_dim,
            "tie_word_embeddings": self.tie_word_embeddings,
            "eos_token_id": [self.eos_token_id, *self.more_eos_token_ids] if self.more_eos_token_ids else self.eos_token_id,
        }
        if self.model_type == "llama":
            out["attention_bias"] = self.qkv_bias
        return out

    @classmethod
    def from_hf_dict(cls, raw: dict) -> "LlamaConfig":
        """LlamaConfig's / Qwen2Config's / MistralConfig's fields: each used, ignored or refused by name."""
        model_type = raw.get("model_type")
        if model_type not in MODEL_TYPES:
            raise CheckpointError(f"model_type is {model_type!r}, not one of the Llama family's ({', '.join(MODEL_TYPES)})")
        unknown = sorted(set(raw) - HONOURED - NO_EFFECT_FIELDS - set(REFUSED_UNLESS))
        if unknown:
            raise CheckpointError(f"field {unknown[0]!r} is not one arraygpt knows for {model_type} (it would be "
                                  "silently ignored); remove it if it changes nothing at inference")
        for name, allowed in REFUSED_UNLESS.items():
            if name in raw and raw[name] is not None and raw[name] not in allowed:
                raise CheckpointError(f"{name} is {json.dumps(raw[name])[:60]}: arraygpt implements only "
                                      f"{' or '.join(json.dumps(a) for a in allowed)}")
        window = raw.get("sliding_window")
        max_pos = raw.get("max_position_embeddings", 2048)
        _check_int("max_position_embeddings", max_pos)
        if model_type == "mistral" and window is not None and not (isinstance(window, int) and window >= max_pos):
            raise CheckpointError(f"sliding_window is {window!r}: arraygpt attends to the whole context (null, or "
                                  f">= max_position_embeddings {max_pos}, changes nothing)")
        layer_types = raw.get("layer_types")
        if layer_types is not None and not (isinstance(layer_types, list) and all(isinstance(t, str) for t in layer_types)):
            raise CheckpointError(f"layer_types must be a list of strings or null, got {json.dumps(layer_types)[:60]}")
        if any(t != "full_attention" for t in layer_types or ()):
            raise CheckpointError("layer_types has sliding-window layers: arraygpt attends to the whole context")
        missing = [n for n in ("num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size",
                               "vocab_size") if n not in raw]
        if missing:
            raise CheckpointError(f"missing field {missing[0]!r}")
        rope = dict(_table(raw, "rope_parameters"))  # transformers 5 writes rope_theta and scaling here
        rope |= _table(raw, "rope_scaling")
        theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if not isinstance(rope_type, str) or rope_type not in ROPE_TYPES:
            raise CheckpointError(f"rope_scaling of type {rope_type!r} is not implemented (only "
                                  f"{', '.join(ROPE_TYPES)})")
        scaling = None
        if rope_type == "llama3":
            try:
                scaling = RopeScaling(float(rope["factor"]), float(rope["low_freq_factor"]),
                                      float(rope["high_freq_factor"]), int(rope["original_max_position_embeddings"]))
            except (KeyError, TypeError, ValueError) as err:
                raise CheckpointError(f"rope_scaling of type llama3 needs factor, low_freq_factor, high_freq_factor "
                                      f"and original_max_position_embeddings ({type(err).__name__}: {err})") from None
            if not (scaling.factor > 0 and scaling.high_freq_factor > scaling.low_freq_factor > 0):
                raise CheckpointError("rope_scaling: factor > 0 and high_freq_factor > low_freq_factor > 0 are needed")
        eos, more_eos = raw.get("eos_token_id"), ()
        if isinstance(eos, list):  # several stop ids (instruct models): stop_at_eos stops at any of them
            eos, more_eos = (eos[0], tuple(eos[1:])) if eos else (None, ())
        bias = raw.get("attention_bias", False)
        return cls(
            n_layer=raw["num_hidden_layers"], n_head=raw["num_attention_heads"],
            n_kv_head=raw.get("num_key_value_heads") or raw["num_attention_heads"], n_embd=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"], vocab_size=raw["vocab_size"], n_positions=max_pos,
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6), rope_theta=theta, rope_scaling=scaling,
            head_size=raw.get("head_dim"), qkv_bias=True if model_type == "qwen2" else bias,
            o_bias=False if model_type == "qwen2" else bias, tie_word_embeddings=raw.get("tie_word_embeddings", False),
            eos_token_id=eos, more_eos_token_ids=more_eos, model_type=model_type)


HONOURED = frozenset({
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size", "intermediate_size",
    "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters",
    "head_dim", "attention_bias", "tie_word_embeddings", "eos_token_id", "sliding_window", "layer_types",
})


def _table(raw: dict, name: str) -> dict:
    """A field that holds an object (rope_scaling, rope_parameters): {} when absent or null."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{name} must be an object or null, got {json.dumps(value)[:60]}")
    return value


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{name} must be an integer >= 1, got {value!r}")


def llama3_scaling(factor: float = 32.0) -> RopeScaling:
    return RopeScaling(factor, 1.0, 4.0, 8192)


# The small Llama-family models people deploy, at their real shapes (random weights, as GPT-2's presets).
LLAMA_PRESETS: dict[str, LlamaConfig] = {
    "smollm2-135m": LlamaConfig(n_layer=30, n_head=9, n_kv_head=3, n_embd=576, intermediate_size=1536,
                                vocab_size=49152, n_positions=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                                tie_word_embeddings=True, eos_token_id=0),
    "smollm2-360m": LlamaConfig(n_layer=32, n_head=15, n_kv_head=5, n_embd=960, intermediate_size=2560,
                                vocab_size=49152, n_positions=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                                tie_word_embeddings=True, eos_token_id=0),
    "qwen2.5-0.5b": LlamaConfig(n_layer=24, n_head=14, n_kv_head=2, n_embd=896, intermediate_size=4864,
                                vocab_size=151936, n_positions=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
                                qkv_bias=True, tie_word_embeddings=True, eos_token_id=151643, model_type="qwen2"),
    "llama3.2-1b": LlamaConfig(n_layer=16, n_head=32, n_kv_head=8, n_embd=2048, intermediate_size=8192,
                               vocab_size=128256, n_positions=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
                               rope_scaling=llama3_scaling(32.0), head_size=64, tie_word_embeddings=True,
                               eos_token_id=128001),
    "tinyllama-1.1b": LlamaConfig(n_layer=22, n_head=32, n_kv_head=4, n_embd=2048, intermediate_size=5632,
                                  vocab_size=32000, n_positions=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                                  eos_token_id=2),
    # A small one for tests and demos: grouped heads (4 query heads per key/value head), Llama 3's rope scaling
    # (its three bands reached within 512 positions), an untied lm_head.
    "tiny-llama": LlamaConfig(n_layer=2, n_head=8, n_kv_head=2, n_embd=128, intermediate_size=352,
                              vocab_size=4096, n_positions=512, rms_norm_eps=1e-5, rope_theta=500000.0,
                              rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64), tie_word_embeddings=False,
                              eos_token_id=0),
}


def expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the model needs, by its bare HF name (without 'model.'), as HF's nn.Linear stores it [out, in]."""
    C, V, I, D = config.n_embd, config.vocab_size, config.intermediate_size, config.head_dim
    q, kv = config.n_head * D, config.n_kv_head * D
    shapes = {"embed_tokens.weight": (V, C)}
    for i in range(config.n_layer):
        p = f"layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,),
            p + "self_attn.q_proj.weight": (q, C), p + "self_attn.k_proj.weight": (kv, C),
            p + "self_attn.v_proj.weight": (kv, C), p + "self_attn.o_proj.weight": (C, q),
            p + "mlp.gate_proj.weight": (I, C), p + "mlp.up_proj.weight": (I, C), p + "mlp.down_proj.weight": (C, I),
        }
        if config.qkv_bias:
            shapes |= {p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                       p + "self_attn.v_proj.bias": (kv,)}
        if config.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (C,)
    shapes["norm.weight"] = (C,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, C)
    return shapes
